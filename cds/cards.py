"""Assessment → CDS Hooks 2.0 cards.

One card per trial the clinician should see: a one-glance summary, a Markdown checklist of the criteria
(decisive ones first, unknowns as "to confirm" with what to check), a link to the trial's criteria page,
a draft referral (R4 ServiceRequest) as the one suggestion, override reasons, and the machine-readable
assessment as a card extension. Every value is pruned of nulls and empty strings, arrays and objects, as
the specification requires.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import Any, Final, Protocol

import orjson
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds.assessment import Assessment, CriterionAssessment, Fact, Status, Verdict

# Our own identifiers: code systems for override reasons and card topics, and the card extension key
# (reverse-domain style, as the specification recommends for extensions).
NAMESPACE = "urn:trial-cds"
OVERRIDE_REASON_SYSTEM = f"{NAMESPACE}:codesystem:override-reason"
TOPIC_SYSTEM = f"{NAMESPACE}:codesystem:card-topic"
ASSESSMENT_EXTENSION = "org.trial-cds.assessment"

SUMMARY_MAX = 139  # the specification: a summary of fewer than 140 characters

OVERRIDE_REASONS: tuple[tuple[str, str], ...] = (
    ("already-screened", "Already screened or enrolled"),
    ("not-a-candidate", "Not a candidate, clinical judgement"),
    ("patient-declined", "Patient declined trial participation"),
    ("data-incorrect", "Record data incorrect or out of date"),
    ("not-now", "Not the right time"),
    ("other", "Other reason"),
)

VERDICT_LABEL = {
    Verdict.LIKELY_ELIGIBLE: "likely eligible",
    Verdict.NEEDS_REVIEW: "needs review",
    Verdict.NOT_ELIGIBLE: "not eligible",
}

# SNOMED CT 306206005 |Referral to service (procedure)|.
REFERRAL_CODING = {"system": "http://snomed.info/sct", "code": "306206005", "display": "Referral to service"}


class TrialInfo(Protocol):
    """What cards need of a trial (``cds.trials.Trial`` satisfies it)."""

    @property
    def id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def short_name(self) -> str: ...

    @property
    def url(self) -> str | None: ...


# ---------------------------------------------------------------------------------------------------
# The "no null, no empty" rule.


def prune(value: Any) -> Any:
    """A copy of ``value`` without nulls, empty strings, empty arrays or empty objects at any depth
    (members that become empty once pruned are dropped too). The top level itself is returned even when
    empty."""
    kind = type(value)
    if kind is dict or (kind is not list and kind is not tuple and isinstance(value, Mapping)):
        out: dict[str, Any] = {}
        for key, item in value.items():
            item_kind = type(item)
            # The common members first, decided here rather than by a call: a card holds ~130 values.
            if item_kind is str:
                if item:
                    out[key] = item
            elif item_kind is bool or item_kind is int or item_kind is float:
                out[key] = item
            elif item_kind is dict or item_kind is list:  # pruned to the same type: empty if falsy
                pruned = prune(item)
                if pruned:
                    out[key] = pruned
            elif item is not None:
                pruned = prune(item)
                if not _is_empty(pruned):
                    out[key] = pruned
        return out
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        kept: list[Any] = []
        for item in value:
            item_kind = type(item)
            if item_kind is str:
                if item:
                    kept.append(item)
            elif item_kind is bool or item_kind is int or item_kind is float:
                kept.append(item)
            elif item_kind is dict or item_kind is list:
                pruned = prune(item)
                if pruned:
                    kept.append(pruned)
            elif item is not None:
                pruned = prune(item)
                if not _is_empty(pruned):
                    kept.append(pruned)
        return kept
    return value


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple | dict) and len(value) == 0)


def find_empty(value: Any, path: str = "$") -> list[str]:
    """Paths (``$.cards[0].links``) of every null, empty string, empty array or empty object below
    ``value``; the top level is not checked, so ``{"cards": []}`` is checked by its caller."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            sub = f"{path}.{key}"
            if _is_empty(item):
                found.append(sub)
            found.extend(find_empty(item, sub))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            sub = f"{path}[{i}]"
            if _is_empty(item):
                found.append(sub)
            found.extend(find_empty(item, sub))
    return found


# ---------------------------------------------------------------------------------------------------
# Text.

