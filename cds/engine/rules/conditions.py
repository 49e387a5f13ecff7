"""Diagnoses from Condition: ICD-10-CM, SNOMED CT and ICD-O-3 morphology; status, verification, dates."""

from __future__ import annotations

import re
from typing import Literal, Protocol

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext, NameUse, WindowSpec
from cds.engine.formatting import day
from cds.engine.plan import RulePlan
from cds.engine.result import Outcome, RuleResult, outcome
from cds.record.dates import FhirDate
from cds.record.model import Condition


class SeveritySpec(Protocol):
    """How a condition rule reads a diagnosis's severity (``cds.rules.conditions.SeverityMap``)."""

    @property
    def met(self) -> list[str]: ...

    @property
    def not_met(self) -> list[str]: ...

    @property
    def missing(self) -> Outcome: ...

    @property
    def min_grade(self) -> int | None: ...


class ConditionCriterion(RulePlan):
    """A condition rule as the engine reads it: the parameters of ``cds.rules.conditions.ConditionRule``
    (its ``plan()``), native fields read directly by the compiled evaluator."""

    def __init__(
        self,
        *,
        label: str,
        valuesets: list[str],
        exclude_valuesets: list[str],
        status: Literal["active", "history", "any"],
        clinical_status: list[str],
        onset_within: WindowSpec | None,
        active_within: WindowSpec | None,
        when_found: Outcome,
        names: Literal["always", "uncoded"],
        severity: SeveritySpec | None,
        horizon: WindowSpec | Literal["lifelong"] | None,
        lasts_at_most: WindowSpec | None,
        when_missing: Outcome,
    ) -> None:
        self.label = label
        self.valuesets = valuesets
        self.exclude_valuesets = exclude_valuesets
        self.status: Literal["active", "history", "any"] = status
        self.clinical_status = clinical_status
        self.onset_within = onset_within
        self.active_within = active_within
        self.when_found: Outcome = when_found
        self.names: Literal["always", "uncoded"] = names
        self.severity = severity
        self.horizon: WindowSpec | Literal["lifelong"] | None = horizon
        self.lasts_at_most = lasts_at_most
        self.when_missing: Outcome = when_missing

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_condition(self, ctx)


ACTIVE = frozenset({"active", "recurrence", "relapse"})
HISTORY = frozenset({"inactive", "remission", "resolved"})
UNCONFIRMED = frozenset({"provisional", "differential", "unconfirmed"})


def is_active(c: Condition, ctx: EvalContext) -> bool:
    if c.clinical_status in HISTORY:
        return False
    if c.clinical_status in ACTIVE:
        return True
    if c.abatement is not None:
        return c.abatement.day > ctx.today
    return not c.abated


def event_date(c: Condition) -> FhirDate | None:
    return c.onset or c.recorded


def stale_since(c: Condition, ctx: EvalContext, horizon: WindowSpec) -> FhirDate | None:
    """The date an "active" status dates from, when every date the entry states of itself is older than
    the horizon (the status is then no evidence of the present); else None. An undated entry is not stale:
    its status is all the record says."""
    if c.latest is None or c.latest.latest_day() >= ctx.window_start(horizon):
        return None
    return event_date(c) or c.latest


def _currency(rule: ConditionCriterion, c: Condition, ctx: EvalContext) -> tuple[str, str]:
    """For an active Condition: ("current", ""), ("history", why) past what nature allows (a pregnancy
    recorded 10 months ago is over), or ("stale", why) past the rule's horizon (to confirm)."""
    if rule.lasts_at_most is not None:
        since = stale_since(c, ctx, rule.lasts_at_most)
        if since is not None:
            return (
                "history",
                f"recorded active since {day(since)}: not current, lasts at most {rule.lasts_at_most.describe()}",
            )
    horizon = rule.horizon or ctx.trial.horizons.condition
    since = stale_since(c, ctx, horizon) if horizon != "lifelong" else None
    if since is not None:
        return "stale", f"{describe(c)} recorded active since {day(since)} — confirm it is current"
    return "current", ""


