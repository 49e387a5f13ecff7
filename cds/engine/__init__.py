"""The eligibility engine: pure. A trial, a patient record and an evaluation date in; an Assessment out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from cds.assessment import Assessment, CriterionAssessment, CriterionKind, Fact, Status, Verdict, overall_verdict
from cds.engine.context import EvalContext, TrialSettings
from cds.engine.formatting import day
from cds.engine.plan import TrialPlan
from cds.engine.result import UNKNOWN, RuleResult
from cds.record import PatientRecord
from cds.valuesets import ValueSetLibrary, default_library

__all__ = ["CriterionSpec", "RuleSpec", "TrialSpec", "criterion_assessment_of", "deceased_reason", "evaluate"]

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
        criterion_assessment = criterion_assessment_of(
            criterion.id,
            criterion.kind,
            criterion.text,
            criterion.judgement,
            status,
            r.reason or "no data",
            list(r.evidence),
            list(r.facts),
            list(r.missing),
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


_set_attribute = object.__setattr__
_CRITERION_FIELDS = ("id", "kind", "text", "judgement", "status", "reason", "evidence", "facts", "missing")


def criterion_assessment_of(
    id: str,
    kind: CriterionKind,
    text: str,
    judgement: bool,
    status: Status,
    reason: str,
    evidence: list[str],
    facts: list[Fact],
    missing: list[str],
) -> CriterionAssessment:
    """``CriterionAssessment(id=id, kind=kind, ...)``: the same object (its fields, the fields set, no extra,
    no private), without pydantic's validation when every value already has the exact type validation
    would give it back (a ``str``, a ``bool``, a ``Status``, a ``Fact``, one of the two kinds), as the
    engine's always have; any other value goes through the validator. The lists are kept, not copied: the
    caller's own, made for this object. Validation was ~10,000 instructions
    per criterion (docs/performance.md); ``tests/engine/test_criterion_assessment.py`` holds the two ways
    to the same objects."""
    values: dict[str, Any] = {
        "id": id,
        "kind": kind,
        "text": text,
        "judgement": judgement,
        "status": status,
        "reason": reason,
        "evidence": evidence,
        "facts": facts,
        "missing": missing,
    }
    if not _validated_already(id, kind, text, judgement, status, reason, evidence, facts, missing):
        validated: CriterionAssessment = CriterionAssessment.__pydantic_validator__.validate_python(values)
        return validated
    made = object.__new__(CriterionAssessment)
    _set_attribute(made, "__dict__", values)
    _set_attribute(made, "__pydantic_fields_set__", set(_CRITERION_FIELDS))
    _set_attribute(made, "__pydantic_extra__", None)
    _set_attribute(made, "__pydantic_private__", None)
    return made


def _validated_already(
    id: object,
    kind: object,
    text: object,
    judgement: object,
    status: object,
    reason: object,
    evidence: list[Any],
    facts: list[Any],
    missing: list[Any],
) -> bool:
    """True when validation would hand each value back as it is (exact types: a subclass of ``str`` would
    come back a ``str``)."""
    if type(id) is not str or type(text) is not str or type(reason) is not str:
        return False
    if type(kind) is not str or (kind != "inclusion" and kind != "exclusion"):
        return False
    if type(judgement) is not bool or type(status) is not Status:
        return False
    for item in evidence:
        if type(item) is not str:
            return False
    for item in missing:
        if type(item) is not str:
            return False
    return all(type(fact) is Fact for fact in facts)


def deceased_reason(record: PatientRecord) -> str | None:
    """The verdict's reason for a dead patient: "deceased on 2026-12-07" (the day as written), "recorded as
    deceased" without a date; None for a patient not recorded as deceased."""
    patient = record.patient
    if patient is None or not patient.deceased:
        return None
    return f"deceased on {day(patient.deceased_on)}" if patient.deceased_on is not None else "recorded as deceased"
