"""Radiotherapy courses: the radiotherapy Procedures of a record grouped into courses, each course with
its dates and total dose, counted against what a trial asks (how many courses, what dose, when, how long
before a later diagnosis such as a relapse). How courses are formed and read: docs/authoring-trials.md,
"radiotherapy"."""

from __future__ import annotations

from datetime import date
from typing import Protocol

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext, ExcludingCriterion, WindowSpec
from cds.engine.formatting import day
from cds.engine.result import RuleResult
from cds.engine.rules.conditions import event_date, matching_conditions
from cds.engine.rules.events import PLANNED
from cds.record.dates import FhirDate, add_months
from cds.record.model import Procedure
from cds.units import convert

#: A course still being given: its last date so far is not its end.
ONGOING = frozenset({"in-progress", "on-hold"})


class DoseRangeSpec(Protocol):
    """A course's total dose bounds (``cds.rules.radiotherapy.DoseRange``), in ``unit``."""

    @property
    def gt(self) -> float | None: ...

    @property
    def min(self) -> float | None: ...

    @property
    def lt(self) -> float | None: ...

    @property
    def max(self) -> float | None: ...

    @property
    def unit(self) -> str: ...


class CourseCountSpec(Protocol):
    """How many qualifying courses a rule asks for (``cds.rules.radiotherapy.CourseCount``)."""

    @property
    def min(self) -> int: ...

    @property
    def max(self) -> int | None: ...


class RadiotherapyCriterion(ExcludingCriterion, Protocol):
    """What ``evaluate_radiotherapy`` reads of a radiotherapy rule (``cds.rules.radiotherapy.RadiotherapyRule``)."""

    @property
    def course_summaries(self) -> list[str]: ...

    @property
    def course_gap_days(self) -> int: ...

    @property
    def window(self) -> WindowSpec | None: ...

    @property
    def dose(self) -> DoseRangeSpec | None: ...

    @property
    def before_onset_of(self) -> list[str]: ...

    @property
    def onset_clinical_status(self) -> list[str]: ...

    @property
    def ended_more_than_months_before_onset(self) -> int | None: ...

    @property
    def courses(self) -> CourseCountSpec: ...


class Course:
    """Radiotherapy Procedures no more than the rule's gap apart; undated ones form one course of their own."""

    def __init__(self, first: Procedure, start: FhirDate | None, end: FhirDate | None) -> None:
        self.procedures: list[Procedure] = [first]
        self.start = start
        self.end = end
        self.ongoing = first.status in ONGOING

    def add(self, p: Procedure, end: FhirDate | None) -> None:
        self.procedures.append(p)
        if end is not None and (self.end is None or end.day > self.end.day):
            self.end = end
        if p.status in ONGOING:
            self.ongoing = True

    def dates(self) -> str:
        if self.start is None:
            return "undated"
        if self.end is None or self.end.day == self.start.day:
            return day(self.start)
        return f"{day(self.start)} to {day(self.end)}" + (" (ongoing)" if self.ongoing else "")


def _start(p: Procedure) -> FhirDate | None:
    return p.start or p.end


def _end(p: Procedure) -> FhirDate | None:
    return p.end or p.start


def group_courses(procedures: list[Procedure], gap_days: int) -> list[Course]:
    """Courses in date order: a Procedure starting more than ``gap_days`` after the last date of the course
    so far starts a new one. Undated Procedures make one more course, placed last."""
    dated = sorted((p for p in procedures if _start(p) is not None), key=lambda p: _day(_start(p)))
    courses: list[Course] = []
    for p in dated:
        start = _start(p)
        assert start is not None
        current = courses[-1] if courses else None
        if current is not None and current.end is not None and (start.day - current.end.day).days <= gap_days:
            current.add(p, _end(p))
        else:
            courses.append(Course(p, start, _end(p)))
    undated: Course | None = None
    for p in procedures:
        if _start(p) is None:
            if undated is None:
                undated = Course(p, None, None)
            else:
                undated.add(p, None)
    if undated is not None:
        courses.append(undated)
    return courses


def _day(when: FhirDate | None) -> date:
    return when.day if when is not None else date.min


def _largest_dose(p: Procedure, unit: str) -> float | None:
    """The highest total dose the Procedure records for one of its volumes, in ``unit`` (None: none
    recorded in a unit that converts)."""
    best: float | None = None
    for volume in p.doses:
        if volume.dose.comparator is not None or volume.dose.unit is None:
            continue
        value = convert(volume.dose.value, volume.dose.unit, unit)
        if value is not None and (best is None or value > best):
            best = value
    return best


