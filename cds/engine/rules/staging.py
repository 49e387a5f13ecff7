"""TNM staging: the T, N and M categories and the stage group of one staging assessment, and its edition.

A record carries staging as mCODE-style Observations (one per category, often gathered under a stage-group
Observation by ``hasMember``; the staging system in ``method``) and as ``Condition.stage`` (a summary that
may cite those Observations). The categories of one assessment are read together — a T from one staging and
an N from another do not make a patient's stage — and the latest assessment decides."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext
from cds.engine.formatting import day
from cds.engine.result import RuleResult
from cds.engine.rules.labs import USABLE_STATUS, matching_observations
from cds.record.dates import FhirDate
from cds.record.model import Concept, Condition, Observation
from cds.record.parse import staging_context

# The value sets a staging rule reads, by role: the Observation codes of each axis, the values of each axis
# (each code's `value` is the category as written, "cT3", "IVA"), and the staging systems (`value`: edition).
OBSERVATION_CODES: dict[str, str] = {
    "T": "obs-t-category",
    "N": "obs-n-category",
    "M": "obs-m-category",
    "G": "obs-stage-group",
}
VALUE_SETS: dict[str, str] = {"T": "tnm-t-values", "N": "tnm-n-values", "M": "tnm-m-values", "G": "stage-group-values"}
SYSTEMS = "staging-systems"
STAGING_VALUESETS: tuple[str, ...] = (*OBSERVATION_CODES.values(), *VALUE_SETS.values(), SYSTEMS)

AXIS_NAMES: dict[str, str] = {"T": "T category", "N": "N category", "M": "M category", "G": "stage group"}
_AXES = ("G", "T", "N", "M")

# A category as reports write it: an optional prefix (c clinical, p pathological, y after therapy, r
# recurrence, a autopsy, u ultrasound), the axis, the category (X, 0, is, 1–4) and a subdivision (a, b, c, mi).
_TNM = re.compile(r"(?<![A-Za-z])(yc|yp|rc|rp|c|p|y|r|a|u)?([TNM])(X|x|is|[0-4])([a-d][0-9]?|mi)?(?![a-z0-9])")
_ROMAN = re.compile(r"(?<![A-Za-z])(IV|III|II|I|0)\s?([ABCabc][12]?)?(?![A-Za-z0-9])")
_ARABIC = re.compile(
    r"(?:^\s*|\b(?:stage|stadium)\s*)([0-4])\s?([ABCabc][12]?)?\s*$|\b(?:stage|stadium)\s+([0-4])([ABCabc])?\b", re.I
)
_ROMAN_OF = {"0": "0", "1": "I", "2": "II", "3": "III", "4": "IV"}
_CODED_SYSTEMS = frozenset({"http://snomed.info/sct", "http://loinc.org"})  # numeric codes: never read as text


@dataclass(frozen=True)
class Category:
    """One axis of a staging: ``T`` ``3`` ``a`` with prefix ``c`` is cT3a; a stage group is axis ``G``
    (``IV`` ``A``)."""

    axis: str
    base: str
    sub: str = ""
    prefix: str = ""

    def written(self) -> str:
        if self.axis == "G":
            return f"{self.base}{self.sub}"
        return f"{self.prefix}{self.axis}{self.base}{self.sub}"


def parse_category(text: str, axis: str) -> Category | None:
    """The first category of ``axis`` (T, N, M, or G for a stage group) written in ``text``, or None."""
    if axis == "G":
        found = _ROMAN.search(text)
        if found is not None:
            return Category("G", found.group(1), (found.group(2) or "").upper())
        arabic = _ARABIC.search(text)
        if arabic is not None:
            number = arabic.group(1) or arabic.group(3)
            sub = arabic.group(2) or arabic.group(4) or ""
            return Category("G", _ROMAN_OF[number], sub.upper())
        return None
    for found in _TNM.finditer(text):
        if found.group(2) == axis:
            base = found.group(3)
            base = "X" if base in ("X", "x") else base
            return Category(axis, base, found.group(4) or "", found.group(1) or "")
    return None


_wanted_memo: dict[tuple[str, str], Category] = {}


def wanted_category(text: str, axis: str) -> Category:
    """A category a rule asks for ("T3", "N0", "IVA", "IVa"); raises ValueError if it is not one."""
    key = (text, axis)
    found = _wanted_memo.get(key)
    if found is None:
        parsed = parse_category(text.strip(), axis)
        if parsed is None or (axis != "G" and parsed.prefix) or parsed.written().upper() != _plain(text, axis):
            raise ValueError(f"{text!r} is not a {AXIS_NAMES[axis]} (write it as {_example(axis)})")
        found = parsed
        _wanted_memo[key] = found
    return found


def _plain(text: str, axis: str) -> str:
    cleaned = text.strip().upper()
    return cleaned.replace(" ", "") if axis == "G" else cleaned


def _example(axis: str) -> str:
    return {"T": "T3, T4a", "N": "N0, N2", "M": "M0", "G": "III, IVA"}[axis]


class CombinationSpec(Protocol):
    """A combination of categories (``cds.rules.staging.StagingCombination``): each axis given lists the
    categories that match it; an axis not given matches any."""

    @property
    def stage(self) -> list[str]: ...

    @property
    def t(self) -> list[str]: ...

    @property
    def n(self) -> list[str]: ...

    @property
    def m(self) -> list[str]: ...


class StagingCriterion(CombinationSpec, Protocol):
    """What ``evaluate_staging`` reads of a staging rule (``cds.rules.staging.StagingRule``)."""

    @property
    def label(self) -> str: ...

    @property
    def edition(self) -> int | None: ...

    @property
    def except_(self) -> Sequence[CombinationSpec]: ...

    @property
    def recurrence(self) -> bool: ...

    @property
    def cancer(self) -> list[str]: ...


def wanted_lists(combination: CombinationSpec) -> dict[str, list[str]]:
    """The axes a combination names, with the categories it lists for each."""
    lists = {"G": combination.stage, "T": combination.t, "N": combination.n, "M": combination.m}
    return {axis: values for axis, values in lists.items() if values}


@dataclass
class Assessment:
    """One staging: the categories read together, the resources they came from, the edition recorded."""

    when: FhirDate | None
    sort_key: str
    values: dict[str, Category] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)  # axis → value as written, not read as a category
    refs: list[str] = field(default_factory=list)
    editions: set[int] = field(default_factory=set)
    unread_system: str | None = None

    def add(self, axis: str, category: Category | None, written: str, ref: str) -> None:
        if category is not None:
            self.values.setdefault(axis, category)
        elif written:
            self.unread.setdefault(axis, written)
        if ref not in self.refs:
            self.refs.append(ref)

    def recurrence(self) -> bool:
        return any(v.prefix.startswith("r") for v in self.values.values())

    def post_therapy(self) -> bool:
        return any(v.prefix.startswith("y") for v in self.values.values())

    def order(self) -> tuple[int, str, int]:
        return (self.when.day.toordinal() if self.when else 0, self.sort_key, len(self.values))

    def describe(self) -> str:
        tnm = " ".join(self.values[a].written() for a in ("T", "N", "M") if a in self.values)
        group = f"stage {self.values['G'].written()}" if "G" in self.values else ""
        shown = ", ".join(part for part in (tnm, group) if part) or "no category read"
        edition = f" ({edition_name(next(iter(self.editions)))})" if len(self.editions) == 1 else ""
        return f"{shown}{edition} on {day(self.when)}"


def edition_name(edition: int) -> str:
    """The edition as the trial page and reasons name it, "AJCC 8th" (UICC editions carry the same TNM)."""
    return f"AJCC {edition}{_ordinal(edition)}"


def _ordinal(n: int) -> str:
    return {1: "st", 2: "nd", 3: "rd"}.get(n if n < 20 else n % 10, "th")


def normal_ref(ref: str) -> str:
    """A reference as ``Type/id``: full URLs and version suffixes dropped."""
    ref = ref.split("/_history/", 1)[0]
    parts = ref.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else ref


def read_value(ctx: EvalContext, axis: str, concept: Concept | None, string: str | None) -> tuple[Category | None, str]:
    """A staging value: its code in the axis's value set, else the category written in its codes (AJCC,
    UICC), displays, text or string. Also the value as written, for a reason when it is not read."""
    texts: list[str] = []
    if concept is not None:
        found = ctx.match(concept, [VALUE_SETS[axis]], names="never")
        if found is not None and isinstance(found.value, str):
            parsed = parse_category(found.value, axis)
            if parsed is not None:
                return parsed, found.value
        canonical = ctx.library.aliases.canonical
        texts.extend(c.code for c in concept.codings if canonical(c.system) not in _CODED_SYSTEMS)
        texts.extend(concept.texts())
    if string:
        texts.append(string)
    for text in texts:
        parsed = parse_category(text, axis)
        if parsed is not None:
            return parsed, text
    return None, (concept.label() if concept is not None else (string or ""))


def _editions(ctx: EvalContext, concept: Concept | None) -> set[int]:
    found = ctx.match(concept, [SYSTEMS], names="always") if concept is not None else None
    if found is not None and isinstance(found.value, int | float):
        return {int(found.value)}
    return set()


def _context(obs: Observation) -> tuple[Concept | None, tuple[str, ...], tuple[str, ...]]:
    try:
        return staging_context(obs.raw)
    except Exception:  # lean JSON text of another shape: the Observation is read without its links
        return None, (), ()


def _is_component(obs: Observation) -> bool:
    return obs.raw.get("resourceType") is None


def assessments(rule: StagingCriterion, ctx: EvalContext) -> list[Assessment]:
    """The record's staging assessments, the latest first."""
    staged: list[tuple[str, Observation]] = []
    seen: set[tuple[str, int]] = set()
    for axis in _AXES:
        for obs in matching_observations(ctx, [OBSERVATION_CODES[axis]]):
            if obs.status not in USABLE_STATUS or obs.when is None or obs.when.day > ctx.today:
                continue
            if (axis, id(obs)) not in seen:
                seen.add((axis, id(obs)))
                staged.append((axis, obs))
    links = {id(obs): _context(obs) for _, obs in staged}
    panel_of: dict[str, str] = {}
    methods: dict[str, set[int]] = {}
    method_words: dict[str, str] = {}
    for _, obs in staged:
        method, members, _focus = links[id(obs)]
        for member in members:
            panel_of.setdefault(normal_ref(member), obs.ref)
        editions = _editions(ctx, method)
        if editions:
            methods.setdefault(obs.ref, set()).update(editions)
        elif method is not None:
            method_words.setdefault(obs.ref, method.label())
    cancers = _cancer_refs(rule, ctx)
    groups: dict[tuple[str, ...], Assessment] = {}
    for axis, obs in staged:
        focus = tuple(sorted(normal_ref(f) for f in links[id(obs)][2]))
        if cancers is not None and focus and not any(f in cancers for f in focus):
            continue  # the staging of another cancer
        if obs.ref in panel_of:
            key: tuple[str, ...] = ("panel", panel_of[obs.ref])
        elif links[id(obs)][1] or _is_component(obs):
            key = ("panel", obs.ref)
        else:
            assert obs.when is not None
            key = ("day", obs.when.day.isoformat(), *focus)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Assessment(obs.when, obs.sort_key)
        category, written = read_value(ctx, axis, obs.value.concept, obs.value.string)
        group.add(axis, category, written, obs.ref)
    for key, group in groups.items():
        refs = [*group.refs, key[1]] if key[0] == "panel" else group.refs
        for ref in refs:
            group.editions.update(methods.get(ref, ()))
            if ref in method_words and group.unread_system is None:
                group.unread_system = method_words[ref]
    _merge_unfocused(groups)
    found = list(groups.values())
    _add_condition_stages(rule, ctx, found, cancers)
    found.sort(key=Assessment.order, reverse=True)
    return found


