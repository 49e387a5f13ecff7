"""Dated events and standing facts: procedures, immunizations, allergies, and judgement criteria."""

from __future__ import annotations

from datetime import date

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext, WindowSpec
from cds.engine.formatting import day
from cds.engine.plan import RulePlan
from cds.engine.result import Outcome, RuleResult, outcome
from cds.engine.rules.conditions import describe as describe_condition
from cds.engine.rules.conditions import event_date, matching_conditions
from cds.engine.rules.labs import matching_observations
from cds.record.dates import FhirDate, add_months
from cds.record.model import Allergy, Procedure


class ProcedureCriterion(RulePlan):
    """A procedure rule as the engine reads it (``cds.rules.events.ProcedureRule.plan``)."""

    def __init__(
        self,
        *,
        label: str,
        valuesets: list[str],
        exclude_valuesets: list[str],
        window: WindowSpec | None,
        before_onset_of: list[str],
        ended_more_than_months_before_onset: int | None,
        when_found: Outcome,
    ) -> None:
        self.label = label
        self.valuesets = valuesets
        self.exclude_valuesets = exclude_valuesets
        self.window = window
        self.before_onset_of = before_onset_of
        self.ended_more_than_months_before_onset = ended_more_than_months_before_onset
        self.when_found: Outcome = when_found

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_procedure(self, ctx)


class ImmunizationCriterion(RulePlan):
    """An immunization rule as the engine reads it (``cds.rules.events.ImmunizationRule.plan``)."""

    def __init__(self, *, label: str, valuesets: list[str], window: WindowSpec | None) -> None:
        self.label = label
        self.valuesets = valuesets
        self.window = window

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_immunization(self, ctx)


class AllergyCriterion(RulePlan):
    """An allergy rule as the engine reads it (``cds.rules.events.AllergyRule.plan``)."""

    def __init__(self, *, label: str, valuesets: list[str], severe_only: bool, when_severity_unknown: Outcome) -> None:
        self.label = label
        self.valuesets = valuesets
        self.severe_only = severe_only
        self.when_severity_unknown: Outcome = when_severity_unknown

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_allergy(self, ctx)


class JudgementCriterion(RulePlan):
    """A judgement rule as the engine reads it (``cds.rules.events.JudgementRule.plan``)."""

    def __init__(self, *, label: str, conditions: list[str], observations: list[str]) -> None:
        self.label = label
        self.conditions = conditions
        self.observations = observations

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_judgement(self, ctx)


PLANNED = frozenset({"preparation"})


def _proc_day(p: Procedure) -> date | None:
    """When a procedure happened, for windows: its end where given, else its start."""
    when = p.end or p.start
    return when.day if when else None


def _proc_start_day(p: Procedure) -> date | None:
    when = p.start or p.end
    return when.day if when else None


def _proc_label(p: Procedure) -> str:
    when = p.end or p.start
    return f"{p.code.label()} on {day(when)}" if when else f"{p.code.label()} (undated)"


def _proc_fact(label: str, p: Procedure) -> Fact:
    when = p.end or p.start
    return Fact(label=label, value=p.code.label(), date=day(when) if when else None, resource=p.ref)


def evaluate_procedure(rule: ProcedureCriterion, ctx: EvalContext) -> RuleResult:
    procs = [
        p
        for p in ctx.record.procedures
        if p.status not in PLANNED
        and (
            ctx.match(p.code, rule.valuesets, exclude=rule.exclude_valuesets, names="uncoded")
            or (
                p.category is not None
                and not ctx.match(p.code, rule.exclude_valuesets, names="uncoded")
                and ctx.match(p.category, rule.valuesets, names="never")
            )
        )
    ]
    onset: FhirDate | None = None
    if rule.before_onset_of:
        conditions = matching_conditions(ctx, rule.before_onset_of)
        if not conditions:
            return RuleResult(
                Status.NOT_MET, f"no {rule.label}: the later diagnosis it is measured against is not recorded"
            )
        dates = [d for d in (event_date(c) for c in conditions) if d is not None]
        if not dates:
            if procs:
                return RuleResult(
                    Status.UNKNOWN,
                    f"{rule.label}: {describe_condition(conditions[0])} has no date to compare with",
                    (*(p.ref for p in procs), conditions[0].ref),
                    missing=("date of diagnosis",),
                )
            return RuleResult(Status.NOT_MET, f"no {rule.label} in the record")
        onset = min(dates, key=lambda d: d.day)
        undated = [p for p in procs if _proc_start_day(p) is None]
        procs = [p for p in procs if (d := _proc_start_day(p)) is not None and d <= onset.day]
        if undated and not procs:
            return RuleResult(
                Status.UNKNOWN,
                f"{rule.label}: " + "; ".join(_proc_label(p) for p in undated),
                tuple(p.ref for p in undated),
                missing=(f"date of {rule.label}",),
            )
    scope = f" within {rule.window.describe()}" if rule.window else ""
    if onset is not None:
        scope = f" before {day(onset)}"
    if rule.window is not None:
        inside = [p for p in procs if ctx.in_window(p.end or p.start, rule.window)]
        undated = [p for p in procs if _proc_day(p) is None]
        if not inside and undated:
            return RuleResult(
                Status.UNKNOWN,
                f"{rule.label}: " + "; ".join(_proc_label(p) for p in undated),
                tuple(p.ref for p in undated),
                missing=(f"date of {rule.label}",),
            )
        procs = inside
    if not procs:
        return RuleResult(Status.NOT_MET, f"no {rule.label}{scope} in the record")
    if rule.ended_more_than_months_before_onset is not None and onset is not None:
        last = max(procs, key=lambda p: _proc_day(p) or date.min)
        ended = last.end or last.start
        assert ended is not None
        limit = add_months(ended.latest_day(), rule.ended_more_than_months_before_onset)
        fact = _proc_fact(rule.label, last)
        gap = f"{rule.label} ended {day(ended)}, {rule.ended_more_than_months_before_onset} months before {day(onset)}?"
        if onset.day > limit:
            return RuleResult(Status.MET, gap.replace("?", ": yes"), (last.ref,), (fact,))
        return RuleResult(Status.NOT_MET, gap.replace("?", ": no"), (last.ref,), (fact,))
    status = outcome(rule.when_found)
    prefix = "to confirm: " if status is Status.UNKNOWN else ""
    return RuleResult(
        status,
        f"{prefix}{rule.label}: " + "; ".join(_proc_label(p) for p in procs[:4]),
        tuple(p.ref for p in procs),
        tuple(_proc_fact(rule.label, p) for p in procs),
        (f"whether {procs[0].code.label()} counts as {rule.label}",) if status is Status.UNKNOWN else (),
    )