# Days for people: the engine writes ISO days (its reasons are data); every text people read — cards,
# order cards, pages, the command line — shows them through clinical_dates / clinical_day.
_ISO_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _day_text(year: str, month: str, day_of_month: str, written: str) -> str:
    """An ISO day's parts as "28 Oct 2026"; ``written`` as it was where the month is not one."""
    number = int(month)
    return f"{int(day_of_month)} {_MONTHS[number - 1]} {year}" if 1 <= number <= 12 else written


def _clinical_day(m: re.Match[str]) -> str:
    return _day_text(m.group(1), m.group(2), m.group(3), m.group(0))


# Pure functions of a string, remembered: a card rewrites each criterion's text and reason, and a
# portfolio's texts (and most reasons: patients share them) recur from call to call; a dictionary look-up
# costs less than the regular expressions (docs/performance.md, 2026-12-08, fourth round). Bounded: reasons
# carry record data.
_TEXT_MEMO_LIMIT: Final = 20_000
_dates_memo: dict[str, str] = {}
_escape_memo: dict[str, str] = {}


def clinical_dates(text: str) -> str:
    """ISO days as clinicians write them, unambiguous in any locale: 2026-10-28 → 28 Oct 2026."""
    if "-" not in text:
        return text
    found = _dates_memo.get(text)
    if found is None:
        found = _ISO_DAY.sub(_clinical_day, text)
        if len(_dates_memo) >= _TEXT_MEMO_LIMIT:
            _dates_memo.clear()
        _dates_memo[text] = found
    return found


def clinical_day(value: str | date) -> str:
    """:func:`clinical_dates` of a day alone (a ``date``, or "2026-10-28" as the engine writes a Fact's
    date), without the regular expression where it is a whole ISO day."""
    if isinstance(value, date):
        value = value.isoformat()
    if (
        len(value) == 10
        and value[4] == "-"
        and value[7] == "-"
        and value[:4].isdecimal()  # what \d matches
        and value[5:7].isdecimal()
        and value[8:].isdecimal()
    ):
        return _day_text(value[:4], value[5:7], value[8:], value)
    return clinical_dates(value)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def md_escape(text: str) -> str:
    """Plain text made safe inside a Markdown line: no markup, links or HTML from record data."""
    found = _escape_memo.get(text)
    if found is None:
        found = _md_escape(text)
        if len(_escape_memo) >= _TEXT_MEMO_LIMIT:
            _escape_memo.clear()
        _escape_memo[text] = found
    return found


def _md_escape(text: str) -> str:
    # Whitespace collapsed to single spaces, unless it is so already: the only whitespace a printable
    # string holds is " ", and here none leads, trails or doubles (the test costs less than the rewrite).
    if not (text.isprintable() and "  " not in text and not text.startswith(" ") and not text.endswith(" ")):
        text = " ".join(text.split())
    if _MD_SPECIAL.search(text) is None:  # most text: nothing to escape
        return text
    return _MD_SPECIAL.sub(r"\\\1", text)


# The members, bound once: in the compiled build `Status.MET` is an attribute lookup on the enum class,
# and a card reads every criterion's status several times (measured with callgrind on the 1,000-resource
# request: counts_line 0.10 → 0.82 M instructions, _favourable 0.05 → 0.43 M without them;
# docs/performance.md, 2026-12-08).
_MET: Final = Status.MET
_NOT_MET: Final = Status.NOT_MET
_UNKNOWN: Final = Status.UNKNOWN


def _favourable(c: CriterionAssessment) -> bool:
    status = c.status
    if status is _MET:
        return c.kind == "inclusion"
    return status is _NOT_MET and c.kind == "exclusion"


def counts_line(a: Assessment) -> str:
    total = len(a.criteria)
    ok = failing = unknown = 0
    # One pass: each criterion is unknown, favourable, or rules the patient out (asked last: a property in
    # Python, and favourable is the usual answer).
    for c in a.criteria:
        if c.status is _UNKNOWN:
            unknown += 1
        elif _favourable(c):
            ok += 1
        elif c.rules_out:
            failing += 1
    parts = [f"{ok} of {total} criteria met"]
    if failing:
        parts.insert(0, f"{failing} not met" if failing > 1 else "1 not met")
    if unknown:
        parts.append(f"{unknown} to confirm")
    return ", ".join(parts)


def summary(a: Assessment, trial: TrialInfo) -> str:
    """One line of fewer than 140 characters, e.g. "NPC-LDRT trial: likely eligible — 30 of 34 criteria
    met, 4 to confirm"."""
    tail = f": {VERDICT_LABEL[a.verdict]} — {counts_line(a)}"
    name = " ".join((trial.short_name or trial.title or trial.id).split())
    head = f"{name} trial"
    if len(head) + len(tail) > SUMMARY_MAX:
        room = max(SUMMARY_MAX - len(tail) - 1, 8)
        head = head[:room].rstrip() + "…"
    text = head + tail
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


