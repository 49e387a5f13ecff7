"""Lines of prior therapy: drug exposures (as the medication kind reads them) grouped into regimens, counted,
optionally only those begun after the onset of a diagnosis (the setting: "for metastatic disease"), and
checked for a line that contains a drug of some sets ("at least one platinum-based line").

The convention (docs/authoring-trials.md, "therapy_lines"): exposures are taken in order of their start.
The first starts line 1. A later exposure joins the current line when it starts within ``regimen_days`` of
the line's start (drugs begun together are one regimen), or when its drug is already in the line and it
starts no more than ``gap_days`` after the line's last exposure (more cycles, maintenance with a drug of
the regimen, a drug dropped); otherwise it starts a new line: a drug not in the regimen added after the
regimen window (a switch), or any drug after a gap (a re-challenge). A line's start is its first drug's."""

from __future__ import annotations

from datetime import date
from typing import Protocol

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext, ExcludingCriterion, NameUse
from cds.engine.formatting import day
from cds.engine.result import Outcome, RuleResult, outcome
from cds.engine.rules.conditions import event_date, matching_conditions
from cds.engine.rules.medications import NOT_EXPOSURE, ONGOING, dose_class_of, route_kind
from cds.record.dates import FhirDate
from cds.record.model import MedicationUse


class CountSpec(Protocol):
    """How many lines meet the rule (``cds.rules.therapy_lines.LineCount``): at least ``min``, at most ``max``."""

    @property
    def min(self) -> int | None: ...

    @property
    def max(self) -> int | None: ...


class TherapyLinesCriterion(ExcludingCriterion, Protocol):
    """What ``evaluate_therapy_lines`` reads of a rule (``cds.rules.therapy_lines.TherapyLinesRule``)."""

    @property
    def after_onset_of(self) -> list[str]: ...

    @property
    def onset_names(self) -> NameUse: ...

    @property
    def count(self) -> CountSpec: ...

    @property
    def including(self) -> list[str]: ...

    @property
    def regimen_days(self) -> int: ...

    @property
    def gap_days(self) -> int: ...

    @property
    def when_missing(self) -> Outcome | None: ...


class Exposure:
    """One use of a drug of the rule's sets, dated to the day."""

    def __init__(self, use: MedicationUse, drug: str, start: date, last: date, included: bool) -> None:
        self.use = use
        self.drug = drug  # the ingredient's name, so that two products of one drug are one drug of the regimen
        self.start = start
        self.last = last  # the last day it is known to have been taken (its end; ongoing: the evaluation date)
        self.included = included  # a drug of the rule's `including` sets


class Line:
    """One line of therapy: the regimen (its drugs in order of start) and the exposures grouped into it."""

    def __init__(self, first: Exposure) -> None:
        self.start = first.start
        self.last = first.last
        self.drugs: list[str] = [first.drug]
        self.exposures: list[Exposure] = [first]

    def add(self, exp: Exposure) -> None:
        if exp.drug not in self.drugs:
            self.drugs.append(exp.drug)
        self.exposures.append(exp)
        if exp.last > self.last:
            self.last = exp.last

    def included(self) -> bool:
        return any(e.included for e in self.exposures)

    def text(self) -> str:
        return f"from {self.start.isoformat()}: {' + '.join(self.drugs)}"


def group_lines(exposures: list[Exposure], regimen_days: int, gap_days: int) -> list[Line]:
    """The exposures (dated to the day) grouped into lines by the module's convention."""
    lines: list[Line] = []
    for exp in sorted(exposures, key=lambda e: (e.start, e.use.ref)):
        if lines:
            current = lines[-1]
            if (exp.start - current.start).days <= regimen_days:
                current.add(exp)
                continue
            if exp.drug in current.drugs and (exp.start - current.last).days <= gap_days:
                current.add(exp)
                continue
        lines.append(Line(exp))
    return lines


