"""The engine's answer for one patient and one trial: the contract between the engine and its callers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    """A criterion's status. For an exclusion, ``met`` means the exclusion applies."""

    MET = "met"
    NOT_MET = "not_met"
    UNKNOWN = "unknown"


class Verdict(StrEnum):
    LIKELY_ELIGIBLE = "likely_eligible"
    NEEDS_REVIEW = "needs_review"
    NOT_ELIGIBLE = "not_eligible"


CriterionKind = Literal["inclusion", "exclusion"]


class Fact(BaseModel):
    """One value that took part in a decision, as a clinician would read it."""

    model_config = ConfigDict(frozen=True)

    label: str
    value: str
    date: str | None = None
    resource: str | None = None


class CriterionAssessment(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    kind: CriterionKind
    text: str
    judgement: bool = False
    status: Status
    reason: str
    evidence: list[str] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)

    @property
    def rules_out(self) -> bool:
        """The trial file's rule: a failed inclusion or an applying exclusion rules the patient out."""
        status = self.status
        if status is Status.NOT_MET:
            return self.kind == "inclusion"
        return status is Status.MET and self.kind == "exclusion"


class Assessment(BaseModel):
    model_config = ConfigDict(frozen=True)

    trial_id: str
    trial_title: str
    patient: str
    evaluated_at: datetime
    verdict: Verdict
    criteria: list[CriterionAssessment]

    def count(self, status: Status) -> int:
        return sum(1 for c in self.criteria if c.status is status)

    def screen_json(self) -> dict[str, object]:
        """The shape `trial-cds screen --format json` prints, one object per bundle."""
        return {
            "patient": self.patient,
            "trial": self.trial_id,
            "verdict": self.verdict.value,
            "criteria": [
                {
                    "id": c.id,
                    "kind": c.kind,
                    "status": c.status.value,
                    "reason": c.reason,
                    "evidence": list(c.evidence),
                }
                for c in self.criteria
            ],
        }


def overall_verdict(criteria: list[CriterionAssessment]) -> Verdict:
    """Any criterion that rules the patient out makes them not eligible; every criterion that is not a
    judgement call must be decided for `likely_eligible`."""
    if any(c.rules_out for c in criteria):
        return Verdict.NOT_ELIGIBLE
    if all(c.status is not Status.UNKNOWN for c in criteria if not c.judgement):
        return Verdict.LIKELY_ELIGIBLE
    return Verdict.NEEDS_REVIEW
