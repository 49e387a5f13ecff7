"""A criterion's assessment is made without pydantic's validation when its values need none: the same
object as ``CriterionAssessment(**fields)`` - fields, fields set, equality, JSON - and the validator
still decides for any value that validation would change or refuse."""

from __future__ import annotations

from typing import Any

import pytest
from engine_support import NOW
from fhir_builders import patient
from pydantic import ValidationError

from cds.assessment import CriterionAssessment, Fact, Status
from cds.engine import criterion_assessment_of, evaluate
from cds.portfolio import default_trials
from cds.record import PatientRecord


def fields(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": "inc-hb",
        "kind": "inclusion",
        "text": "Haemoglobin at least 9 g/dL",
        "judgement": False,
        "status": Status.MET,
        "reason": "haemoglobin 10.2 g/dL on 2026-11-30",
        "evidence": ["Observation/hb-1"],
        "facts": [Fact(label="Haemoglobin", value="10.2 g/dL", date="2026-11-30", resource="Observation/hb-1")],
        "missing": [],
    }
    values.update(changes)
    return values


def made(values: dict[str, Any]) -> CriterionAssessment:
    return criterion_assessment_of(**values)


def assert_same(ours: CriterionAssessment, validated: CriterionAssessment) -> None:
    assert type(ours) is CriterionAssessment
    assert ours == validated
    assert ours.__dict__ == validated.__dict__
    assert list(ours.__dict__) == list(validated.__dict__)
    assert ours.model_fields_set == validated.model_fields_set
    assert ours.__pydantic_extra__ == validated.__pydantic_extra__
    assert ours.__pydantic_private__ == validated.__pydantic_private__
    assert ours.model_dump_json() == validated.model_dump_json()
    assert ours.model_dump(exclude_unset=True) == validated.model_dump(exclude_unset=True)
    assert ours.rules_out == validated.rules_out


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"kind": "exclusion", "status": Status.NOT_MET, "evidence": [], "facts": []},
        {"judgement": True, "status": Status.UNKNOWN, "missing": ["manual review"], "facts": []},
    ],
)
def test_values_of_their_types_make_the_validated_object(changes: dict[str, Any]) -> None:
    values = fields(**changes)
    assert_same(made(values), CriterionAssessment(**values))


class Text(str):
    pass


def test_a_value_validation_would_change_is_validated() -> None:
    ours = made(fields(reason=Text("no data"), status="met"))
    assert type(ours.reason) is str
    assert ours.status is Status.MET
    assert_same(ours, CriterionAssessment(**fields(reason=Text("no data"), status="met")))


def test_a_value_validation_refuses_is_refused() -> None:
    with pytest.raises(ValidationError):
        made(fields(kind="both"))
    with pytest.raises(ValidationError):
        made(fields(evidence=[1]))


def test_every_criterion_of_every_trial_is_the_validated_object() -> None:
    record = PatientRecord.from_resources([patient()])
    for trial in default_trials().values():
        for criterion in evaluate(trial, record, NOW).criteria:
            assert_same(criterion, CriterionAssessment(**criterion.__dict__))
