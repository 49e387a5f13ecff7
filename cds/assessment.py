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
        """The trial file's rule: a failed inclusion or an applying exclusion rules the patient out.
        Derived from ``kind`` and ``status`` on each read — never stored, never taken from input, never
        serialised — so a copy with another status answers for its own, and every reader (the verdict, the
        cards, the order hooks) reads one answer. A property rather than a field set by a validator: a
        trial's criteria are made on every call, and a Python validator per criterion was a fixed cost
        per trial (docs/performance.md)."""
        status = self.status
        return (status == Status.NOT_MET and self.kind == "inclusion") or (
            status == Status.MET and self.kind == "exclusion"
        )


class Assessment(BaseModel):
    model_config = ConfigDict(frozen=True)

    trial_id: str
    trial_title: str
    patient: str
    evaluated_at: datetime
    verdict: Verdict
    criteria: list[CriterionAssessment]
    #: Set when the verdict rests on the patient, not on the criteria ("deceased on 2026-12-07": the dead
    #: are not candidates). The criteria are still evaluated and reported as the record has them.
    verdict_reason: str | None = None
    #: What the reader should know about the record as a whole: resources about other patients left
    #: out, content of an earlier FHIR version not read. No PHI (counts and resource types only).
    notes: list[str] = Field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.criteria if c.status is status)

    def screen_json(self) -> dict[str, object]:
        """The shape `trial-cds screen --format json` prints, one object per patient. ``verdict_reason``
        and ``notes`` appear only when set, so a usual answer keeps the shape it always had."""
        out: dict[str, object] = {
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
        if self.verdict_reason:
            out["verdict_reason"] = self.verdict_reason
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def overall_verdict(criteria: list[CriterionAssessment]) -> Verdict:
    """Any criterion that rules the patient out makes them not eligible; every criterion that is not a
    judgement call must be decided for `likely_eligible`."""
    if any(c.rules_out for c in criteria):
        return Verdict.NOT_ELIGIBLE
    if all(c.status is not Status.UNKNOWN for c in criteria if not c.judgement):
        return Verdict.LIKELY_ELIGIBLE
    return Verdict.NEEDS_REVIEW
