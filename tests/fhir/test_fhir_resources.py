"""One copy of each resource, by the same rules for the prefetch step and for a record read from a Bundle
(cds.fhir.resources.unique_resources)."""

from __future__ import annotations

from typing import Any

from fhir_builders import lab, patient

from cds.fhir.prefetch import merge_resources
from cds.record import PatientRecord


def updated(resource: dict[str, Any], when: str) -> dict[str, Any]:
    return {**resource, "meta": {"lastUpdated": when}}


def outcome() -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}


def test_copies_are_compared_as_moments_not_as_text() -> None:
    platelets = lab("777-3", "Platelets", 150, "10*3/uL", "2026-10-01")
    earlier = updated(platelets, "2026-10-02T10:00:00+02:00")  # 08:00 UTC
    later = updated({**platelets, "status": "amended"}, "2026-10-02T09:00:00Z")
    assert merge_resources([[earlier], [later]]) == [later]
    record = PatientRecord.from_resources([patient(), earlier, later])
    assert [o.status for o in record.observations] == ["amended"]


def test_a_record_leaves_operation_outcomes_out_as_the_prefetch_step_does() -> None:
    resources = [patient(), outcome()]
    assert merge_resources([resources]) == [resources[0]]
    assert PatientRecord.from_resources(resources).resource_count == 1
