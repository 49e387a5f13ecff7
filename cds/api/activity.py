"""The coordinator's view of a trial's cards: GET /trials/{trial_id}/activity (HTML, or JSON on request).

Per day (UTC): cards shown, cards accepted, cards overridden and the override reasons. No PHI: the store
keeps card uuids, verdicts, outcomes and reason codes only, and this page shows counts. The data is
internal, so when client authentication is on (``TRIAL_CDS_AUTH=jwt``) the router is mounted behind the
same dependency as the CDS endpoints (see ``cds.api.app``); ``trial-cds feedback`` reads the same numbers
from the database directly.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from cds.api import pages
from cds.api.errors import ApiError
from cds.api.routes import now, state
from cds.cards import clinical_day
from cds.store import DailyFeedback

activity_router = APIRouter()

DEFAULT_DAYS = 30
MAX_DAYS = 366


def activity(trial_id: str, days: Sequence[DailyFeedback], since: str, until: str) -> dict[str, Any]:
    """The activity as JSON: one object per day with something to report, totals and reasons overall."""
    reasons: dict[str, int] = {}
    for d in days:
        for reason, n in d.override_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    return {
        "trial_id": trial_id,
        "since": since,
        "until": until,
        "days": [{k: v for k, v in d.as_dict().items() if k != "trial_id"} for d in days],
        "totals": {
            "cards_shown": sum(d.cards_shown for d in days),
            "accepted": sum(d.accepted for d in days),
            "overridden": sum(d.overridden for d in days),
            "override_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        },
    }


_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:56rem;margin:1.5rem auto;
 padding:0 1rem;color:#1b1f24}
h1{font-size:1.5rem;margin:.2rem 0} .muted{color:#57606a} a{color:#0550ae}
table{border-collapse:collapse;width:100%;margin:.8rem 0;font-size:.95rem}
caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums} th{background:#f6f8fa}
tfoot td{font-weight:600;border-top:2px solid #8c959f}
ul{margin:0;padding-left:1.1rem}
@media print{body{max-width:none;margin:0}}
"""


def _reasons_html(reasons: Mapping[str, int]) -> str:
    if not reasons:
        return ""
    return "<ul>" + "".join(f"<li>{html.escape(r)}: {n}</li>" for r, n in reasons.items()) + "</ul>"


def activity_html(data: Mapping[str, Any], title: str, short_name: str) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(clinical_day(d['day']))}</td><td class='n'>{d['cards_shown']}</td>"
        f"<td class='n'>{d['accepted']}</td>"
        f"<td class='n'>{d['overridden']}</td><td>{_reasons_html(d['override_reasons'])}</td></tr>"
        for d in reversed(data["days"])
    )
    totals = data["totals"]
    if not rows:
        rows = '<tr><td colspan="5" class="muted">No cards shown and no feedback in this period.</td></tr>'
    reasons = totals["override_reasons"]
    reasons_table = ""
    if reasons:
        reason_rows = "".join(f"<tr><td>{e(r)}</td><td class='n'>{n}</td></tr>" for r, n in reasons.items())
        reasons_table = (
            '<table><caption>Override reasons, whole period</caption><tr><th scope="col">Reason</th>'
            f'<th scope="col" class="n">Cards</th></tr>{reason_rows}</table>'
        )
    trial_id = e(data["trial_id"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{e(short_name)} card activity</title><link rel="icon" href="data:,">'
        f"<style>{_STYLE}</style></head><body>"
        f'<p class="muted">Trial coordinator view · <a href="../{trial_id}">{e(short_name)} criteria</a></p>'
        f"<h1>Card activity: {e(short_name)}</h1><p>{e(title)}</p>"
        f'<p class="muted">{e(clinical_day(data["since"]))} to {e(clinical_day(data["until"]))} (UTC days). '
        "Counts only: no patient data. "
        "Accepted and overridden count cards, on the day the clinician acted.</p>"
        '<table><caption>Per day, most recent first</caption><thead><tr><th scope="col">Day</th>'
        '<th scope="col" class="n">Cards shown</th><th scope="col" class="n">Accepted</th>'
        '<th scope="col" class="n">Overridden</th><th scope="col">Override reasons</th></tr></thead>'
        f"<tbody>{rows}</tbody><tfoot><tr><td>Total</td><td class='n'>{totals['cards_shown']}</td>"
        f"<td class='n'>{totals['accepted']}</td><td class='n'>{totals['overridden']}</td><td></td></tr></tfoot>"
        f"</table>{reasons_table}"
        f'<p class="muted">JSON: <code>GET /trials/{trial_id}/activity?days=N</code> with '
        "<code>Accept: application/json</code>; on the server: <code>trial-cds feedback</code>.</p>"
        "</body></html>"
    )


@activity_router.get("/trials/{trial_id}/activity", response_model=None)
async def trial_activity(
    trial_id: str,
    request: Request,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS, description="How many days back, today included")] = DEFAULT_DAYS,
) -> Response:
    st = state(request)
    trial = st.trials.get(trial_id)
    if trial is None:
        raise ApiError.single(404, "not-found", "No trial with this id on this server")
    today = now(request).date()
    since = today - timedelta(days=days - 1)
    rows = await run_in_threadpool(lambda: st.store.daily(trial_id, since=since))
    data = activity(trial_id, rows, since.isoformat(), today.isoformat())
    if pages.wants_json(request.headers.get("accept", "")):
        return JSONResponse(data)
    return HTMLResponse(activity_html(data, trial.title, trial.short_name))