def drug_name(use: MedicationUse, ctx: EvalContext, valuesets: list[str]) -> str:
    """The drug's ingredient name where a value set's names find it in the product's words ("cisplatin 1 MG/ML
    Injectable Solution" → cisplatin), else the matching code's display; the record's label last (a class
    code such as ATC L01 names no drug)."""
    for text in use.medication.texts():
        for vs_name in valuesets:
            found = ctx.library[vs_name].match_text(text)
            if found is not None:
                return found.label.lower()
    return use.medication.label().lower()


def _last_day(use: MedicationUse, start: date, today: date) -> date:
    if use.end is not None:
        return max(start, use.end.latest_day())
    if use.status in ONGOING and not use.point_in_time:
        return max(start, today)
    return start


def evaluate_therapy_lines(rule: TherapyLinesCriterion, ctx: EvalContext) -> RuleResult:
    dated: list[Exposure] = []
    unsure: list[tuple[MedicationUse, str]] = []  # exposures whose date or class cannot be placed
    found_any = False
    for use in ctx.record.medications:
        if use.status in NOT_EXPOSURE:
            continue
        if ctx.match(use.medication, rule.valuesets, exclude=rule.exclude_valuesets) is None:
            continue
        if route_kind(ctx, use.dosages, use.medication.texts()) == "local":
            continue  # a cream or an instillation is not a line of systemic therapy
        start = use.start
        if start is not None and start.day > ctx.today:
            continue  # a course planned to start later is not prior therapy
        dose_class = dose_class_of(use, ctx, rule.valuesets, rule.label)
        if dose_class is not None and dose_class[0] is Status.NOT_MET:
            continue  # a dose and schedule of another class (weekly low-dose methotrexate)
        found_any = True
        if dose_class is not None:
            unsure.append((use, dose_class[1]))
            continue
        if start is None:
            unsure.append((use, "no start date"))
            continue
        if start.precision != "day":
            unsure.append((use, f"start known only as {start.text}"))
            continue
        name = drug_name(use, ctx, rule.valuesets)
        included = bool(rule.including) and ctx.match(use.medication, rule.including) is not None
        dated.append(Exposure(use, name, start.day, _last_day(use, start.day, ctx.today), included))

    if not found_any and rule.when_missing is not None:
        return RuleResult(outcome(rule.when_missing), f"no {rule.label}: none of these drugs in the medication record")

    lines = group_lines(dated, rule.regimen_days, rule.gap_days)
    counted, doubtful, before, setting = _in_setting(lines, rule, ctx)
    if isinstance(setting, RuleResult):
        return setting

    listed = "; ".join(f"line {i} {line.text()}" for i, line in enumerate(counted + doubtful, 1))
    scope = f"{rule.label}{setting}"
    parts = [f"{scope}: {len(counted)}" + (f" ({listed})" if listed else "")]
    if doubtful:
        parts.append(f"and {len(doubtful)} begun in the month or year of the onset, before or after it")
    if before:
        parts.append("not counted, begun before the onset: " + "; ".join(line.text() for line in before))
    evidence = tuple(dict.fromkeys(e.use.ref for line in counted + doubtful for e in line.exposures))
    facts = tuple(
        Fact(
            label=f"{rule.label}: line {i}",
            value=" + ".join(line.drugs),
            date=line.start.isoformat(),
            resource=line.exposures[0].use.ref,
        )
        for i, line in enumerate(counted + doubtful, 1)
    )

    status = _count_status(rule.count, len(counted), len(counted) + len(doubtful))
    parts.append(f"needed: {_count_text(rule.count)}")
    missing: list[str] = []
    if len(counted) + len(doubtful) > len(counted) and status is Status.UNKNOWN:
        missing.append("whether the lines begun in the month of the onset came after it")
    if rule.including:
        with_drug = [i for i, line in enumerate(counted, 1) if line.included()]
        maybe = [i for i, line in enumerate(doubtful, len(counted) + 1) if line.included()]
        if with_drug:
            parts.append("with " + ", ".join(_names(ctx, rule.including)) + f": line {with_drug[0]}")
            including = Status.MET
        elif maybe:
            parts.append(f"with {', '.join(_names(ctx, rule.including))}: line {maybe[0]}, if counted")
            including = Status.UNKNOWN
        else:
            parts.append(f"no counted line with {', '.join(_names(ctx, rule.including))}")
            including = Status.NOT_MET
        status = _both(status, including)

    if unsure:
        # An exposure that cannot be placed may start a line of its own, or join a regimen and make later
        # exposures its continuation: it can change the count either way, so the answer waits for it.
        status = Status.UNKNOWN
        parts.append(
            "cannot place: "
            + "; ".join(f"{use.medication.label()} ({why})" for use, why in unsure[:4])
            + " — its date could change the lines"
        )
        missing.extend(f"{use.medication.label()}: {why}" for use, why in unsure[:4])
        evidence = evidence + tuple(use.ref for use, _ in unsure)
    return RuleResult(status, "; ".join(parts), evidence, facts, tuple(missing))