def _merge_unfocused(groups: dict[tuple[str, ...], Assessment]) -> None:
    """An Observation without ``focus`` joins the same day's staging of the one cancer named that day."""
    by_day: dict[str, list[tuple[str, ...]]] = {}
    for key in groups:
        if key[0] == "day":
            by_day.setdefault(key[1], []).append(key)
    for day_text, keys in by_day.items():
        focused = [k for k in keys if len(k) > 2]
        plain = ("day", day_text)
        if len(focused) == 1 and plain in groups:
            target, source = groups[focused[0]], groups.pop(plain)
            for axis, category in source.values.items():
                target.values.setdefault(axis, category)
            for axis, written in source.unread.items():
                target.unread.setdefault(axis, written)
            target.refs.extend(r for r in source.refs if r not in target.refs)
            target.editions.update(source.editions)


def _cancer_refs(rule: StagingCriterion, ctx: EvalContext) -> set[str] | None:
    """With ``cancer`` value sets: the references of the record's Conditions of that cancer."""
    if not rule.cancer:
        return None
    return {c.ref for c in ctx.record.conditions if ctx.match(c.code, rule.cancer, names="uncoded") is not None}


def _add_condition_stages(
    rule: StagingCriterion, ctx: EvalContext, found: list[Assessment], cancers: set[str] | None
) -> None:
    """``Condition.stage``: joins the assessment of the Observations it cites, else is one of its own,
    dated by the Condition's recordedDate (else onset)."""
    by_ref = {ref: a for a in found for ref in a.refs}
    for condition in ctx.record.conditions:
        if not condition.stages or (cancers is not None and condition.ref not in cancers):
            continue
        for stage in condition.stages:
            cited = [by_ref[r] for r in (normal_ref(x) for x in stage.assessments) if r in by_ref]
            if cited:
                target = cited[0]
            else:
                when = condition.recorded or condition.onset
                target = Assessment(when, when.text if when is not None else "")
                found.append(target)
            _read_stage(ctx, condition, stage.summary, stage.type, target)