def evaluate_immunization(rule: ImmunizationCriterion, ctx: EvalContext) -> RuleResult:
    found = [i for i in ctx.record.immunizations if ctx.match(i.vaccine, rule.valuesets, names="uncoded")]
    scope = f" within {rule.window.describe()}" if rule.window else ""
    inside = [i for i in found if ctx.in_window(i.when, rule.window) is True]
    if inside:
        return RuleResult(
            Status.MET,
            f"{rule.label}: " + "; ".join(f"{i.vaccine.label()} on {day(i.when)}" for i in inside),
            tuple(i.ref for i in inside),
            tuple(Fact(label=rule.label, value=i.vaccine.label(), date=day(i.when), resource=i.ref) for i in inside),
        )
    undated = [i for i in found if i.when is None]
    if undated:
        return RuleResult(
            Status.UNKNOWN,
            f"{rule.label}: {undated[0].vaccine.label()} without a date",
            tuple(i.ref for i in undated),
            missing=(f"date of {undated[0].vaccine.label()}",),
        )
    if found:
        listed = "; ".join(f"{i.vaccine.label()} on {day(i.when)}" for i in found[:3])
        return RuleResult(Status.NOT_MET, f"no {rule.label}{scope} (recorded: {listed})", tuple(i.ref for i in found))
    return RuleResult(Status.NOT_MET, f"no {rule.label}{scope} in the record")


def _allergy_matches(a: Allergy, rule: AllergyCriterion, ctx: EvalContext) -> bool:
    if ctx.match(a.code, rule.valuesets):
        return True
    return any(ctx.match(r.substance, rule.valuesets) for r in a.reactions)


def _severity(a: Allergy) -> str | None:
    """ "severe", "not severe", or None where the record does not say."""
    if a.criticality == "high" or any(r.severity == "severe" for r in a.reactions):
        return "severe"
    if a.criticality == "low" or any(r.severity in ("mild", "moderate") for r in a.reactions):
        return "not severe"
    return None


def evaluate_allergy(rule: AllergyCriterion, ctx: EvalContext) -> RuleResult:
    found = [a for a in ctx.record.allergies if _allergy_matches(a, rule, ctx)]
    if not found:
        return RuleResult(Status.NOT_MET, f"no {rule.label} recorded")

    def fact(a: Allergy) -> Fact:
        return Fact(label="Allergy", value=a.code.label(), resource=a.ref)

    def text(a: Allergy) -> str:
        sev = _severity(a)
        return f"{a.code.label()}" + (f" ({sev})" if sev else " (severity not recorded)")

    if not rule.severe_only:
        return RuleResult(
            Status.MET,
            f"{rule.label}: " + "; ".join(text(a) for a in found),
            tuple(a.ref for a in found),
            tuple(fact(a) for a in found),
        )
    severe = [a for a in found if _severity(a) == "severe"]
    if severe:
        return RuleResult(
            Status.MET,
            f"{rule.label}: " + "; ".join(text(a) for a in severe),
            tuple(a.ref for a in severe),
            tuple(fact(a) for a in severe),
        )
    unsure = [a for a in found if _severity(a) is None]
    if unsure:
        status = outcome(rule.when_severity_unknown)
        return RuleResult(
            status,
            f"{rule.label}: " + "; ".join(text(a) for a in unsure),
            tuple(a.ref for a in unsure),
            tuple(fact(a) for a in unsure),
            tuple(f"severity of the {a.code.label()} reaction" for a in unsure),
        )
    return RuleResult(
        Status.NOT_MET,
        f"no severe {rule.label}: " + "; ".join(text(a) for a in found),
        tuple(a.ref for a in found),
        tuple(fact(a) for a in found),
    )


def evaluate_judgement(rule: JudgementCriterion, ctx: EvalContext) -> RuleResult:
    evidence: list[str] = []
    facts: list[Fact] = []
    notes: list[str] = []
    if rule.conditions:
        for c in matching_conditions(ctx, rule.conditions):
            evidence.append(c.ref)
            facts.append(Fact(label="Diagnosis", value=describe_condition(c), resource=c.ref))
            notes.append(describe_condition(c))
    if rule.observations:
        for o in matching_observations(ctx, rule.observations)[:3]:
            evidence.append(o.ref)
            facts.append(Fact(label=o.code.label(), value="recorded", date=day(o.when), resource=o.ref))
            notes.append(f"{o.code.label()} on {day(o.when)}")
    found = f"; in the record: {', '.join(notes)}" if notes else ""
    return RuleResult(
        Status.UNKNOWN,
        f"investigator's judgement ({rule.label}){found}",
        tuple(evidence),
        tuple(facts),
        (f"investigator: {rule.label}",),
    )
