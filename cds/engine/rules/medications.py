"""Medication exposure from MedicationStatement, MedicationRequest and MedicationAdministration:
RxNorm ingredient, ATC class, name as last resort; status; effective period against a window; systemic
routes; daily dose against a prednisone-equivalent threshold."""

from __future__ import annotations

import re
from datetime import date
from typing import Literal, Protocol

import msgspec

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext, WindowSpec
from cds.engine.formatting import day, number
from cds.engine.plan import RulePlan
from cds.engine.result import RuleResult
from cds.record.dates import FhirDate
from cds.record.model import Concept, Dosage, MedicationUse
from cds.units import convert
from cds.valuesets import Match


class DoseSpec(Protocol):
    """A daily-dose threshold in a reference drug's equivalents (``cds.rules.medications.DoseLimit``)."""

    @property
    def reference(self) -> str: ...

    @property
    def reference_mg(self) -> float: ...

    @property
    def max_mg_per_day(self) -> float: ...


class MedicationCriterion(RulePlan):
    """A medication rule as the engine reads it (``cds.rules.medications.MedicationRule.plan``)."""

    def __init__(
        self,
        *,
        label: str,
        valuesets: list[str],
        exclude_valuesets: list[str],
        window: WindowSpec | None,
        systemic_only: bool,
        route_unknown: Literal["systemic", "unknown"],
        dose: DoseSpec | None,
        horizon: WindowSpec | Literal["lifelong"] | None,
        started_by_evaluation: bool,
        except_for: list[str],
    ) -> None:
        self.label = label
        self.valuesets = valuesets
        self.exclude_valuesets = exclude_valuesets
        self.window = window
        self.systemic_only = systemic_only
        self.route_unknown: Literal["systemic", "unknown"] = route_unknown
        self.dose = dose
        self.horizon: WindowSpec | Literal["lifelong"] | None = horizon
        self.started_by_evaluation = started_by_evaluation
        self.except_for = except_for

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_medication(self, ctx)


ROUTE_SYSTEMIC = "route-systemic"
ROUTE_NON_SYSTEMIC = "route-non-systemic"
# Statuses that are not (yet) exposure: an intention or an order not acted on.
NOT_EXPOSURE = frozenset({"intended", "draft", "proposal", "plan"})
ONGOING = frozenset({"active", "on-hold", "in-progress"})
_STRENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*(MG|G|MCG|UG)\b(?!\s*/)", re.I)


class Exposure(msgspec.Struct, frozen=True, gc=False):
    use: MedicationUse
    match: Match
    inside: bool | None  # in the window; None where the dates do not say
    stale: FhirDate | None = None  # inside only by an "ongoing" status this old: to confirm
    why_not: str = ""  # set where the use is not exposure whatever its dates (a future start, an exempt use)


def stale_since(use: MedicationUse, ctx: EvalContext, horizon: WindowSpec) -> FhirDate | None:
    """For a use that runs to today only because its status says ongoing (no end recorded): the date it
    dates from, when every date it states of itself is older than the horizon; else None. An undated
    use is not stale: its status is all the record says."""
    if use.status not in ONGOING or use.end is not None or use.latest is None:
        return None
    if use.latest.latest_day() >= ctx.window_start(horizon):
        return None
    return use.start or use.latest


def _interval(use: MedicationUse, today: date) -> tuple[FhirDate | None, date | None, bool]:
    """Start, end, and whether the end is known. An active use without an end runs to today."""
    if use.point_in_time and use.start is not None and use.status not in ONGOING:
        return use.start, use.start.latest_day(), True
    if use.end is not None:
        return use.start, use.end.latest_day(), True
    if use.status in ONGOING:
        return use.start, today, True
    return use.start, None, False


def exposure_in_window(use: MedicationUse, ctx: EvalContext, rule: MedicationCriterion) -> bool | None:
    if rule.window is None:
        return True
    start, end, end_known = _interval(use, ctx.today)
    window_start = ctx.window_start(rule.window)
    if start is not None and start.day > ctx.today:
        return False  # not started yet
    if end_known and end is not None:
        if end < window_start:
            return False
        return start is None or start.day <= ctx.today
    # The end is not recorded: inside if it started inside the window, else the record does not say.
    if start is not None and start.day >= window_start:
        return True
    return None