def _read_stage(
    ctx: EvalContext, condition: Condition, summary: Concept | None, kind: Concept | None, target: Assessment
) -> None:
    for axis in _AXES:
        if axis in target.values:
            continue
        if axis == "G":
            category, written = read_value(ctx, "G", summary, None)
        else:
            category = next((c for t in (summary.texts() if summary else []) if (c := parse_category(t, axis))), None)
            written = ""
        if category is not None or written:
            target.add(axis, category, written, condition.ref)
    if condition.ref not in target.refs:
        target.refs.append(condition.ref)
    target.editions.update(_editions(ctx, kind) or _editions(ctx, summary))


def _covers(wanted: Category, recorded: Category) -> Status:
    if recorded.base == "X" and wanted.base != "X":
        return Status.UNKNOWN  # cannot be assessed
    if wanted.base != recorded.base:
        return Status.NOT_MET
    if not wanted.sub or recorded.sub.startswith(wanted.sub):
        return Status.MET
    return Status.UNKNOWN if not recorded.sub else Status.NOT_MET


def axis_status(wanted: Iterable[str], axis: str, recorded: Category | None) -> Status:
    """Whether a recorded category is one of those wanted (T4 covers T4a; T4 recorded where T4a is asked
    cannot say; TX cannot say)."""
    if recorded is None:
        return Status.UNKNOWN
    statuses = [_covers(wanted_category(w, axis), recorded) for w in wanted]
    if Status.MET in statuses:
        return Status.MET
    return Status.UNKNOWN if Status.UNKNOWN in statuses else Status.NOT_MET