def course_dose(course: Course, unit: str, summaries: list[Procedure]) -> tuple[float | None, float | None, str]:
    """The course's total dose as bounds (low, high) in ``unit`` and how it was read. A course summary's
    dose is the course's (the highest of its volumes; the largest of several summaries, which are
    cumulative). Otherwise the Procedures of the course (fractions, phases) add up, each counted at its
    highest volume dose; when one of them records no dose, the total is at least their sum (high None)."""
    summary_doses = [d for d in (_largest_dose(p, unit) for p in summaries) if d is not None]
    if summary_doses:
        best = max(summary_doses)
        return best, best, "course summary"
    parts = [_largest_dose(p, unit) for p in course.procedures if p not in summaries]
    recorded = [d for d in parts if d is not None]
    if not recorded:
        return None, None, "not recorded"
    total = sum(recorded)
    if len(recorded) == len(parts):
        return total, total, f"sum of {len(recorded)} records" if len(recorded) > 1 else "one record"
    return total, None, f"recorded on {len(recorded)} of {len(parts)} records"


def _dose_status(low: float | None, high: float | None, bounds: DoseRangeSpec) -> Status:
    """Whether every dose between ``low`` and ``high`` (None: unbounded) is within the bounds (MET), none is
    (NOT_MET), or the record cannot tell (UNKNOWN)."""
    floor = low if low is not None else 0.0
    statuses: list[Status] = []
    if bounds.gt is not None:
        statuses.append(
            Status.MET
            if floor > bounds.gt
            else Status.NOT_MET
            if high is not None and high <= bounds.gt
            else Status.UNKNOWN
        )
    if bounds.min is not None:
        statuses.append(
            Status.MET
            if floor >= bounds.min
            else Status.NOT_MET
            if high is not None and high < bounds.min
            else Status.UNKNOWN
        )
    if bounds.lt is not None:
        statuses.append(
            Status.NOT_MET
            if floor >= bounds.lt
            else Status.MET
            if high is not None and high < bounds.lt
            else Status.UNKNOWN
        )
    if bounds.max is not None:
        statuses.append(
            Status.NOT_MET
            if floor > bounds.max
            else Status.MET
            if high is not None and high <= bounds.max
            else Status.UNKNOWN
        )
    return _all(statuses)


def _all(statuses: list[Status]) -> Status:
    if Status.NOT_MET in statuses:
        return Status.NOT_MET
    if Status.UNKNOWN in statuses:
        return Status.UNKNOWN
    return Status.MET


def dose_bounds_text(bounds: DoseRangeSpec) -> str:
    parts: list[str] = []
    if bounds.gt is not None:
        parts.append(f"> {_amount(bounds.gt)} {bounds.unit}")
    if bounds.min is not None:
        parts.append(f"≥ {_amount(bounds.min)} {bounds.unit}")
    if bounds.lt is not None:
        parts.append(f"< {_amount(bounds.lt)} {bounds.unit}")
    if bounds.max is not None:
        parts.append(f"≤ {_amount(bounds.max)} {bounds.unit}")
    return " and ".join(parts)


