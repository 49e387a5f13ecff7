"""The eligibility engine: pure. A trial, a patient record and an evaluation date in; an Assessment out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from cds.assessment import Assessment, CriterionAssessment, CriterionKind, Status, Verdict, overall_verdict
from cds.engine.context import EvalContext, TrialSettings
from cds.engine.formatting import day
from cds.engine.plan import TrialPlan
from cds.engine.result import UNKNOWN, RuleResult
from cds.record import PatientRecord
from cds.valuesets import ValueSetLibrary, default_library

__all__ = ["CriterionSpec", "RuleSpec", "TrialSpec", "deceased_reason", "evaluate"]

# What the engine reads of a trial, declared here: the trial's models (cds.trials, cds.rules) import the
# engine, never the other way round; mypy checks that ``cds.trials.Trial`` fits ``TrialSpec``.


class RuleSpec(Protocol):
    """A criterion's rule: a leaf kind (``cds.rules.<kind>``), which calls its evaluator in
    ``cds.engine.rules``, or a composition (``cds.rules.kinds``), which combines its parts' results."""

    def evaluate(self, ctx: EvalContext) -> RuleResult: ...


class CriterionSpec(Protocol):
    """One of the trial's criteria (``cds.trials.Criterion``)."""

    @property
    def id(self) -> str: ...

    @property
    def kind(self) -> CriterionKind: ...

    @property
    def text(self) -> str: ...

    @property
    def judgement(self) -> bool: ...

    @property
    def rule(self) -> RuleSpec: ...


class TrialSpec(TrialSettings, Protocol):
    """A trial as the engine reads it (``cds.trials.Trial``)."""

    @property
    def id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def criteria(self) -> Sequence[CriterionSpec]: ...

    def plan(self) -> TrialPlan:
        """The trial as the engine evaluates it (``cds.engine.plan``), built once."""
        ...


def evaluate(
    trial: TrialSpec, record: PatientRecord, now: datetime, library: ValueSetLibrary | None = None
) -> Assessment:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    plan = trial.plan()
    ctx = EvalContext(record=record, now=now, trial=plan.settings, library=library or default_library())
    results: list[CriterionAssessment] = []
    for criterion in plan.criteria:
        try:
            r = criterion.rule.evaluate(ctx)
        except Exception as exc:  # a data shape no rule foresaw: this criterion becomes unknown, never a crash
            r = RuleResult(
                Status.UNKNOWN,
                f"could not be evaluated from this record ({type(exc).__name__})",
                missing=("manual review",),
            )
        status = r.status
        if criterion.judgement and status is not UNKNOWN:
            # Judgement criteria are the investigator's: software reports what it found, not a decision.
            status = UNKNOWN
        # The model's own validator, called directly: the same validation and the same instance as
        # CriterionAssessment(**fields), without BaseModel.__init__'s keyword packing (~0.7 µs each).
        criterion_assessment: CriterionAssessment = CriterionAssessment.__pydantic_validator__.validate_python(
            {
                "id": criterion.id,
                "kind": criterion.kind,
                "text": criterion.text,
                "judgement": criterion.judgement,
                "status": status,
                "reason": r.reason or "no data",
                "evidence": list(r.evidence),
                "facts": list(r.facts),
                "missing": list(r.missing),
            }
        )
        results.append(criterion_assessment)
    verdict_reason = deceased_reason(record)
    return Assessment(
        trial_id=plan.id,
        trial_title=plan.title,
        patient=record.patient_ref,
        evaluated_at=now,
        # The dead are never candidates, whatever their record says of the criteria.
        verdict=Verdict.NOT_ELIGIBLE if verdict_reason is not None else overall_verdict(results),
        criteria=results,
        verdict_reason=verdict_reason,
        notes=record.notes(),
    )


def deceased_reason(record: PatientRecord) -> str | None:
    """The verdict's reason for a dead patient: "deceased on 2026-12-07" (the day as written), "recorded as
    deceased" without a date; None for a patient not recorded as deceased."""
    patient = record.patient
    if patient is None or not patient.deceased:
        return None
    return f"deceased on {day(patient.deceased_on)}" if patient.deceased_on is not None else "recorded as deceased"