# A judgement criterion's text often ends by saying so; the line already does.
_JUDGEMENT_SUFFIX = re.compile(r"\s*\(investigator's (judgement|assessment)\)\s*$", re.I)


def _fact_text(f: Fact) -> str:
    text = f"{f.label} {f.value}".strip()
    # The same as clinical_dates(f"{text} on {f.date}"): no ISO day spans " on ", and the spaces around
    # it bound a match as the ends of the string would.
    return f"{clinical_dates(text)} on {clinical_day(f.date)}" if f.date else clinical_dates(text)


def _criterion_line(c: CriterionAssessment) -> str:
    text = md_escape(_JUDGEMENT_SUFFIX.sub("", c.text) if c.judgement else c.text)
    facts = "; ".join([_fact_text(f) for f in c.facts]) if c.facts else ""
    if _favourable(c):
        label = text if c.kind == "inclusion" else f"Not present — exclusion: {text}"
        return f"- [x] {label} — {md_escape(facts or clinical_dates(c.reason))}"
    if c.status is not _UNKNOWN and c.rules_out:  # an unknown never rules out: the property not asked
        label = f"Not met: {text}" if c.kind == "inclusion" else f"Excluded: {text}"
        return f"- [ ] **{label}** — {md_escape(facts or clinical_dates(c.reason))}"
    if c.judgement:  # the investigator decides; show what the record offers
        line = f"- [ ] To confirm (investigator's judgement): {text}"
        return f"{line} — seen: {md_escape(facts)}" if facts else line
    # Unknown: say why, and what to check.
    line = f"- [ ] To confirm: {text} — {md_escape(clinical_dates(c.reason))}"
    if facts:
        line += f" (seen: {md_escape(facts)})"
    if c.missing:
        line += f"; check: {md_escape(', '.join(c.missing))}"
    return line


def detail(a: Assessment, trial: TrialInfo) -> str:
    """GitHub-flavoured Markdown: verdict line, then the criteria as a checklist, decisive ones first."""
    title = md_escape(trial.title or trial.id)
    lines = [
        f"**{VERDICT_LABEL[a.verdict].capitalize()}** for *{title}* — {counts_line(a)} "
        f"(screened {clinical_day(a.evaluated_at.date())}).",
        "",
    ]
    failing: list[CriterionAssessment] = []
    unknown: list[CriterionAssessment] = []
    judged: list[CriterionAssessment] = []  # unknown too, listed after the others
    ok: list[CriterionAssessment] = []
    for c in a.criteria:
        if c.status is _UNKNOWN:
            (judged if c.judgement else unknown).append(c)
        elif _favourable(c):
            ok.append(c)
        elif c.rules_out:
            failing.append(c)
    decided_unknown = unknown + judged
    sections: list[tuple[str, list[CriterionAssessment]]] = [
        ("Rules the patient out", failing),
        ("To confirm", decided_unknown),
        ("Satisfied", ok),
    ]
    for heading, items in sections:
        if not items:
            continue
        lines.append(f"#### {heading} ({len(items)})")
        lines.extend(_criterion_line(c) for c in items)
        lines.append("")
    lines.extend(note_lines(a))
    lines.append("_A screening aid from coded record data: the trial team confirms eligibility._")
    return "\n".join(lines)


def note_lines(a: Assessment) -> list[str]:
    """The record's notes (``Assessment.notes``), each a Markdown paragraph: what any answer from this
    record should say about the data it came from."""
    return [f"**Note:** {md_escape(note)}.\n" for note in a.notes]


# ---------------------------------------------------------------------------------------------------
# Suggestion: a draft referral.


_VALID_REFERRALS_MAX = 4096
_valid_referrals: set[tuple[object, ...]] = set()


