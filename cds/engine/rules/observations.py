"""Coded observation values: ECOG, pregnancy and breastfeeding status, stage group, M category, histology."""

from __future__ import annotations

from typing import Protocol

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext, WindowSpec
from cds.engine.formatting import age_days, day, number
from cds.engine.plan import RulePlan
from cds.engine.result import Outcome, RuleResult, outcome
from cds.engine.rules.labs import NOT_DONE, USABLE_STATUS, absent_note, matching_observations
from cds.record.model import Observation, ObservationValue


class RangeCriterion(Protocol):
    """A numeric range an observation's value falls in (``cds.rules.observations.NumericRange``)."""

    @property
    def min(self) -> float | None: ...

    @property
    def max(self) -> float | None: ...

    @property
    def gt(self) -> float | None: ...


class ObservationCriterion(RulePlan):
    """An observation rule as the engine reads it (``cds.rules.observations.ObservationRule.plan``)."""

    def __init__(
        self,
        *,
        label: str,
        valuesets: list[str],
        window: WindowSpec | None,
        met_values: list[str],
        not_met_values: list[str],
        numeric_values: str | None,
        met_range: RangeCriterion | None,
        not_met_range: RangeCriterion | None,
        other: Outcome,
        when_missing: Outcome,
        below_detection: Outcome,
        order: str | None,
        presence: bool,
    ) -> None:
        self.label = label
        self.valuesets = valuesets
        self.window = window
        self.met_values = met_values
        self.not_met_values = not_met_values
        self.numeric_values = numeric_values
        self.met_range = met_range
        self.not_met_range = not_met_range
        self.other: Outcome = other
        self.when_missing: Outcome = when_missing
        self.below_detection: Outcome = below_detection
        self.order = order
        self.presence = presence

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_observation(self, ctx)


def _in_range(value: float, rng: RangeCriterion | None) -> bool:
    if rng is None:
        return False
    if rng.min is not None and value < rng.min:
        return False
    if rng.max is not None and value > rng.max:
        return False
    return not (rng.gt is not None and value <= rng.gt)


def _shown(value: ObservationValue) -> str:
    if value.concept is not None:
        return value.concept.label()
    if value.quantity is not None:
        q = value.quantity
        return f"{q.comparator or ''}{number(q.value)}{' ' + q.unit if q.unit else ''}"
    if value.integer is not None:
        return str(value.integer)
    if value.string is not None:
        return value.string
    if value.boolean is not None:
        return "yes" if value.boolean else "no"
    return "no value"


def _shown_for(rule: ObservationCriterion, value: ObservationValue, ctx: EvalContext) -> str:
    """A graded answer (ECOG "LA9623-5") is shown as its grade, the way clinicians say it."""
    if rule.numeric_values and value.concept is not None:
        found = ctx.match(value.concept, [rule.numeric_values])
        if found is not None and isinstance(found.value, int | float):
            return number(float(found.value))
    return _shown(value)


def classify(rule: ObservationCriterion, value: ObservationValue, ctx: EvalContext) -> Status:
    if value.concept is not None:
        if rule.met_values and ctx.match(value.concept, rule.met_values, names="never"):
            return Status.MET
        if rule.not_met_values and ctx.match(value.concept, rule.not_met_values, names="never"):
            return Status.NOT_MET
    texts = (value.concept.texts() if value.concept is not None else []) + (
        [value.string] if value.string is not None else []
    )
    worded = _worded_answer(rule, texts, ctx)
    if worded is not None:
        return worded
    if value.boolean is not None and (rule.met_values or rule.not_met_values):
        return Status.MET if value.boolean else Status.NOT_MET
    number_value = _numeric(rule, value, ctx)
    if number_value == "below":
        return outcome(rule.below_detection)
    if isinstance(number_value, float):
        if _in_range(number_value, rule.met_range):
            return Status.MET
        if _in_range(number_value, rule.not_met_range):
            return Status.NOT_MET
    return outcome(rule.other)


def _worded_answer(rule: ObservationCriterion, texts: list[str], ctx: EvalContext) -> Status | None:
    """A result written in words ("Not detected", "Non-reactive", "IVB"): the longest phrase found
    decides, so "not detected" beats the "detected" inside it."""
    best: tuple[int, Status] | None = None
    for text in texts:
        for names, status in ((rule.met_values, Status.MET), (rule.not_met_values, Status.NOT_MET)):
            for vs_name in names:
                found = ctx.library[vs_name].match_text(text)
                if found is not None and (best is None or len(found.label) > best[0]):
                    best = (len(found.label), status)
    return best[1] if best else None


def _numeric(rule: ObservationCriterion, value: ObservationValue, ctx: EvalContext) -> float | str | None:
    if value.integer is not None:
        return float(value.integer)
    if value.quantity is not None:
        if value.quantity.comparator in ("<", "<="):
            return "below"
        return value.quantity.value
    if value.concept is not None and rule.numeric_values:
        found = ctx.match(value.concept, [rule.numeric_values])
        if found is not None and isinstance(found.value, int | float):
            return float(found.value)
    if value.string is not None and rule.numeric_values:
        text = value.string.strip()
        if text.isdigit():
            return float(text)
    return None


def _wanted(rule: ObservationCriterion) -> str:
    return rule.label if not rule.order or rule.order == rule.label else f"{rule.label} ({rule.order})"


def _usable(obs: Observation, ctx: EvalContext) -> bool:
    return obs.status in USABLE_STATUS and obs.when is not None and obs.when.day <= ctx.today


def evaluate_observation(rule: ObservationCriterion, ctx: EvalContext) -> RuleResult:
    older: Observation | None = None
    absent: Observation | None = None
    for obs in matching_observations(ctx, rule.valuesets):
        if not _usable(obs, ctx):
            continue
        if obs.value.is_empty():
            if obs.value.absent is not None and absent is None and ctx.in_window(obs.when, rule.window):
                absent = obs
            continue
        if rule.window is not None and not ctx.in_window(obs.when, rule.window):
            older = obs
            break
        status = Status.MET if rule.presence else classify(rule, obs.value, ctx)
        shown = _shown_for(rule, obs.value, ctx)
        fact = Fact(label=rule.label, value=shown, date=day(obs.when), resource=obs.ref)
        reason = f"{rule.label}: {shown} on {day(obs.when)}"
        missing = (_wanted(rule),) if status is Status.UNKNOWN else ()
        return RuleResult(status, reason, (obs.ref,), (fact,), missing)
    status = outcome(rule.when_missing)
    if absent is not None:
        # A result recorded without its value: named, and `unknown` unless the test was simply not done.
        if absent.value.absent not in NOT_DONE:
            status = Status.UNKNOWN
        return RuleResult(
            status,
            absent_note(rule.label, absent),
            (absent.ref,),
            missing=(_wanted(rule),) if status is Status.UNKNOWN else (),
        )
    if older is not None and older.when is not None and rule.window is not None:
        reason = (
            f"no {rule.label} within {rule.window.describe()}; last one {day(older.when)} "
            f"({age_days(older.when, ctx.today)}): {_shown(older.value)}"
        )
        evidence: tuple[str, ...] = (older.ref,)
    else:
        scope = f" within {rule.window.describe()}" if rule.window else ""
        reason = f"no {rule.label}{scope} in the record"
        evidence = ()
    missing = (_wanted(rule),) if status is Status.UNKNOWN else ()
    return RuleResult(status, reason, evidence, missing=missing)
