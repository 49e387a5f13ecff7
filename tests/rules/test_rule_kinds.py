"""The table of rule kinds (cds/rules/kinds.py): each kind is complete on its model, the trial file's
`type:` values come from the table, a rule evaluates itself (a leaf through its evaluator, a composition
through its parts), and one property says when a criterion rules the patient out."""

import inspect
from datetime import UTC, datetime

import pytest
from fhir_builders import patient
from pydantic import ValidationError

from cds.assessment import CriterionAssessment, Status
from cds.engine.context import EvalContext
from cds.portfolio import default_trials
from cds.record import PatientRecord
from cds.rules.base import LeafRule
from cds.rules.kinds import LEAF_KINDS, kind_tag
from cds.trials import Criterion
from cds.valuesets import default_library


@pytest.mark.parametrize("kind", LEAF_KINDS, ids=lambda k: k.__name__)
def test_every_kind_in_the_table_implements_every_consumer(kind: type[LeafRule]) -> None:
    missing = sorted(getattr(kind, "__abstractmethods__", ()))
    assert not inspect.isabstract(kind), f"{kind.__name__} does not define {missing}"


def test_each_kind_has_its_own_type_tag() -> None:
    tags = [kind_tag(kind) for kind in LEAF_KINDS]
    assert len(set(tags)) == len(tags)
    assert "sex" in tags and "lab" in tags


def test_an_unknown_type_is_refused_with_the_kinds_of_the_table() -> None:
    with pytest.raises(ValidationError) as refused:
        Criterion.model_validate({"id": "a", "kind": "inclusion", "text": "t", "rule": {"type": "height"}})
    message = str(refused.value)
    assert all(kind_tag(kind) in message for kind in LEAF_KINDS)


def test_a_rule_in_a_trial_file_is_read_as_the_model_of_its_kind() -> None:
    criterion = Criterion.model_validate(
        {"id": "a", "kind": "inclusion", "text": "t", "rule": {"not": {"type": "sex", "is": ["female"]}}}
    )
    leaf = criterion.rule.not_
    assert kind_tag(type(leaf)) == "sex"
    assert leaf.resource_types() == ("Patient",)


def _status_on_a_woman(rule: dict[str, object]) -> Status:
    criterion = Criterion.model_validate({"id": "a", "kind": "inclusion", "text": "t", "rule": rule})
    ctx = EvalContext(
        record=PatientRecord.from_resources([patient(gender="female")]),
        now=datetime(2026, 11, 1, tzinfo=UTC),
        trial=next(iter(default_trials().values())),
        library=default_library(),
    )
    return criterion.rule.evaluate(ctx).status


def test_a_leaf_rule_evaluates_itself_with_its_kinds_evaluator() -> None:
    assert _status_on_a_woman({"type": "sex", "is": ["female"]}) is Status.MET
    assert _status_on_a_woman({"type": "sex", "is": ["male"]}) is Status.NOT_MET


@pytest.mark.parametrize(
    ("rule", "status"),
    [
        ({"not": {"type": "sex", "is": ["female"]}}, Status.NOT_MET),
        ({"any": [{"type": "sex", "is": ["male"]}, {"type": "sex", "is": ["female"]}]}, Status.MET),
        ({"all": [{"type": "sex", "is": ["female"]}, {"not": {"type": "sex", "is": ["female"]}}]}, Status.NOT_MET),
    ],
)
def test_a_composition_evaluates_itself_from_its_parts(rule: dict[str, object], status: Status) -> None:
    assert _status_on_a_woman(rule) is status


def _criterion(kind: str, status: Status) -> CriterionAssessment:
    return CriterionAssessment(id="c", kind=kind, text="t", status=status, reason="r")


def test_an_applying_exclusion_rules_the_patient_out() -> None:
    assert _criterion("exclusion", Status.MET).rules_out


def test_a_failed_inclusion_rules_the_patient_out() -> None:
    assert _criterion("inclusion", Status.NOT_MET).rules_out


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("inclusion", Status.MET),
        ("exclusion", Status.NOT_MET),
        ("inclusion", Status.UNKNOWN),
        ("exclusion", Status.UNKNOWN),
    ],
)
def test_a_met_inclusion_a_clear_exclusion_or_an_unknown_does_not_rule_out(kind: str, status: Status) -> None:
    assert not _criterion(kind, status).rules_out
