"""Laboratory results against thresholds: the latest usable result of a test, and its comparison, absolute
or times the result's own ULN/LLN. The lab rule itself (measured, else derived) is in ``derived``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import msgspec

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext, LabTestSpec, WindowSpec, newest_first_key
from cds.engine.formatting import age_days, day, number, quantity
from cds.engine.plan import RulePlan
from cds.engine.result import Outcome, RuleResult, outcome
from cds.record.model import Observation, Quantity, RefRange
from cds.units import convert, normalise_unit


class LabCriterion(RulePlan):
    """A lab rule as the lab evaluators read it: the parameters of ``cds.rules.labs.LabRule`` (its
    ``plan()``, a ``cds.engine.rules.derived.LabPlan``), native fields read directly."""

    def __init__(
        self,
        *,
        test: str,
        op: Literal[">=", ">", "<=", "<", "outside_range"],
        value: float | None,
        unit: str | None,
        times_uln: float | None,
        times_lln: float | None,
        window: WindowSpec | None,
        derive: Literal["ckd_epi_2021", "corrected_calcium", "cockcroft_gault"] | None,
        derive_from: dict[str, str],
        when_missing: Outcome,
    ) -> None:
        self.test = test
        self.op: Literal[">=", ">", "<=", "<", "outside_range"] = op
        self.value = value
        self.unit = unit
        self.times_uln = times_uln
        self.times_lln = times_lln
        self.window = window
        self.derive: Literal["ckd_epi_2021", "corrected_calcium", "cockcroft_gault"] | None = derive
        self.derive_from = derive_from
        self.when_missing: Outcome = when_missing


USABLE_STATUS = frozenset({"final", "amended", "corrected"})
_EPS = 1e-9


def _tol(b: float) -> float:
    """Float noise allowance: 1.5 × 1.2 is 1.7999999999999998, and 1.8 must still be "≤ 1.5 × ULN"."""
    return _EPS * max(1.0, abs(b))


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b - _tol(b),
    ">": lambda a, b: a > b + _tol(b),
    "<=": lambda a, b: a <= b + _tol(b),
    "<": lambda a, b: a < b - _tol(b),
}


class LabValue(msgspec.Struct, frozen=True, gc=False):
    """msgspec Structs here, not frozen dataclasses: made per result read, and created in C."""

    obs: Observation
    low: float  # the possible values, in the test's unit: equal unless the result has a comparator
    high: float
    shown: str

    @property
    def value(self) -> float:
        return self.high if math.isfinite(self.high) else self.low


class LabPick(msgspec.Struct, frozen=True, gc=False):
    value: LabValue | None
    why_missing: str = ""
    older: Observation | None = None
    absent: Observation | None = None  # a result in the window with a dataAbsentReason and no value


#: dataAbsentReason codes that say no test was done: as if there were no result. Every other reason
#: (masked, error, asked-declined, unknown, …) hides a result that may exist: `unknown`, naming it.
NOT_DONE = frozenset({"not-performed", "not-asked", "not-applicable"})


def absent_note(label: str, obs: Observation) -> str:
    return f"{label} on {day(obs.when)} has no value (data absent: {obs.value.absent})"


def _to_interval(q: Quantity, factor_value: float) -> tuple[float, float]:
    v = factor_value
    if q.comparator in ("<", "<="):
        return -math.inf, v - (_EPS if q.comparator == "<" else 0.0)
    if q.comparator in (">", ">="):
        return v + (_EPS if q.comparator == ">" else 0.0), math.inf
    return v, v


def matching_observations(ctx: EvalContext, valuesets: list[str]) -> list[Observation]:
    """Observations coded in the value sets, newest first."""
    key = tuple(valuesets)
    cached = ctx.observation_matches.get(key)
    if cached is None:
        sets = [ctx.library[v] for v in valuesets]
        hits: list[list[Observation]] = []
        # Run once per value-set tuple over every code of the record: kept lean (the code is unpacked
        # only where a verdict is still to be made, which is rare once the process has warmed up).
        for verdicts, code, observations in ctx.observation_groups():
            hit = verdicts.get(key)
            if hit is None:
                system, value = code
                hit = verdicts[key] = any(vs.match_code(system, value) for vs in sets)
            if hit:
                hits.append(observations)
        if len(hits) == 1:  # one code: its results are sorted already (and only read)
            cached = hits[0]
        elif not hits:
            cached = []
        else:
            found: dict[int, Observation] = {}
            for observations in hits:
                for o in observations:
                    found[id(o)] = o
            cached = list(found.values())
            cached.sort(key=newest_first_key, reverse=True)
        ctx.observation_matches[key] = cached
    return cached


def pick_latest(ctx: EvalContext, test: LabTestSpec, window: WindowSpec) -> LabPick:
    """The most recent usable result within the window, or why there is none."""
    notes: list[str] = []
    older: Observation | None = None
    absent: Observation | None = None
    for obs in matching_observations(ctx, test.valuesets):
        if obs.when is None or obs.when.day > ctx.today:
            continue
        if obs.status not in USABLE_STATUS:
            notes.append(f"{test.label} on {day(obs.when)} is {obs.status or 'without status'}, not final")
            continue
        if obs.value.absent is not None and obs.value.quantity is None:
            if ctx.in_window(obs.when, window):
                notes.append(absent_note(test.label, obs))
                absent = absent or obs
            continue
        q = obs.value.quantity
        if q is None or (q.unit is None and not test.dimensionless):
            notes.append(f"{test.label} on {day(obs.when)} has no numeric value with a unit")
            continue
        converted = (
            q.value if test.dimensionless else convert(q.value, q.unit or "", test.unit, test.molar_mass_g_per_mol)
        )
        if converted is None:
            notes.append(f"{test.label} on {day(obs.when)} is in {q.unit}, which does not convert to {test.unit}")
            continue
        if not ctx.in_window(obs.when, window):
            older = obs
            break
        low, high = _to_interval(q, converted)
        shown = (q.comparator or "") + quantity(converted, test.unit, test.display_unit)
        if q.unit and not test.dimensionless and normalise_unit(q.unit) != normalise_unit(test.unit):
            # As reported first, the way the lab printed it; the converted value for the threshold after.
            shown = f"{q.comparator or ''}{quantity(q.value, normalise_unit(q.unit))} (= {shown})"
        return LabPick(LabValue(obs, low, high, shown))
    if older is not None and older.when is not None:
        why = (
            f"no {test.label} within {window.describe()}; last one {day(older.when)} "
            f"({age_days(older.when, ctx.today)})"
        )
    else:
        why = f"no {test.label} result in the record"
    if notes:
        why += " (" + "; ".join(notes[:2]) + ")"
    return LabPick(None, why, older, absent)


def _range_for(obs: Observation, ctx: EvalContext) -> RefRange | None:
    ranges = obs.ranges
    if not ranges:
        return None
    gender = ctx.record.patient.gender if ctx.record.patient else None
    tags = _SEX_TAGS.get(gender) if gender is not None else None
    if tags is not None:
        for r in ranges:
            if any(t in r.applies_to for t in tags) and not (
                gender == "male" and any(t in r.applies_to for t in _SEX_TAGS["female"])
            ):
                return r
    for r in ranges:
        if not any(t in r.applies_to for t in _ANY_SEX):
            return r
    return ranges[0]


_SEX_TAGS = {"male": ("male", "248153007"), "female": ("female", "248152002")}
_ANY_SEX = ("male", "female", "248153007", "248152002")


class Limit(msgspec.Struct, frozen=True, gc=False):
    value: float
    source: str  # "reference range of the result" or "trial default"


def limit(ctx: EvalContext, test: LabTestSpec, obs: Observation, which: str) -> Limit | None:
    """The result's own ULN ("high") or LLN ("low"), in the test's unit; else the trial file's default."""
    rr = _range_for(obs, ctx)
    bound = getattr(rr, which) if rr is not None else None
    if bound is not None:
        if test.dimensionless:
            return Limit(bound.value, "the result's reference range")
        unit = bound.unit or (obs.value.quantity.unit if obs.value.quantity else None)
        if unit:
            converted = convert(bound.value, unit, test.unit, test.molar_mass_g_per_mol)
            if converted is not None:
                return Limit(converted, "the result's reference range")
    default = test.default_range
    if default is None:
        return None
    gender = ctx.record.patient.gender if ctx.record.patient else None
    per_sex = getattr(default, gender) if gender in ("male", "female") else None
    value = (per_sex or {}).get(which) if per_sex else None
    if value is None:
        value = getattr(default, which)
    if value is None:
        return None
    return Limit(float(value), "trial default (no reference range on the result)")


