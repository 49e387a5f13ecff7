"""Age on the evaluation date and administrative sex, from Patient."""

from __future__ import annotations

from typing import Literal

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext
from cds.engine.formatting import day
from cds.engine.plan import RulePlan
from cds.engine.result import RuleResult


class AgeCriterion(RulePlan):
    """An age rule as the engine reads it (``cds.rules.demographics.AgeRule.plan``)."""

    def __init__(self, *, min: int | None, max: int | None) -> None:
        self.min = min
        self.max = max

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_age(self, ctx)


class SexCriterion(RulePlan):
    """A sex rule as the engine reads it (``cds.rules.demographics.SexRule.plan``)."""

    def __init__(self, *, is_: list[Literal["male", "female", "other", "unknown"]]) -> None:
        self.is_: list[Literal["male", "female", "other", "unknown"]] = is_

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_sex(self, ctx)


def evaluate_age(rule: AgeCriterion, ctx: EvalContext) -> RuleResult:
    patient = ctx.record.patient
    if patient is None:
        return RuleResult(Status.UNKNOWN, "no Patient resource in the record", missing=("date of birth",))
    ages = ctx.age()
    if ages is None:
        return RuleResult(Status.UNKNOWN, "date of birth not recorded", (patient.ref,), missing=("date of birth",))
    if patient.birth_date is not None and patient.birth_date.day > ctx.today:
        # A birth after the evaluation date is a wrong record, not a negative age: no decision on it. The
        # reason names the evaluation date only (the birth date is PHI).
        return RuleResult(
            Status.UNKNOWN,
            f"the recorded date of birth is after the evaluation date ({day(ctx.today)})",
            (patient.ref,),
            missing=("correct date of birth",),
        )
    youngest, oldest = ages

    def inside(age: int) -> bool:
        return (rule.min is None or age >= rule.min) and (rule.max is None or age <= rule.max)

    # Age itself is PHI-light but the birth date is not: the fact shows the age, never the date of birth.
    shown = str(youngest) if youngest == oldest else f"{youngest}–{oldest}"
    fact = Fact(label="Age", value=f"{shown} years", date=day(ctx.today), resource=patient.ref)
    bounds = _bounds(rule)
    if inside(youngest) and inside(oldest):
        return RuleResult(Status.MET, f"age {shown} years ({bounds})", (patient.ref,), (fact,))
    if not inside(youngest) and not inside(oldest) and (youngest == oldest or _same_side(rule, youngest, oldest)):
        return RuleResult(Status.NOT_MET, f"age {shown} years (needs {bounds})", (patient.ref,), (fact,))
    return RuleResult(
        Status.UNKNOWN,
        f"age {shown} years: the partial date of birth does not settle {bounds}",
        (patient.ref,),
        (fact,),
        ("full date of birth",),
    )


def _same_side(rule: AgeCriterion, a: int, b: int) -> bool:
    below = rule.min is not None and a < rule.min and b < rule.min
    above = rule.max is not None and a > rule.max and b > rule.max
    return below or above


def _bounds(rule: AgeCriterion) -> str:
    if rule.min is not None and rule.max is not None:
        return f"{rule.min}–{rule.max} years"
    if rule.min is not None:
        return f"≥ {rule.min} years"
    return f"≤ {rule.max} years"


def evaluate_sex(rule: SexCriterion, ctx: EvalContext) -> RuleResult:
    patient = ctx.record.patient
    if patient is None:
        return RuleResult(Status.UNKNOWN, "no Patient resource in the record", missing=("sex",))
    gender = patient.gender
    fact = Fact(label="Sex", value=gender or "not recorded", resource=patient.ref)
    if gender not in ("male", "female"):
        return RuleResult(Status.UNKNOWN, f"sex {gender or 'not recorded'}", (patient.ref,), (fact,), ("sex",))
    if gender in rule.is_:
        return RuleResult(Status.MET, gender, (patient.ref,), (fact,))
    return RuleResult(Status.NOT_MET, gender, (patient.ref,), (fact,))