def _amount(value: float) -> str:
    """A dose to the centigray: rounded to a whole number, 69.96 Gy would read as meeting "> 70 Gy" wrongly."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _dose_text(low: float | None, high: float | None, unit: str) -> str:
    if low is None:
        return "dose not recorded"
    if high is None:
        return f"at least {_amount(low)} {unit}"
    return f"{_amount(low)} {unit}"


class _Verdict:
    """One course judged: its status, what was read, and what would settle it."""

    def __init__(self, course: Course) -> None:
        self.course = course
        self.statuses: list[Status] = []
        self.notes: list[str] = []
        self.missing: list[str] = []
        self.dose = ""

    def check(self, status: Status, note: str, missing: str = "") -> None:
        self.statuses.append(status)
        if status is not Status.MET:
            self.notes.append(note)
        if status is Status.UNKNOWN and missing:
            self.missing.append(missing)

    @property
    def status(self) -> Status:
        return _all(self.statuses)


def evaluate_radiotherapy(rule: RadiotherapyCriterion, ctx: EvalContext) -> RuleResult:
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
    onset_refs: tuple[str, ...] = ()
    event = ""
    if rule.before_onset_of:
        conditions = matching_conditions(ctx, rule.before_onset_of)
        if rule.onset_clinical_status:
            conditions = [c for c in conditions if c.clinical_status in rule.onset_clinical_status]
        if not conditions:
            return RuleResult(
                Status.NOT_MET, f"no {rule.label}: the later diagnosis it is measured against is not recorded"
            )
        dated = [(d, c) for c, d in ((c, event_date(c)) for c in conditions) if d is not None]
        if dated:
            onset, first = min(dated, key=lambda pair: pair[0].day)
            onset_refs = (first.ref,)
            event = f"{first.code.label()} ({day(onset)})"
        else:
            onset_refs = (conditions[0].ref,)
            event = conditions[0].code.label()
    courses = group_courses(procs, rule.course_gap_days)
    verdicts = [_judge(course, rule, ctx, onset, event) for course in courses]
    if len(courses) > 1 and courses[-1].start is None:
        # Undated records beside dated courses may be part of one of them: a course of their own only maybe.
        verdicts[-1].check(
            Status.UNKNOWN, "undated: may belong to another course", "dates of the undated radiotherapy records"
        )
    met = [v for v in verdicts if v.status is Status.MET]
    maybe = [v for v in verdicts if v.status is Status.UNKNOWN]
    want = rule.courses
    definite, possible = len(met), len(met) + len(maybe)
    if definite >= want.min and (want.max is None or possible <= want.max):
        status = Status.MET
    elif possible < want.min or (want.max is not None and definite > want.max):
        status = Status.NOT_MET
    else:
        status = Status.UNKNOWN
    shown = met + maybe if status is not Status.NOT_MET or met or maybe else verdicts
    count = _count_text(want)
    if not verdicts:
        reason = f"no {rule.label} in the record" + (
            f" (asked: {count})" if want.min == 0 or want.max is not None else ""
        )
        return RuleResult(status, reason, onset_refs)
    lines = [_course_line(i + 1, v) for i, v in enumerate(shown[:4])]
    if len(shown) > 4:
        lines.append(f"and {len(shown) - 4} more")
    head = f"{rule.label}: {definite} course(s) qualify" + (f", {len(maybe)} to confirm" if maybe else "")
    head += f" (asked: {count})"
    missing: list[str] = []
    if status is Status.UNKNOWN:
        for v in maybe:
            missing.extend(v.missing)
    evidence = tuple(p.ref for v in shown for p in v.course.procedures) + onset_refs
    facts = tuple(_course_fact(rule.label, v) for v in shown)
    return RuleResult(status, head + ": " + "; ".join(lines), evidence, facts, tuple(dict.fromkeys(missing)))


def _count_text(want: CourseCountSpec) -> str:
    if want.max is None:
        return f"at least {want.min}"
    if want.max == want.min:
        return f"exactly {want.min}"
    return f"{want.min} to {want.max}"


def _course_line(n: int, v: _Verdict) -> str:
    records = len(v.course.procedures)
    text = f"course {n}, {v.course.dates()}, {records} record{'s' if records != 1 else ''}"
    if v.dose:
        text += f", {v.dose}"
    if v.notes:
        text += " — " + ", ".join(dict.fromkeys(v.notes))
    return text


def _course_fact(label: str, v: _Verdict) -> Fact:
    course = v.course
    value = f"course {course.dates()}" + (f", {v.dose}" if v.dose else "")
    return Fact(
        label=label, value=value, date=day(course.end) if course.end else None, resource=course.procedures[0].ref
    )


def _judge(
    course: Course, rule: RadiotherapyCriterion, ctx: EvalContext, onset: FhirDate | None, event: str
) -> _Verdict:
    v = _Verdict(course)
    when = f"the course of {course.dates()}"
    if all(p.status == "unknown" for p in course.procedures):
        # FHIR's "unknown": the source system does not know whether it was done.
        v.check(Status.UNKNOWN, "status unknown: given or not?", f"whether {when} was given")
    if rule.window is not None:
        if course.start is None or course.end is None:
            v.check(Status.UNKNOWN, "undated", f"dates of {when}")
        else:
            inside = course.start.day <= ctx.today and (
                course.ongoing or course.end.latest_day() >= ctx.window_start(rule.window)
            )
            v.check(Status.MET if inside else Status.NOT_MET, f"not within {rule.window.describe()}")
    if rule.before_onset_of:
        if course.start is None:
            v.check(Status.UNKNOWN, f"undated, before {event}?", f"dates of {when}")
        elif onset is None:
            v.check(Status.UNKNOWN, f"{event} has no date", f"date of {event}")
        else:
            v.check(Status.MET if course.start.day <= onset.day else Status.NOT_MET, f"started after {event}")
        months = rule.ended_more_than_months_before_onset
        if months is not None:
            if course.end is None:
                v.check(Status.UNKNOWN, "end not dated", f"dates of {when}")
            elif onset is None:
                v.check(Status.UNKNOWN, f"{event} has no date", f"date of {event}")
            else:
                limit = add_months(course.end.latest_day(), months)
                if onset.day <= limit:
                    v.check(Status.NOT_MET, f"ended {day(course.end)}, not more than {months} months before {event}")
                elif course.ongoing:
                    v.check(Status.UNKNOWN, "still in progress", f"end date of {when}")
                else:
                    v.check(Status.MET, "")
    if rule.dose is not None:
        summaries = [
            p
            for p in course.procedures
            if rule.course_summaries and ctx.match(p.code, rule.course_summaries, names="never")
        ]
        low, high, how = course_dose(course, rule.dose.unit, summaries)
        v.dose = _dose_text(low, high, rule.dose.unit) + ("" if low is None else f" ({how})")
        status = _dose_status(low, high, rule.dose)
        v.check(
            status,
            f"dose not {dose_bounds_text(rule.dose)}" if status is Status.NOT_MET else "total dose to confirm",
            f"total dose of {when}",
        )
    return v
