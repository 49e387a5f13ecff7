"""The trial page (HTML or JSON) that cards link to, and the demo page."""

from __future__ import annotations

import html
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

STATIC = Path(__file__).parent / "static"


def wants_json(accept: str) -> bool:
    """True when the Accept header prefers JSON to HTML."""
    best_json, best_html = -1.0, -1.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media in {"application/json", "application/fhir+json"} or media.endswith("+json"):
            best_json = max(best_json, q)
        elif media in {"text/html", "application/xhtml+xml"}:
            best_html = max(best_html, q)
    return best_json > 0 and best_json > best_html


def rule_summary(rule: Any) -> str:
    """A compact one-line account of a rule from the trial file (``all of (…; …)``, ``lab: anc >= 1.5``)."""
    data = rule.model_dump(by_alias=True, exclude_defaults=True) if isinstance(rule, BaseModel) else rule
    return _summary(data)


def _summary(data: Any) -> str:
    if isinstance(data, Mapping):
        for combinator, word in (("all", "all of"), ("any", "any of"), ("not", "not")):
            if combinator in data and len(data) == 1:
                inner = data[combinator]
                parts = inner if isinstance(inner, list) else [inner]
                return f"{word} (" + "; ".join(_summary(p) for p in parts) + ")"
        kind = str(data.get("type", "rule"))
        fields = [f"{k}={_value(v)}" for k, v in data.items() if k != "type"]
        return f"{kind}: " + ", ".join(fields) if fields else kind
    return _value(data)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def describe_trial(trial: Any) -> dict[str, Any]:
    """The trial as JSON: title, description, and each criterion's id, kind, text and rule summary."""
    described = trial.describe() if callable(getattr(trial, "describe", None)) else None
    by_id: dict[str, str] = {}
    if isinstance(described, Mapping):
        by_id = {str(k): str(v) for k, v in described.items()}
    elif isinstance(described, list):
        by_id = {
            str(d.get("id")): str(d.get("rule") or d.get("summary") or "") for d in described if isinstance(d, Mapping)
        }
    criteria = []
    for c in getattr(trial, "criteria", []):
        summary = by_id.get(c.id) or (rule_summary(c.rule) if hasattr(c, "rule") else "")
        item: dict[str, Any] = {"id": c.id, "kind": c.kind, "text": c.text, "judgement": bool(c.judgement)}
        if summary:
            item["rule"] = summary
        criteria.append(item)
    out: dict[str, Any] = {
        "id": trial.id,
        "title": trial.title,
        "short_name": trial.short_name,
        "description": trial.description,
        "criteria": criteria,
    }
    for optional in ("url", "source"):
        value = getattr(trial, optional, None)
        if value:
            out[optional] = value
    if isinstance(described, str) and described:
        out["rules"] = described
    return out


_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
h1{font-size:1.5rem;margin-bottom:.2rem} .muted{color:#57606a}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:.4rem;text-align:left;vertical-align:top}
code{font-size:.8rem;color:#57606a}
"""


def trial_html(d: Mapping[str, Any], base_url: str) -> str:
    e = html.escape
    rows = []
    for kind, heading in (("inclusion", "Inclusion criteria"), ("exclusion", "Exclusion criteria")):
        items = [c for c in d["criteria"] if c["kind"] == kind]
        if not items:
            continue
        rows.append(f"<h2>{heading}</h2><table><tr><th>Criterion</th><th>How it is decided</th></tr>")
        for c in items:
            judgement = " <em>(investigator's judgement)</em>" if c.get("judgement") else ""
            rows.append(
                f'<tr id="{e(c["id"])}"><td>{e(c["text"])}{judgement}<br><code>{e(c["id"])}</code></td>'
                f"<td><code>{e(c.get('rule', ''))}</code></td></tr>"
            )
        rows.append("</table>")
    link = f'<p><a href="{e(d["url"])}">Trial registry record</a></p>' if d.get("url") else ""
    source = f'<p class="muted">Source: {e(d["source"])}</p>' if d.get("source") else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(d["short_name"])}'
        f" eligibility criteria</title><style>{_STYLE}</style></head><body>"
        f'<h1>{e(d["title"])}</h1><p class="muted">{e(d["short_name"])} · <code>{e(d["id"])}</code></p>'
        f"<p>{e(d['description'])}</p>{link}{source}{''.join(rows)}"
        f'<p class="muted">Machine-readable: <code>GET {e(base_url)}/trials/{e(d["id"])}</code> with '
        "<code>Accept: application/json</code>.</p></body></html>"
    )


@cache
def demo_html() -> str:
    return (STATIC / "demo.html").read_text(encoding="utf-8")