def starts_later(use: MedicationUse, ctx: EvalContext) -> bool:
    """A use dated to start after the evaluation date (a planned course, a prescription for later)."""
    return use.start is not None and use.start.day > ctx.today


def exempt_reason(use: MedicationUse, ctx: EvalContext, reasons: list[str]) -> str | None:
    """The reason the use is recorded for, where it is one of the rule's ``except_for`` value sets (a
    replacement dose of hydrocortisone for adrenal insufficiency is not immunosuppression): its label,
    else None. Read from the use's own reason codes and from the Conditions its reason references name."""
    if not reasons or not (use.reasons or use.reason_refs):
        return None
    for code in use.reasons:
        # Codes before words, as for diagnoses: words only where the reason has no standard code.
        if ctx.match(code, reasons, names="uncoded") is not None:
            return code.label()
    if use.reason_refs:
        for c in ctx.record.conditions:
            if (c.ref in use.reason_refs or _local_id(c.ref) in use.reason_refs) and ctx.match(
                c.code, reasons, names="uncoded"
            ) is not None:
                return c.code.label()
    return None


def _local_id(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def route_kind(ctx: EvalContext, dosages: tuple[Dosage, ...], medication_text: list[str]) -> str | None:
    """ "systemic", "local", or None where neither the route nor the dose form says."""
    for d in dosages:
        if d.route is not None:
            if ctx.match(d.route, [ROUTE_NON_SYSTEMIC]):
                return "local"
            if ctx.match(d.route, [ROUTE_SYSTEMIC]):
                return "systemic"
    for text in medication_text + [d.text for d in dosages if d.text]:
        if ctx.library[ROUTE_NON_SYSTEMIC].match_text(text):
            return "local"
        if ctx.library[ROUTE_SYSTEMIC].match_text(text):
            return "systemic"
    return None


def _daily_mg(use: MedicationUse, strength_texts: list[str]) -> tuple[float | None, bool]:
    """Daily dose in mg and whether it is exact (False: a lower bound, frequency not stated)."""
    best: tuple[float | None, bool] = (None, False)
    for d in use.dosages:
        if d.dose is None:
            continue
        mg = _dose_mg(d.dose.value, d.dose.unit, strength_texts)
        if mg is None:
            continue
        if d.per_day is not None:
            total = mg * d.per_day
            if best[0] is None or not best[1] or total > best[0]:
                best = (total, True)
        elif best[0] is None:
            best = (mg, False)
    return best


def _dose_mg(value: float, unit: str | None, strength_texts: list[str]) -> float | None:
    if unit:
        mg = convert(value, unit, "mg")
        if mg is not None:
            return mg
    # A dose in tablets or capsules: the strength comes from the product name ("… 4 MG Oral Tablet").
    for text in strength_texts:
        found = _STRENGTH.search(text)
        if found:
            per_unit = convert(float(found.group(1)), found.group(2).lower().replace("mcg", "ug"), "mg")
            if per_unit is not None:
                return value * per_unit
    return None


def _describe(use: MedicationUse, ctx: EvalContext) -> str:
    start = _interval(use, ctx.today)[0]
    name = use.medication.label()
    if use.point_in_time and start is not None:
        return f"{name} on {day(start)}"
    parts = []
    if start is not None:
        parts.append(f"from {day(start)}")
    if use.end is not None:
        parts.append(f"to {day(use.end)}")
    elif use.status in ONGOING:
        parts.append("ongoing")
    span = " ".join(parts) if parts else "undated"
    return f"{name} ({span}, {use.status or 'status not recorded'})"


def evaluate_medication(rule: MedicationCriterion, ctx: EvalContext) -> RuleResult:
    exposures: list[Exposure] = []
    matches: dict[Concept, Match | None] = {}  # a record repeats its drugs (one statement per refill)
    for use in ctx.record.medications:
        if use.status in NOT_EXPOSURE:
            continue
        if use.medication in matches:
            found = matches[use.medication]
        else:
            found = matches[use.medication] = ctx.match(use.medication, rule.valuesets, exclude=rule.exclude_valuesets)
        if found is None:
            continue
        if rule.started_by_evaluation and starts_later(use, ctx):
            start = use.start
            assert start is not None
            exposures.append(Exposure(use, found, False, why_not=f"starts {day(start)}, after {ctx.today}"))
            continue
        exempt = exempt_reason(use, ctx, rule.except_for)
        if exempt is not None:
            exposures.append(Exposure(use, found, False, why_not=f"for {exempt}, not {rule.label}"))
            continue
        inside = exposure_in_window(use, ctx, rule)
        if inside and rule.window is not None:
            # An order left "active" for years is not exposure today by its status alone (what the
            # record states of its own dates decides, else the clinician).
            horizon = rule.horizon or ctx.trial.horizons.medication
            since = stale_since(use, ctx, horizon) if horizon != "lifelong" else None
            if since is not None and use.latest is not None and not ctx.in_window(use.latest, rule.window):
                exposures.append(Exposure(use, found, None, since))
                continue
        exposures.append(Exposure(use, found, inside))
    scope = f"within {rule.window.describe()}" if rule.window else "ever"
    if not exposures:
        return RuleResult(Status.NOT_MET, f"no {rule.label} in the medication record")

    met: list[tuple[Exposure, str]] = []
    unknown: list[tuple[Exposure, str]] = []
    outside: list[tuple[Exposure, str]] = []
    for exp in exposures:
        if exp.inside is False:
            outside.append((exp, exp.why_not))
            continue
        # What rules the use out whatever its dates comes first (a topical cream, a weekly low dose); then
        # what leaves it to confirm: a stale "active" status, dates that do not say, a missing route or dose.
        kind = route_kind(ctx, exp.use.dosages, exp.use.medication.texts()) if rule.systemic_only else "systemic"
        if kind == "local":
            outside.append((exp, "not a systemic route"))
            continue
        dose_class = dose_class_of(exp.use, ctx, rule.valuesets, rule.label)
        if dose_class is not None and dose_class[0] is Status.NOT_MET:
            outside.append((exp, dose_class[1]))
            continue
        dose = _dose_status(rule, exp) if rule.dose is not None else None
        if dose is not None and dose[0] is Status.NOT_MET:
            outside.append((exp, dose[1]))
            continue
        if exp.stale is not None:
            unknown.append((exp, f"recorded {exp.use.status} since {day(exp.stale)} — confirm it is current"))
            continue
        if exp.inside is None:
            unknown.append((exp, "dates do not show whether it was taken " + scope))
            continue
        if kind is None and rule.route_unknown == "unknown":
            unknown.append((exp, "route not recorded"))
            continue
        if dose_class is not None:
            unknown.append((exp, dose_class[1]))
            continue
        if dose is not None:
            (unknown if dose[0] is Status.UNKNOWN else met).append((exp, dose[1]))
            continue
        met.append((exp, ""))

    def fact(exp: Exposure) -> Fact:
        start = exp.use.start
        return Fact(
            label=rule.label, value=exp.use.medication.label(), date=day(start) if start else None, resource=exp.use.ref
        )

    def via(exp: Exposure) -> str:
        return "" if exp.match.via == "code" else f" [matched by name: {exp.match.label}]"

    if met:
        reasons = [f"{rule.label}: {_describe(e.use, ctx)}{via(e)}{(', ' + n) if n else ''}" for e, n in met]
        return RuleResult(
            Status.MET, "; ".join(reasons), tuple(e.use.ref for e, _ in met), tuple(fact(e) for e, _ in met)
        )
    if unknown:
        reasons = [
            f"{rule.label}: {e.use.medication.label()}{via(e)} {n}"
            if e.stale is not None
            else f"{rule.label}: {_describe(e.use, ctx)}{via(e)} — {n}"
            for e, n in unknown
        ]
        return RuleResult(
            Status.UNKNOWN,
            "; ".join(reasons),
            tuple(e.use.ref for e, _ in unknown),
            tuple(fact(e) for e, _ in unknown),
            tuple(f"{e.use.medication.label()}: {n}" for e, n in unknown),
        )
    reasons = [f"{_describe(e.use, ctx)}{via(e)}{(', ' + n) if n else ''}" for e, n in outside[:4]]
    detail = _outside_note(rule)
    return RuleResult(
        Status.NOT_MET,
        f"no {rule.label} {scope}{detail} (recorded: {'; '.join(reasons)})",
        tuple(e.use.ref for e, _ in outside),
        tuple(fact(e) for e, _ in outside),
    )


def _outside_note(rule: MedicationCriterion) -> str:
    notes = []
    if rule.systemic_only:
        notes.append("systemic route")
    if rule.dose is not None:
        notes.append(f"above {number(rule.dose.max_mg_per_day)} mg/day {rule.dose.reference}-equivalent")
    return f" ({', '.join(notes)})" if notes else ""


_WEEKLY_TEXT = re.compile(r"\b(?:once\s+(?:a|per|every)\s+week|once\s+weekly|every\s+week|weekly)\b", re.I)
_MORE_OFTEN_TEXT = re.compile(r"\b(?:twice|two\s+times|three\s+times|daily|a\s+day|per\s+day|bid|tid|qid)\b", re.I)
_EPS = 1e-9


def dose_class_of(use: MedicationUse, ctx: EvalContext, valuesets: list[str], label: str) -> tuple[Status, str] | None:
    """A drug whose class depends on its dose and schedule (a value set's ``dose_exceptions``: methotrexate
    ≤ 25 mg once weekly is immunosuppression, not anticancer therapy). (NOT_MET, why) at or below the
    exception's dose and schedule, (UNKNOWN, why) where they are not recorded; None where no exception
    names the drug or the use is above it (then it is in the class as usual)."""
    canonical = ctx.library.aliases.canonical
    texts = use.medication.texts()
    for vs_name in valuesets:
        for dr in ctx.library[vs_name].dose_rules:
            named = any(dr.drugs.match_code(canonical(c.system), c.code) for c in use.medication.codings) or any(
                dr.drugs.match_text(t) for t in texts
            )
            if not named:
                continue
            per_week_limit = (
                "once weekly" if dr.max_doses_per_week == 1 else f"{number(dr.max_doses_per_week)} times a week"
            )
            limit = f"{dr.drug} ≤ {number(dr.max_mg_per_dose)} mg {per_week_limit} is {dr.instead}"
            doses: list[tuple[float | None, float | None]] = []
            for d in use.dosages:
                mg = _dose_mg(d.dose.value, d.dose.unit, texts) if d.dose is not None else None
                per_week = d.per_day * 7 if d.per_day is not None else None
                if per_week is None and d.text and _WEEKLY_TEXT.search(d.text) and not _MORE_OFTEN_TEXT.search(d.text):
                    per_week = 1.0
                doses.append((mg, per_week))
            if any(
                (mg is not None and mg > dr.max_mg_per_dose + _EPS)
                or (per_week is not None and per_week > dr.max_doses_per_week + _EPS)
                for mg, per_week in doses
            ):
                return None
            if doses and all(mg is not None and per_week is not None for mg, per_week in doses):
                shown = "; ".join(
                    f"{number(mg or 0)} mg "
                    + ("once weekly" if abs((per_week or 0) - 1) < 1e-6 else f"{number(per_week or 0)} times a week")
                    for mg, per_week in doses
                )
                return Status.NOT_MET, f"{shown}: {limit}, not {label}"
            return Status.UNKNOWN, f"dose and schedule not recorded ({limit}, not {label})"
    return None


def _dose_status(rule: MedicationCriterion, exp: Exposure) -> tuple[Status, str]:
    limit = rule.dose
    assert limit is not None
    equivalent = exp.match.value
    if not isinstance(equivalent, int | float) or equivalent <= 0:
        return Status.UNKNOWN, f"no {limit.reference} equivalence known for this drug"
    daily, exact = _daily_mg(exp.use, exp.use.medication.texts())
    if daily is None:
        return Status.UNKNOWN, "dose not recorded"
    converted = daily * limit.reference_mg / float(equivalent)
    shown = f"{number(daily)} mg/day = {number(converted)} mg/day {limit.reference}-equivalent"
    if converted > limit.max_mg_per_day + 1e-9:
        return Status.MET, shown if exact else f"at least {shown}"
    if exact:
        return Status.NOT_MET, f"{shown} (not above {number(limit.max_mg_per_day)})"
    return Status.UNKNOWN, f"at least {shown}: frequency not recorded"