def _listed(values: list[str], axis: str) -> str:
    shown = [wanted_category(v, axis).written() for v in values]
    return ("stage " if axis == "G" else "") + " or ".join(shown)


def _combination_text(wanted: dict[str, list[str]]) -> str:
    return " ".join(_listed(values, axis) for axis, values in wanted.items())


def _in_full(axis: str) -> str:
    return f"{AXIS_NAMES[axis]} in full"


def _not_recorded(axis: str, assessment: Assessment) -> str:
    written = assessment.unread.get(axis)
    if written:
        return f"{AXIS_NAMES[axis]} recorded as {written!r}, not read as one"
    return f"{AXIS_NAMES[axis]} not recorded"


def decide(rule: StagingCriterion, assessment: Assessment) -> tuple[Status, list[str], list[str]]:
    """The rule's status on one assessment, the reasons of what is not met or unknown, and what is missing."""
    reasons: list[str] = []
    missing: list[str] = []
    status = Status.MET
    for axis, values in wanted_lists(rule).items():
        recorded = assessment.values.get(axis)
        part = axis_status(values, axis, recorded)
        if part is Status.NOT_MET:
            assert recorded is not None
            reasons.append(f"{recorded.written()}, the trial asks {_listed(values, axis)}")
            status = Status.NOT_MET
        elif part is Status.UNKNOWN:
            if recorded is None:
                reasons.append(_not_recorded(axis, assessment))
                missing.append(AXIS_NAMES[axis])
            else:
                reasons.append(f"{recorded.written()} does not say whether {_listed(values, axis)}")
                missing.append(f"{AXIS_NAMES[axis]} in full")
            if status is Status.MET:
                status = Status.UNKNOWN
    for combination in rule.except_:
        wanted = wanted_lists(combination)
        parts = [axis_status(values, axis, assessment.values.get(axis)) for axis, values in wanted.items()]
        if Status.NOT_MET in parts:
            continue
        if all(p is Status.MET for p in parts):
            reasons.append(f"{_combination_text(wanted)} is excepted")
            status = Status.NOT_MET
        else:
            unknown = [a for a, p in zip(wanted, parts, strict=True) if p is Status.UNKNOWN]
            why = [_not_recorded(a, assessment) if a not in assessment.values else _in_full(a) for a in unknown]
            reasons.append(f"cannot rule out the excepted {_combination_text(wanted)}: " + ", ".join(why))
            missing.extend(AXIS_NAMES[a] for a in unknown)
            if status is Status.MET:
                status = Status.UNKNOWN
    return status, reasons, missing