def _symbol(op: str) -> str:
    return op.replace(">=", "≥").replace("<=", "≤")


def compare(
    rule: LabCriterion,
    ctx: EvalContext,
    test: LabTestSpec,
    lab: LabValue,
    label: str | None = None,
    derived_note: str = "",
    extra_evidence: tuple[str, ...] = (),
    extra_facts: tuple[Fact, ...] = (),
) -> RuleResult:
    name = label or test.label
    when = day(lab.obs.when)
    fact = Fact(label=name, value=lab.shown, date=when, resource=lab.obs.ref)
    evidence = (lab.obs.ref, *extra_evidence)
    facts = (fact, *extra_facts)
    head = f"{name} {lab.shown} on {when}{derived_note}"
    if rule.op == "outside_range":
        lln, uln = limit(ctx, test, lab.obs, "low"), limit(ctx, test, lab.obs, "high")
        if lln is None or uln is None:
            return RuleResult(
                Status.UNKNOWN,
                f"{head}: no reference range to grade it",
                evidence,
                facts,
                (f"reference range for {name}",),
            )
        status = _open_verdict(lab, lambda v: _OPS["<"](v, lln.value) or _OPS[">"](v, uln.value))
        rng = f"{number(lln.value)}–{quantity(uln.value, test.unit, test.display_unit)}"
        where = "outside" if status is Status.MET else "within" if status is Status.NOT_MET else "possibly outside"
        src = "" if lln.source.startswith("the result") else f", {lln.source}"
        return RuleResult(status, f"{head}, {where} {rng}{src}", evidence, facts)
    if rule.value is not None:
        threshold = rule.value
        if rule.unit and rule.unit != test.unit:
            converted = convert(rule.value, rule.unit, test.unit, test.molar_mass_g_per_mol)
            assert converted is not None  # checked when the trial was loaded
            threshold = converted
        shown_threshold = quantity(
            rule.value, rule.unit or test.unit, None if rule.unit and rule.unit != test.unit else test.display_unit
        )
        status = _open_verdict(lab, lambda v: _OPS[rule.op](v, threshold))
        return RuleResult(
            status,
            f"{head} (criterion: {_symbol(rule.op)} {shown_threshold})",
            evidence,
            facts,
        )
    which, times = ("high", rule.times_uln) if rule.times_uln is not None else ("low", rule.times_lln)
    assert times is not None
    ref = limit(ctx, test, lab.obs, which)
    name_limit = "ULN" if which == "high" else "LLN"
    if ref is None or ref.value <= 0:
        return RuleResult(
            Status.UNKNOWN,
            f"{head}: no {name_limit} (no reference range on the result)",
            evidence,
            facts,
            (f"{name_limit} for {name}",),
        )
    threshold = times * ref.value
    status = _open_verdict(lab, lambda v: _OPS[rule.op](v, threshold))
    ratio = lab.value / ref.value
    src = "" if ref.source.startswith("the result") else f"; {name_limit} from {ref.source}"
    op = _symbol(rule.op)
    return RuleResult(
        status,
        f"{head} = {number(ratio)} × {name_limit} {quantity(ref.value, test.unit, test.display_unit)} "
        f"(criterion: {op} {number(times)} × {name_limit}{src})",
        evidence,
        facts,
    )


def _open_verdict(lab: LabValue, predicate: Callable[[float], bool]) -> Status:
    if lab.low == lab.high:
        return Status.MET if predicate(lab.low) else Status.NOT_MET
    # A result with a comparator ("<0.5") decides only if every value it allows gives the same answer.
    probes = [v for v in (lab.low, lab.high) if math.isfinite(v)]
    far = [-1e12 if math.isinf(lab.low) else lab.low, 1e12 if math.isinf(lab.high) else lab.high]
    answers = {predicate(v) for v in probes + far}
    if answers == {True}:
        return Status.MET
    if answers == {False}:
        return Status.NOT_MET
    return Status.UNKNOWN


def missing_result(rule: LabCriterion, test: LabTestSpec, pick: LabPick) -> RuleResult:
    status = outcome(rule.when_missing)
    evidence = (pick.older.ref,) if pick.older is not None else ()
    if pick.absent is not None:
        evidence = (pick.absent.ref, *evidence)
        if pick.absent.value.absent not in NOT_DONE:
            status = Status.UNKNOWN
    wanted = (f"{test.label}" + (f" ({test.order})" if test.order else ""),) if status is Status.UNKNOWN else ()
    return RuleResult(status, pick.why_missing, evidence, missing=wanted)