def matching_conditions(
    ctx: EvalContext, valuesets: list[str], exclude: list[str] | None = None, names: NameUse = "uncoded"
) -> list[Condition]:
    key = (tuple(valuesets), tuple(exclude or ()), names)
    cached = ctx.condition_matches.get(key)
    if cached is None:
        # Matched once per distinct (code, morphology): a long record repeats the same diagnoses; and the
        # verdict is remembered across evaluations (patients share their diagnoses).
        chosen: list[int] = []
        for verdicts, diagnosis, positions in ctx.condition_groups():
            hit = verdicts.get(key)
            if hit is None:  # rare once the process has warmed up: unpacked only here
                code, morphology = diagnosis
                excluded = list(key[1])
                hit = verdicts[key] = bool(
                    ctx.match(code, valuesets, exclude=excluded, names=names)
                    or any(ctx.match(m, valuesets, exclude=excluded, names=names) for m in morphology)
                )
            if hit:
                chosen.extend(positions)
        if names == "always":  # words no code expresses are read from the notes as from the diagnosis
            taken = set(chosen)
            for i, c in enumerate(ctx.record.conditions):
                if c.notes and i not in taken and _notes_say(ctx, c.notes, valuesets, exclude or []):
                    chosen.append(i)
        if chosen:
            chosen.sort()
            conditions = ctx.record.conditions
            cached = [conditions[i] for i in chosen]
        else:
            cached = []
        ctx.condition_matches[key] = cached
    return cached


# A note is prose: "no evidence of local recurrence" must not read as a recurrence. The words before a
# match, back to the start of its sentence, are searched for a negation.
_NEGATION = re.compile(
    r"\b(?:no|not|never|without|negative\s+for|free\s+of|rule[sd]?\s+out|r/o|denies|denied|excluded?)\b", re.I
)
_SENTENCE_END = re.compile(r"[.;:!?\n]")


def _notes_say(ctx: EvalContext, notes: tuple[str, ...], valuesets: list[str], exclude: list[str]) -> bool:
    for text in notes:
        if any(ctx.library[x].match_text(text) for x in exclude):
            continue
        for vs_name in valuesets:
            found = ctx.library[vs_name].match_text(text)
            if found is None:
                continue
            at = text.lower().find(found.label.lower())
            before = text[: max(at, 0)]
            clause = _SENTENCE_END.split(before)[-1]
            if not _NEGATION.search(clause):
                return True
    return False


def describe(c: Condition) -> str:
    codes = ", ".join(cd.code for cd in c.code.codings[:2])
    name = c.code.label()
    return f"{name} ({codes})" if codes and codes not in name else name


def condition_fact(c: Condition, ctx: EvalContext) -> Fact:
    state = "active" if is_active(c, ctx) else (c.clinical_status or "resolved")
    when = event_date(c)
    return Fact(label="Diagnosis", value=f"{describe(c)}, {state}", date=day(when) if when else None, resource=c.ref)


def evaluate_condition(rule: ConditionCriterion, ctx: EvalContext) -> RuleResult:
    candidates = matching_conditions(ctx, rule.valuesets, rule.exclude_valuesets, rule.names)
    if not candidates:  # most diagnoses a trial asks about are absent: the answer below, without its lists
        return _absent(rule)
    qualifying: list[tuple[Condition, Status, str]] = []
    undecided: list[tuple[Condition, str]] = []
    out_of_window: list[Condition] = []
    not_current: dict[str, str] = {}  # reference → why its "active" status is over
    # Only rules that ask about the present read currency: a history ever keeps every entry.
    asks_now = rule.status == "active" or rule.active_within is not None
    for c in candidates:
        if rule.clinical_status and c.clinical_status not in rule.clinical_status:
            continue
        active = is_active(c, ctx)
        if asks_now and active:
            currency, why = _currency(rule, c, ctx)
            if currency == "history":
                not_current[c.ref] = why
                out_of_window.append(c)
                continue
            if currency == "stale":
                undecided.append((c, why))
                continue
        if rule.status == "active" and not active:
            out_of_window.append(c)
            continue
        if rule.status == "history" and active:
            continue
        if rule.active_within is not None and not active:
            ended = c.abatement
            if ended is None:
                undecided.append((c, f"{describe(c)} is {c.clinical_status or 'resolved'} without an end date"))
                continue
            if not ctx.in_window(ended, rule.active_within):
                out_of_window.append(c)
                continue
        if rule.onset_within is not None:
            inside = ctx.in_window(event_date(c), rule.onset_within)
            if inside is None:
                undecided.append((c, f"{describe(c)} without an onset date"))
                continue
            if not inside:
                out_of_window.append(c)
                continue
        if c.verification_status in UNCONFIRMED:
            undecided.append((c, f"{describe(c)} is {c.verification_status}, not confirmed"))
            continue
        status, note = _severity(rule, c, ctx)
        qualifying.append((c, status, note))

    met = [(c, note) for c, st, note in qualifying if st is Status.MET]
    if met:
        status = outcome(rule.when_found)
        prefix = "" if status is Status.MET else "to confirm: "
        reasons = [
            f"{prefix}{rule.label}: {describe(c)}{_when(c, ctx)}{_in_note(rule, c, ctx)}{note}" for c, note in met
        ]
        return RuleResult(
            status,
            "; ".join(reasons),
            tuple(c.ref for c, _ in met),
            tuple(condition_fact(c, ctx) for c, _ in met),
            (f"investigator review of {rule.label}",) if status is Status.UNKNOWN else (),
        )
    unknown = [(c, note) for c, st, note in qualifying if st is Status.UNKNOWN] + undecided
    if unknown:
        return RuleResult(
            Status.UNKNOWN,
            # A severity note starts ", …" (it follows the diagnosis); an undecided one is a sentence.
            "; ".join(
                f"{rule.label}: {describe(c)}{note}" if not note or note.startswith(", ") else f"{rule.label}: {note}"
                for c, note in unknown
            ),
            tuple(c.ref for c, _ in unknown),
            tuple(condition_fact(c, ctx) for c, _ in unknown),
            tuple(note.removeprefix(", ") for _, note in unknown if note) or (rule.label,),
        )
    not_met = [(c, note) for c, st, note in qualifying if st is Status.NOT_MET]
    if not_met:
        return RuleResult(
            Status.NOT_MET,
            "; ".join(f"{rule.label}: {describe(c)}{note}" for c, note in not_met),
            tuple(c.ref for c, _ in not_met),
            tuple(condition_fact(c, ctx) for c, _ in not_met),
        )
    if out_of_window:
        if rule.onset_within:
            scope = f"within {rule.onset_within.describe()}"
        elif rule.active_within:
            scope = f"active within {rule.active_within.describe()}"
        else:
            scope = "active"
        listed = "; ".join(
            f"{describe(c)} ({not_current[c.ref]})" if c.ref in not_current else f"{describe(c)}{_when(c, ctx)}"
            for c in out_of_window[:3]
        )
        return RuleResult(
            Status.NOT_MET,
            f"no {rule.label} {scope} (recorded: {listed})",
            tuple(c.ref for c in out_of_window),
            tuple(condition_fact(c, ctx) for c in out_of_window),
        )
    return _absent(rule)