def _asked(rule: StagingCriterion) -> str:
    edition = f" ({edition_name(rule.edition)})" if rule.edition is not None else ""
    return f"{'recurrence ' if rule.recurrence else ''}TNM staging{edition}"


def evaluate_staging(rule: StagingCriterion, ctx: EvalContext) -> RuleResult:
    found = assessments(rule, ctx)
    if rule.recurrence:
        candidates = [a for a in found if a.recurrence()]
    else:
        candidates = [a for a in found if not a.recurrence() and not a.post_therapy()]
    if not candidates:
        if not found:
            return RuleResult(Status.UNKNOWN, f"no {_asked(rule)} in the record", missing=(_asked(rule),))
        latest = found[0]
        what = "recurrence (r) staging" if rule.recurrence else "staging at diagnosis (only recurrence or post-therapy)"
        return RuleResult(
            Status.UNKNOWN,
            f"no {what} in the record; the latest staging: {latest.describe()}",
            tuple(latest.refs),
            missing=(_asked(rule),),
        )
    assessment = candidates[0]
    fact = Fact(label=rule.label, value=assessment.describe(), date=day(assessment.when), resource=assessment.refs[0])
    evidence = tuple(assessment.refs)
    described = assessment.describe()
    if rule.edition is not None and assessment.editions and assessment.editions != {rule.edition}:
        recorded = " and ".join(edition_name(e) for e in sorted(assessment.editions))
        asked = edition_name(rule.edition)
        reason = f"staged under {recorded} ({described}); the trial asks {asked}: restage or confirm"
        return RuleResult(Status.UNKNOWN, reason, evidence, (fact,), (_asked(rule),))
    status, reasons, missing = decide(rule, assessment)
    reason = described + (": " + "; ".join(reasons) if reasons else ": as asked")
    if rule.edition is not None and not assessment.editions:
        system = f" (method {assessment.unread_system!r} not read as one)" if assessment.unread_system else ""
        reason += f"; edition not recorded{system}, read as {edition_name(rule.edition)}"
    return RuleResult(status, reason, evidence, (fact,), tuple(dict.fromkeys(missing)))
