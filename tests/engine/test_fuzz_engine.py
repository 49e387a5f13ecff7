"""The engine never crashes on what it is given: random and malformed FHIR-ish resources, and mutated
copies of the fixture patients' real resources, always give 38 criteria, each met / not met / unknown with
a reason. Bounded: a couple of hundred examples per property, no deadline, no example database."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.engine import evaluate
from cds.portfolio import default_trials
from cds.record import PatientRecord

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TRIAL = default_trials()["npc-liver-mets-ldrt"]
CRITERIA = 38
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patients"

RESOURCE_TYPES = [
    "Patient",
    "Observation",
    "Condition",
    "MedicationStatement",
    "MedicationRequest",
    "MedicationAdministration",
    "Procedure",
    "Immunization",
    "AllergyIntolerance",
    "Bundle",
    "OperationOutcome",
]
KEYS = [
    "resourceType", "id", "status", "code", "coding", "system", "value", "unit", "valueQuantity",
    "valueCodeableConcept", "valueString", "effectiveDateTime", "effectivePeriod", "issued", "birthDate",
    "gender", "subject", "patient", "reference", "onsetDateTime", "recordedDate", "clinicalStatus",
    "verificationStatus", "medicationCodeableConcept", "dosage", "dosageInstruction", "doseQuantity",
    "performedDateTime", "performedPeriod", "occurrenceDateTime", "vaccineCode", "referenceRange", "low",
    "high", "interpretation", "category", "extension", "url", "start", "end", "meta", "lastUpdated",
    "component", "bodySite", "stage", "summary", "timing", "repeat", "frequency", "period",
]  # fmt: skip
DATES = ["2026-10-28", "2026-10", "2026", "1970-01-01T00:00:00Z", "2026-13-45", "yesterday", "", "0000-00-00"]
CODES = ["751-8", "777-3", "C11.9", "http://loinc.org", "http://snomed.info/sct", "mg", "10*9/L", "final"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(DATES + CODES + RESOURCE_TYPES),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=30,
)
fhirish = st.builds(
    lambda rtype, body: {**body, "resourceType": rtype} if rtype is not None else body,
    st.one_of(st.none(), st.sampled_from(RESOURCE_TYPES), scalars),
    st.dictionaries(keys, json_values, max_size=8),
)
anything = st.one_of(fhirish, json_values)


def _fixture_resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(FIXTURES.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        out.extend(e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict))
    return out


REAL = _fixture_resources()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(_paths(v, (*prefix, i)))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A real fixture resource with a few of its values (at any depth) replaced, deleted or re-typed."""
    resource = copy.deepcopy(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(resource) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = resource
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "wrap", "stringify"]))
        last = path[-1]
        if action == "delete":
            del parent[last]
        elif action == "wrap":
            parent[last] = [parent[last]]
        elif action == "stringify":
            parent[last] = json.dumps(parent[last])
        else:
            parent[last] = draw(json_values)
    return resource


def _assert_sound(resources: list[Any], patient_id: str | None = None) -> None:
    record = PatientRecord.from_resources(resources, patient_id=patient_id)
    assessment = evaluate(TRIAL, record, NOW)
    assert len(assessment.criteria) == CRITERIA
    for criterion in assessment.criteria:
        assert criterion.status in {"met", "not_met", "unknown"}, criterion
        assert isinstance(criterion.reason, str) and criterion.reason.strip(), criterion


BOUNDED = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def test_fixture_pool_is_real() -> None:
    assert len(REAL) > 200
    assert {r["resourceType"] for r in REAL} >= {"Patient", "Observation", "Condition"}


@BOUNDED
@given(st.lists(anything, max_size=12))
def test_random_fhirish_input_never_crashes_the_engine(resources: list[Any]) -> None:
    _assert_sound(resources)


@BOUNDED
@given(st.lists(mutated(), min_size=1, max_size=12), st.sampled_from([None, "pt-1", "npc-01"]))
def test_mutated_real_resources_never_crash_the_engine(resources: list[dict[str, Any]], patient_id: Any) -> None:
    _assert_sound(resources, patient_id)


@BOUNDED
@given(st.sampled_from(sorted(FIXTURES.glob("*.json"))), st.data())
def test_a_fixture_patient_with_some_resources_mutated_never_crashes(path: Path, data: st.DataObject) -> None:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    resources = [e["resource"] for e in bundle["entry"]]
    count = data.draw(st.integers(min_value=1, max_value=min(3, len(resources))))
    for index in data.draw(st.lists(st.integers(0, len(resources) - 1), min_size=count, max_size=count)):
        resources[index] = data.draw(st.one_of(mutated(), fhirish))
    _assert_sound(resources)