def _absent(rule: ConditionCriterion) -> RuleResult:
    """No entry of the diagnosis at all. Most diagnoses a trial asks about are absent and absence means
    not met; a rule may instead leave it to confirm (``when_missing: unknown``), where a record that is
    silent is no evidence (a diagnosis often kept outside the EHR)."""
    scope = f" within {rule.onset_within.describe()}" if rule.onset_within else ""
    status = outcome(rule.when_missing)
    if status is Status.UNKNOWN:
        return RuleResult(status, f"no {rule.label}{scope} in the record: to confirm", missing=(rule.label,))
    return RuleResult(status, f"no {rule.label}{scope} in the record")


def _in_note(rule: ConditionCriterion, c: Condition, ctx: EvalContext) -> str:
    """Where only a note said it, the reason says so (the diagnosis's code and words do not)."""
    if rule.names != "always" or not c.notes:
        return ""
    exclude = rule.exclude_valuesets
    if ctx.match(c.code, rule.valuesets, exclude=exclude) or any(
        ctx.match(m, rule.valuesets, exclude=exclude) for m in c.morphology
    ):
        return ""
    return " [written in a note]"


def _when(c: Condition, ctx: EvalContext) -> str:
    parts = []
    when = event_date(c)
    if when is not None:
        parts.append(f"since {day(when)}")
    if not is_active(c, ctx):
        parts.append(f"{c.clinical_status or 'resolved'}" + (f" {day(c.abatement)}" if c.abatement else ""))
    return f" ({', '.join(parts)})" if parts else ""


def _severity(rule: ConditionCriterion, c: Condition, ctx: EvalContext) -> tuple[Status, str]:
    if rule.severity is None:
        return Status.MET, ""
    if c.severity is not None:
        if ctx.match(c.severity, rule.severity.met):
            return Status.MET, f", severity {c.severity.label()}"
        if ctx.match(c.severity, rule.severity.not_met):
            return Status.NOT_MET, f", severity {c.severity.label()}"
    if rule.severity.min_grade is not None:
        grade = written_grade(c)
        if grade is not None:
            status = Status.MET if grade >= rule.severity.min_grade else Status.NOT_MET
            return status, f", CTCAE grade {grade}"
    return outcome(rule.severity.missing), ", grade/severity not recorded"


_GRADE = re.compile(r"\bgrade\s*([0-5]|iv|v|i{1,3})\b", re.I)
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5}


def written_grade(c: Condition) -> int | None:
    """The grade a clinician wrote in the diagnosis or its severity ("grade 2", "Grade II")."""
    texts = c.code.texts() + (c.severity.texts() if c.severity else [])
    for text in texts:
        found = _GRADE.search(text)
        if found:
            token = found.group(1).lower()
            return int(token) if token.isdigit() else _ROMAN[token]
    return None
