"""Evaluate one criterion of the seed trial on a few resources, at the fixtures' evaluation date."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir_builders import patient

from cds.assessment import Assessment, CriterionAssessment
from cds.engine import evaluate
from cds.portfolio import default_trials
from cds.record import PatientRecord

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TRIAL_ID = "npc-liver-mets-ldrt"


def assess_all(
    resources: list[dict[str, Any]], *, with_patient: dict[str, Any] | None = None, now: datetime = NOW
) -> Assessment:
    pat = with_patient if with_patient is not None else patient()
    return evaluate(default_trials()[TRIAL_ID], PatientRecord.from_resources([pat, *resources]), now)


def assess(
    criterion_id: str,
    resources: list[dict[str, Any]],
    *,
    with_patient: dict[str, Any] | None = None,
    now: datetime = NOW,
) -> CriterionAssessment:
    a = assess_all(resources, with_patient=with_patient, now=now)
    return next(c for c in a.criteria if c.id == criterion_id)