def referral(a: Assessment, trial: TrialInfo, *, patient_id: str, user_id: str | None = None) -> dict[str, Any]:
    """A draft R4 ServiceRequest referring the patient to the trial team, validated with fhir.resources."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": {
            "coding": [REFERRAL_CODING],
            "text": f"Referral to clinical trial team: {trial.title or trial.id}",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": a.evaluated_at.isoformat(),
        "reasonCode": [{"text": f"Clinical trial eligibility screening: {trial.title or trial.id} ({trial.id})"}],
        "note": [{"text": f"trial-cds screening: {VERDICT_LABEL[a.verdict]} — {counts_line(a)}."}],
    }
    if user_id and user_id.split("/", 1)[0] in {"Practitioner", "PractitionerRole"}:
        resource["requester"] = {"reference": user_id}
    # Validation is a pure function of the content: a resource already found valid is not validated
    # again. The key is the content but the time of day of authoredOn, whose text has one shape for
    # every time of one day (same date, offset and presence of microseconds).
    when = a.evaluated_at
    key = (
        orjson.dumps({k: v for k, v in resource.items() if k != "authoredOn"}),
        when.date(),
        when.utcoffset(),
        when.microsecond == 0,
    )
    if key not in _valid_referrals:
        ServiceRequest.model_validate(resource)  # raises if the resource is not valid R4
        if len(_valid_referrals) >= _VALID_REFERRALS_MAX:
            _valid_referrals.clear()
        _valid_referrals.add(key)
    return resource


# ---------------------------------------------------------------------------------------------------
# The card.


def link(label: str, url: str) -> dict[str, Any]:
    """A card link to a web page, as CDS Hooks 2.0 defines it: ``autolaunchable`` said outright (false:
    nothing here is a SMART app to launch unasked). Only fields of the specification: clients that want
    others (HealthChain's ``autoLaunchable``) are noted in docs/clients.md, not served."""
    return {"label": label, "url": url, "type": "absolute", "autolaunchable": False}


def card(
    a: Assessment,
    trial: TrialInfo,
    *,
    base_url: str,
    patient_id: str,
    user_id: str | None = None,
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> dict[str, Any]:
    base = base_url.rstrip("/")
    page = f"{base}/trials/{trial.id}"
    name = trial.short_name or trial.title or trial.id
    links: list[dict[str, Any]] = [link("Trial criteria", page)]
    if trial.url:
        links.append(link("Trial registry record", trial.url))
    offer_referral = a.verdict is not Verdict.NOT_ELIGIBLE  # only when the patient may be eligible
    suggestions = None
    if offer_referral:
        suggestions = [
            {
                "uuid": new_uuid(),
                "label": f"Refer to the {name} team",
                "isRecommended": True,
                "actions": [
                    {
                        "type": "create",
                        "description": f"Draft a referral to the {name} trial team for eligibility screening",
                        "resource": referral(a, trial, patient_id=patient_id, user_id=user_id),
                    }
                ],
            }
        ]
    out = {
        "uuid": new_uuid(),
        "summary": summary(a, trial),
        "indicator": "info",
        "detail": detail(a, trial),
        "source": {
            "label": f"Trial eligibility screening: {name}",
            "url": page,
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": "trial-eligibility",
                "display": "Clinical trial eligibility",
            },
        },
        "suggestions": suggestions,
        "selectionBehavior": "at-most-one" if suggestions else None,
        "overrideReasons": [
            {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display} for code, display in OVERRIDE_REASONS
        ],
        "links": links,
    }
    pruned: dict[str, Any] = prune(out)
    # The assessment last, as it always was, pruned as it is made: it is most of the card's values.
    pruned["extension"] = {ASSESSMENT_EXTENSION: pruned_screen(a)}
    return pruned


def pruned_screen(a: Assessment) -> dict[str, Any]:
    """``prune(a.screen_json())``, made directly: the same members in the same order, without building
    and then walking the unpruned copy (tests/cards hold the two to the same answer)."""
    out: dict[str, Any] = {}
    if a.patient:
        out["patient"] = a.patient
    if a.trial_id:
        out["trial"] = a.trial_id
    out["verdict"] = a.verdict.value
    criteria: list[Any] = []
    for c in a.criteria:
        item: dict[str, Any] = {}
        if c.id:
            item["id"] = c.id
        item["kind"] = c.kind
        item["status"] = c.status.value
        if c.reason:
            item["reason"] = c.reason
        evidence = [e for e in c.evidence if e]
        if evidence:
            item["evidence"] = evidence
        criteria.append(item)
    if criteria:
        out["criteria"] = criteria
    if a.verdict_reason:
        out["verdict_reason"] = a.verdict_reason
    notes = [n for n in a.notes if n]
    if notes:
        out["notes"] = notes
    return out


def shown(a: Assessment, *, show_not_eligible: bool) -> bool:
    """A verdict that rests on the patient, not on the criteria (the dead are never candidates), is no
    screening result: never a card, not even where not-eligible cards are shown."""
    if a.verdict_reason is not None:
        return False
    return a.verdict is not Verdict.NOT_ELIGIBLE or show_not_eligible


#: The order of verdicts on the screen: the most promising first.
_VERDICT_ORDER = {Verdict.LIKELY_ELIGIBLE: 0, Verdict.NEEDS_REVIEW: 1, Verdict.NOT_ELIGIBLE: 2}


def to_confirm(a: Assessment) -> int:
    """How many of the assessment's criteria are still to confirm (unknown)."""
    return sum(1 for c in a.criteria if c.status is _UNKNOWN)


def screen_order(ta: tuple[TrialInfo, Assessment]) -> tuple[int, int, str]:
    """Likely eligible first, then needs review, then not eligible; within a verdict, the trial with the
    fewest criteria to confirm first (the least work for the clinician); then by trial id (stable)."""
    trial, a = ta
    return (_VERDICT_ORDER[a.verdict], to_confirm(a), trial.id)


def cards_for(
    results: Iterable[tuple[TrialInfo, Assessment]],
    *,
    base_url: str,
    patient_id: str,
    user_id: str | None = None,
    show_not_eligible: bool = False,
) -> list[tuple[TrialInfo, Assessment, dict[str, Any]]]:
    """The cards to return, each with its trial and assessment, in :func:`screen_order`."""
    chosen: Sequence[tuple[TrialInfo, Assessment]] = sorted(
        ((t, a) for t, a in results if shown(a, show_not_eligible=show_not_eligible)), key=screen_order
    )
    return [(t, a, card(a, t, base_url=base_url, patient_id=patient_id, user_id=user_id)) for t, a in chosen]


def capped_cards(
    results: Iterable[tuple[TrialInfo, Assessment]],
    *,
    max_cards: int,
    base_url: str,
    patient_id: str,
    user_id: str | None = None,
    show_not_eligible: bool = False,
) -> tuple[list[tuple[TrialInfo, Assessment, dict[str, Any]]], list[dict[str, Any]]]:
    """A portfolio's answer: a card for each of the first ``max_cards`` trials in :func:`screen_order`,
    and, when more trials are to be shown, one card naming the rest (:func:`more_trials_card`) — a
    clinician reads three cards, not thirty. The trials' cards come with their trial and assessment; the
    card naming the rest is about no single trial."""
    chosen = sorted(((t, a) for t, a in results if shown(a, show_not_eligible=show_not_eligible)), key=screen_order)
    first, rest = chosen[:max_cards], chosen[max_cards:]
    cards = [(t, a, card(a, t, base_url=base_url, patient_id=patient_id, user_id=user_id)) for t, a in first]
    return cards, [more_trials_card(rest, base_url=base_url)] if rest else []


def _trial_name(trial: TrialInfo) -> str:
    return " ".join((trial.short_name or trial.title or trial.id).split())


def more_trials_card(
    rest: Sequence[tuple[TrialInfo, Assessment]],
    *,
    base_url: str,
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> dict[str, Any]:
    """One info card naming the trials beyond the cap, in screen order, each with its verdict and a link
    to its trial page: "2 more trials may fit: NPC-LDRT, NPC-IMMUNO"."""
    base = base_url.rstrip("/")
    n = len(rest)
    may_fit = all(a.verdict is not Verdict.NOT_ELIGIBLE for _, a in rest)
    head = f"{n} more trial{'s' if n != 1 else ''} {'may fit' if may_fit else 'screened'}: "
    text = head + ", ".join(_trial_name(t) for t, _ in rest)
    if len(text) > SUMMARY_MAX:
        text = text[: SUMMARY_MAX - 1].rstrip(" ,") + "…"
    lines = [
        f"- [{md_escape(_trial_name(t))}]({base}/trials/{t.id}): {VERDICT_LABEL[a.verdict]} — {counts_line(a)}"
        for t, a in rest
    ]
    out = {
        "uuid": new_uuid(),
        "summary": text,
        "indicator": "info",
        "detail": "Also screened, not shown one by one:\n\n" + "\n".join(lines),
        "source": {
            "label": "Trial eligibility screening",
            "url": f"{base}/trials",
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": "trial-eligibility",
                "display": "Clinical trial eligibility",
            },
        },
        "links": [link(f"Trial criteria: {_trial_name(t)}", f"{base}/trials/{t.id}") for t, _ in rest],
    }
    pruned: dict[str, Any] = prune(out)
    return pruned
