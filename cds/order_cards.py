"""Order impacts → CDS Hooks 2.0 ``warning`` cards, for order-select and order-sign.

One card per draft order and trial it would close to the patient: which trial, which criteria, how long
the patient would stay out, the screening verdict now; a draft referral to the trial team as the one
suggestion ("refer first"), override reasons, and links to the trial page. Pruned of empty values like
every card (:func:`cds.cards.prune`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from cds.assessment import Assessment
from cds.cards import (
    ASSESSMENT_EXTENSION,
    OVERRIDE_REASON_SYSTEM,
    SUMMARY_MAX,
    TOPIC_SYSTEM,
    VERDICT_LABEL,
    TrialInfo,
    clinical_dates,
    clinical_day,
    counts_line,
    link,
    md_escape,
    note_lines,
    prune,
    referral,
)
from cds.orders import CriterionChange, OrderImpact

ORDER_EXTENSION = "org.trial-cds.order-warning"

ORDER_OVERRIDE_REASONS: tuple[tuple[str, str], ...] = (
    ("order-needed-now", "Order clinically needed now"),
    ("trial-not-pursued", "Trial not being pursued for this patient"),
    ("already-screened", "Already screened or enrolled"),
    ("data-incorrect", "Record data incorrect or out of date"),
    ("other", "Other reason"),
)

_LABEL_MAX = 60


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 1)].rstrip() + "…"


def _summary_reason(change: CriterionChange) -> str:
    d = change.duration
    if d.window is None:
        return "permanently"
    span = d.window.describe()
    return f"until {span} after last dose" if d.from_last_dose else f"for {span}"


def summary(impact: OrderImpact) -> str:
    """E.g. "Pembrolizumab would exclude this patient from NPC-LDRT (prior checkpoint inhibitor:
    permanently; +1 more)", fewer than 140 characters."""
    first = impact.changes[0]
    more = f"; +{len(impact.changes) - 1} more" if len(impact.changes) > 1 else ""
    tail = f" ({first.label}: {_summary_reason(first)}{more})"
    trial = " ".join((impact.trial.short_name or impact.trial.id).split())
    middle = f" would exclude this patient from {trial}"
    room = max(SUMMARY_MAX - len(middle) - len(tail), 12)
    text = _shorten(_capitalised(impact.order_label), min(room, _LABEL_MAX)) + middle + tail
    return _shorten(text, SUMMARY_MAX)


def _change_line(change: CriterionChange) -> str:
    c = change.criterion
    what = "Excluded" if c.kind == "exclusion" else "Not met"
    was = {"met": "met", "not_met": "not met", "unknown": "to confirm"}[change.before.value]
    return (
        f"- **{what}: {md_escape(c.text)}** — {change.duration.text()}. "
        f"Now: {was}; with this order: {md_escape(clinical_dates(c.reason))}"
    )


def detail(impact: OrderImpact) -> str:
    trial = impact.trial
    a = impact.baseline
    name = md_escape(trial.short_name or trial.id)
    n = len(impact.changes)
    lines = [
        f"**{md_escape(_capitalised(impact.order_label))}** would make this patient ineligible for "
        f"*{md_escape(trial.title or trial.id)}* ({name}).",
        "",
        f"Screening now: **{VERDICT_LABEL[a.verdict]}** — {counts_line(a)} "
        f"(screened {clinical_day(a.evaluated_at.date())}).",
        "",
        f"#### {'Criterion' if n == 1 else 'Criteria'} this order would meet ({n})",
        *(_change_line(ch) for ch in impact.changes),
        "",
        f"If the trial is still an option, refer the patient to the {name} team before ordering, or "
        "consider an alternative that does not meet these criteria.",
        "",
        *note_lines(a),
        "_A screening aid from coded record data: the trial team confirms eligibility._",
    ]
    return "\n".join(lines)


def _extension(impact: OrderImpact) -> dict[str, Any]:
    return {
        "order": impact.order_ref,
        "trial": impact.trial.id,
        "verdict": impact.baseline.verdict.value,
        "criteria": [
            {
                "id": ch.criterion.id,
                "kind": ch.criterion.kind,
                "statusNow": ch.before.value,
                "statusWithOrder": ch.criterion.status.value,
                "excludedFor": ch.duration.as_json(),
            }
            for ch in impact.changes
        ],
    }


def order_warning_card(
    impact: OrderImpact,
    *,
    base_url: str,
    patient_id: str,
    user_id: str | None = None,
    new_uuid: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> dict[str, Any]:
    trial = impact.trial
    page = f"{base_url.rstrip('/')}/trials/{trial.id}"
    name = trial.short_name or trial.title or trial.id
    links: list[dict[str, Any]] = [link("Trial criteria", page)]
    if trial.url:
        links.append(link("Trial registry record", trial.url))
    out = {
        "uuid": new_uuid(),
        "summary": summary(impact),
        "indicator": "warning",
        "detail": detail(impact),
        "source": {
            "label": f"Trial eligibility screening: {name}",
            "url": page,
            "topic": {"system": TOPIC_SYSTEM, "code": "trial-eligibility", "display": "Clinical trial eligibility"},
        },
        "suggestions": [
            {
                "uuid": new_uuid(),
                "label": f"Refer to the {name} team before ordering",
                "isRecommended": True,
                "actions": [
                    {
                        "type": "create",
                        "description": f"Draft a referral to the {name} trial team before placing this order",
                        "resource": referral(impact.baseline, trial, patient_id=patient_id, user_id=user_id),
                    }
                ],
            }
        ],
        "selectionBehavior": "at-most-one",
        "overrideReasons": [
            {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display}
            for code, display in ORDER_OVERRIDE_REASONS
        ],
        "links": links,
        "extension": {
            ORDER_EXTENSION: _extension(impact),
            ASSESSMENT_EXTENSION: impact.baseline.screen_json(),
        },
    }
    pruned: dict[str, Any] = prune(out)
    return pruned


def order_warning_cards(
    impacts: Iterable[OrderImpact],
    *,
    base_url: str,
    patient_id: str,
    user_id: str | None = None,
) -> list[tuple[TrialInfo, Assessment, dict[str, Any]]]:
    """One warning card per impact, each with its trial and the assessment as it is now."""
    return [
        (i.trial, i.baseline, order_warning_card(i, base_url=base_url, patient_id=patient_id, user_id=user_id))
        for i in impacts
    ]