def _in_setting(
    lines: list[Line], rule: TherapyLinesCriterion, ctx: EvalContext
) -> tuple[list[Line], list[Line], list[Line], str | RuleResult]:
    """The lines counted, those that may count (begun within a partial onset date), those begun before the
    onset; and the setting in words, or the answer where the onset cannot be placed."""
    if not rule.after_onset_of:
        return lines, [], [], ""
    conditions = matching_conditions(ctx, rule.after_onset_of, names=rule.onset_names)
    if not conditions:
        # No such diagnosis: no line can have been given for it.
        return [], [], lines, " (no such diagnosis recorded, so no line for it)"
    dates: list[FhirDate] = [d for d in (event_date(c) for c in conditions) if d is not None]
    if not dates:
        if not lines:
            return [], [], [], " (none recorded)"
        return (
            [],
            [],
            [],
            RuleResult(
                Status.UNKNOWN,
                f"{rule.label}: {conditions[0].code.label()} has no onset date to count the lines from "
                f"({len(lines)} {_lines_word(len(lines))} recorded)",
                (conditions[0].ref, *(e.use.ref for line in lines for e in line.exposures)),
                missing=(f"date of {conditions[0].code.label()}",),
            ),
        )
    onset = min(dates, key=lambda d: d.day)
    first = next(c for c in conditions if event_date(c) is onset)
    counted = [line for line in lines if line.start >= onset.latest_day()]
    doubtful = [line for line in lines if onset.day <= line.start < onset.latest_day()]
    before = [line for line in lines if line.start < onset.day]
    return counted, doubtful, before, f" since {day(onset)} ({first.code.label()})"


def _count_status(count: CountSpec, low: int, high: int) -> Status:
    """Met when every count from ``low`` to ``high`` is within the bounds; not met when none is."""
    def fits(n: int) -> bool:
        return (count.min is None or n >= count.min) and (count.max is None or n <= count.max)

    if fits(low) and fits(high):
        return Status.MET
    if high < (count.min or 0) or (count.max is not None and low > count.max):
        return Status.NOT_MET
    return Status.UNKNOWN


def _both(a: Status, b: Status) -> Status:
    if a is Status.NOT_MET or b is Status.NOT_MET:
        return Status.NOT_MET
    if a is Status.MET and b is Status.MET:
        return Status.MET
    return Status.UNKNOWN


def _count_text(count: CountSpec) -> str:
    if count.min is not None and count.max is not None:
        return f"{count.min} to {count.max}" if count.min != count.max else f"exactly {count.min}"
    if count.min is not None:
        return f"at least {count.min}"
    return f"at most {count.max}"


def _lines_word(n: int) -> str:
    return "line" if n == 1 else "lines"


def _names(ctx: EvalContext, valuesets: list[str]) -> list[str]:
    return [ctx.library[name].title for name in valuesets]
