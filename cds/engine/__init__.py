"""The eligibility engine: pure. A trial, a patient record and an evaluation date in; an Assessment out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, assert_never

from cds.assessment import Assessment, CriterionAssessment, Status, overall_verdict
from cds.engine.context import EvalContext
from cds.engine.result import UNKNOWN, RuleResult, all_of, any_of, negate
from cds.record import PatientRecord
from cds.rules.base import LeafRule
from cds.rules.logic import AllRule, AnyRule, NotRule
from cds.valuesets import ValueSetLibrary, default_library

if TYPE_CHECKING:  # the rule kinds' models name their evaluators, which import the engine
    from cds.rules.kinds import Rule
    from cds.trials import Trial

__all__ = ["evaluate"]

# Each leaf kind's evaluator, by the kind's model, as first met: one lookup per rule, not a method call.
_EVALUATORS: dict[type[object], Callable[[Any, EvalContext], RuleResult]] = {}


def evaluate_rule(rule: Rule, ctx: EvalContext) -> RuleResult:
    evaluator = _EVALUATORS.get(type(rule))
    if evaluator is not None:  # most rules are leaves: one lookup, not three isinstance checks first
        return evaluator(rule, ctx)
    if isinstance(rule, AllRule):
        return all_of([evaluate_rule(r, ctx) for r in rule.all])
    if isinstance(rule, AnyRule):
        return any_of([evaluate_rule(r, ctx) for r in rule.any])
    if isinstance(rule, NotRule):
        return negate(evaluate_rule(rule.not_, ctx))
    if isinstance(rule, LeafRule):
        found: Callable[[Any, EvalContext], RuleResult] = rule.evaluator()
        _EVALUATORS[type(rule)] = found
        return found(rule, ctx)
    assert_never(rule)


def evaluate(trial: Trial, record: PatientRecord, now: datetime, library: ValueSetLibrary | None = None) -> Assessment:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    ctx = EvalContext(record=record, now=now, trial=trial, library=library or default_library())
    results: list[CriterionAssessment] = []
    for criterion in trial.criteria:
        try:
            r = evaluate_rule(criterion.rule, ctx)
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
    return Assessment(
        trial_id=trial.id,
        trial_title=trial.title,
        patient=record.patient_ref,
        evaluated_at=now,
        verdict=overall_verdict(results),
        criteria=results,
    )
