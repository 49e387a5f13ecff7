from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from builders import patient  # noqa: E402

from cds.assessment import Assessment, CriterionAssessment  # noqa: E402
from cds.engine import evaluate  # noqa: E402
from cds.record import PatientRecord  # noqa: E402
from cds.trials import Trial, default_trials  # noqa: E402

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TRIAL_ID = "npc-liver-mets-ldrt"


@pytest.fixture(scope="session")
def trial() -> Trial:
    return default_trials()[TRIAL_ID]


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
