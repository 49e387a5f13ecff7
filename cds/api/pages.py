"""The trial page (HTML or JSON) that cards link to, and the demo page."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, assert_never

from pydantic import BaseModel

from cds.engine.formatting import number, unit
from cds.rules.base import LabTest, LeafRule, Window
from cds.rules.kinds import AllRule, AnyRule, NotRule, Rule
from cds.trials import Trial
from cds.valuesets import CodeEntry, ValueSet, ValueSetLibrary, default_library

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


# ---------------------------------------------------------------------------------------------------
# The trial described: each criterion's rule tree in plain language, with the codes and thresholds used.

SYSTEM_NAMES: dict[str, str] = {
    "http://loinc.org": "LOINC",
    "http://snomed.info/sct": "SNOMED CT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://terminology.hl7.org/CodeSystem/icd-o-3": "ICD-O-3",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://www.whocc.no/atc": "ATC",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "http://cancerstaging.org": "AJCC",
    "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration": "HL7 route",
    "urn:trial-cds:name-suffix": "name ending",
}

LONG_LIST = 8  # value sets with more codes than this are collapsed on the page
MAX_ROWS = 250  # codes listed per value set on the page


def _system_name(system: str) -> str:
    return SYSTEM_NAMES.get(system, system)


def _code_text(entry: CodeEntry) -> str:
    """How an entry matches codes, as a coder would write it: ``C11.*``, ``C00–C14``, ``…-suffix``."""
    if entry.match == "prefix":
        return f"{entry.code}*"
    if entry.match == "range":
        return f"{entry.from_}–{entry.to}"
    if entry.match == "regex":
        return f"pattern {entry.code}"
    if entry.match == "suffix":
        return f"*{entry.code}"
    return str(entry.code)


def _names(vs: ValueSet) -> list[str]:
    """The free-text names the value set also matches (drug and disease names in uncoded text)."""
    return [name.text for _pattern, name in getattr(vs, "_names", [])]


def describe_valueset(vs: ValueSet) -> dict[str, Any]:
    codes = []
    for entry in vs.code_list():
        item: dict[str, Any] = {
            "system": entry.system,
            "system_name": _system_name(entry.system),
            "code": _code_text(entry),
            "display": entry.display,
            "match": entry.match,
        }
        if entry.value is not None:
            item["value"] = entry.value
        if not entry.verified:
            item["verified"] = False
        codes.append(item)
    out: dict[str, Any] = {"id": vs.id, "title": vs.title, "count": len(codes), "codes": codes}
    names = _names(vs)
    if names:
        out["names"] = names
    return out


class _Describer:
    """Walks a criterion's rule tree; collects the value sets and lab tests it names."""

    def __init__(self, trial: Trial, library: ValueSetLibrary) -> None:
        self.trial = trial
        self.library = library
        self.valuesets: list[str] = []
        self.tests: list[str] = []

    def title(self, name: str) -> str:
        if name not in self.valuesets:
            self.valuesets.append(name)
        return self.library[name].title if name in self.library else name

    def titles(self, names: list[str]) -> str:
        return " or ".join(self.title(n) for n in names)

    @property
    def measurement_window(self) -> Window:
        return self.trial.measurement_window

    def test(self, name: str) -> LabTest:
        test = self.trial.tests[name]
        if name not in self.tests:
            self.tests.append(name)
        for valueset in test.valuesets:
            self.title(valueset)
        return test

    def node(self, rule: Rule) -> dict[str, Any]:
        if isinstance(rule, AllRule):
            return {"all": [self.node(r) for r in rule.all]}
        if isinstance(rule, AnyRule):
            return {"any": [self.node(r) for r in rule.any]}
        if isinstance(rule, NotRule):
            return {"not": self.node(rule.not_)}
        if isinstance(rule, LeafRule):
            return {"type": rule.type, "text": rule.describe(self)} | rule.logic_fields()
        assert_never(rule)


def describe_test(test_id: str, trial: Trial) -> dict[str, Any]:
    test = trial.tests[test_id]
    shown_unit = test.display_unit if test.display_unit is not None else unit(test.unit)
    out: dict[str, Any] = {
        "id": test_id,
        "label": test.label,
        "unit": shown_unit or "(no unit)",
        "ucum": test.unit,
        "valuesets": list(test.valuesets),
    }
    if test.order:
        out["order"] = test.order
    if test.default_range is not None:
        r = test.default_range
        parts = []
        if r.low is not None or r.high is not None:
            parts.append(f"{number(r.low or 0)}–{number(r.high or 0)}")
        for sex, bounds in (("male", r.male), ("female", r.female)):
            if bounds:
                parts.append(f"{sex} {number(bounds.get('low', 0))}–{number(bounds.get('high', 0))}")
        out["default_range"] = f"{', '.join(parts)} {shown_unit}".strip()
    return out


def describe_trial(trial: Any, library: ValueSetLibrary | None = None) -> dict[str, Any]:
    """The trial as JSON: title, description, and for each criterion its text, the rule tree in plain
    language (``logic``), and the value sets and lab tests it uses, described once at the top level."""
    lib = library or default_library()
    criteria = []
    valueset_ids: list[str] = []
    test_ids: list[str] = []
    for c in trial.criteria:
        walker = _Describer(trial, lib)
        logic = walker.node(c.rule)
        item: dict[str, Any] = {
            "id": c.id,
            "kind": c.kind,
            "text": c.text,
            "judgement": bool(c.judgement),
            "rule": rule_summary(c.rule),
            "logic": logic,
            "valuesets": walker.valuesets,
            "tests": walker.tests,
        }
        criteria.append(item)
        valueset_ids.extend(v for v in walker.valuesets if v not in valueset_ids)
        test_ids.extend(t for t in walker.tests if t not in test_ids)
    out: dict[str, Any] = {
        "id": trial.id,
        "title": trial.title,
        "short_name": trial.short_name,
        "description": trial.description,
        "status": getattr(trial, "status", "open"),
        "measurement_window": trial.measurement_window.describe(),
        "criteria": criteria,
        "tests": {t: describe_test(t, trial) for t in test_ids},
        "valuesets": {v: describe_valueset(lib[v]) for v in valueset_ids if v in lib},
    }
    for optional in ("url", "source"):
        value = getattr(trial, optional, None)
        if value:
            out[optional] = value
    left_out = getattr(trial, "left_out", [])
    if left_out:
        out["left_out"] = [item.model_dump(exclude_none=True) for item in left_out]
    return out


def describe_portfolio(trials: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """Every trial the service screens against, in id order, with its title and the link to its page
    (and, where the trial file says them, its open or closed status and its registry record)."""
    listed = []
    for trial_id in sorted(trials):
        trial = trials[trial_id]
        item: dict[str, Any] = {
            "id": trial.id,
            "title": trial.title,
            "short_name": trial.short_name,
            "criteria": len(trial.criteria),
            "page": f"{base_url}/trials/{trial.id}",
        }
        for optional in ("status", "url"):
            value = getattr(trial, optional, None)
            if value:
                item[optional] = getattr(value, "value", value)
        listed.append(item)
    return {"trials": listed}


# ---------------------------------------------------------------------------------------------------
# HTML.

_STYLE = """
:root{color-scheme:light}
body{font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:62rem;margin:1.5rem auto;
 padding:0 1rem;color:#1b1f24;background:#fff}
a{color:#0550ae} a:focus,summary:focus{outline:3px solid #0969da;outline-offset:2px}
h1{font-size:1.6rem;line-height:1.25;margin:.2rem 0 .4rem} h2{font-size:1.25rem;margin-top:2rem;
 border-bottom:2px solid #d0d7de;padding-bottom:.2rem} h3{font-size:1.05rem;margin:0 0 .3rem}
.muted{color:#57606a} .small{font-size:.875rem}
.skip{position:absolute;left:-999px} .skip:focus{left:1rem;top:1rem;background:#fff;padding:.3rem}
nav>ol{list-style:none;padding:0;font-size:.9rem} nav>ol>li>a{font-weight:600}
nav ol ol{columns:2;column-gap:2.5rem;padding-left:1.6rem;margin:.2rem 0 .6rem} nav li{break-inside:avoid}
.criterion{border:1px solid #d0d7de;border-radius:8px;padding:.8rem 1rem;margin:.9rem 0;break-inside:avoid}
.criterion.exclusion{border-left:6px solid #9a6700} .criterion.inclusion{border-left:6px solid #1a7f37}
.tag{display:inline-block;font-size:.75rem;font-weight:600;border-radius:1rem;padding:0 .55rem;margin-right:.3rem;
 border:1px solid currentColor}
.tag.inclusion{color:#116329} .tag.exclusion{color:#7d4e00} .tag.judgement{color:#6639ba}
.logic{margin:.3rem 0 .5rem;padding-left:1.2rem} .logic ul{padding-left:1.2rem} .logic li{margin:.15rem 0}
.op{font-weight:600;font-size:.85rem;text-transform:uppercase;letter-spacing:.03em;color:#57606a}
table{border-collapse:collapse;width:100%;font-size:.875rem;margin:.3rem 0}
caption{text-align:left;font-weight:600;padding:.2rem 0}
th,td{border-bottom:1px solid #d0d7de;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} code{font:.85em ui-monospace,SFMono-Regular,Menlo,monospace}
details{margin:.35rem 0} summary{cursor:pointer;font-weight:600;font-size:.9rem}
.vs{margin:.5rem 0 .2rem} .vs h4{font-size:.9rem;margin:.2rem 0}
.vs table{table-layout:fixed} .vs th:first-child{width:7.5rem} .vs th:nth-child(2){width:9rem}
.vs th:nth-child(4){width:5rem} .vs td{overflow-wrap:anywhere}
.codes-for{font-size:.9rem;font-weight:600;margin:.6rem 0 .1rem}
@media print{body{max-width:none;margin:0;font-size:11pt} nav,.skip,.noprint{display:none}
 a{color:inherit;text-decoration:none} .criterion{border-color:#999} details>summary{list-style:none}
 h2{break-after:avoid}}
"""

# Printing opens every collapsed code list (a closed <details> prints only its summary).
_PRINT_SCRIPT = (
    "<script>addEventListener('beforeprint',function(){"
    "document.querySelectorAll('details').forEach(function(d){d.open=true})})</script>"
)


def _logic_html(node: Mapping[str, Any], e: Callable[[str], str]) -> str:
    for key, word in (("all", "All of"), ("any", "Any of")):
        if key in node:
            items = "".join(f"<li>{_logic_html(n, e)}</li>" for n in node[key])
            return f'<span class="op">{word}:</span><ul>{items}</ul>'
    if "not" in node:
        return f'<span class="op">Not:</span><ul><li>{_logic_html(node["not"], e)}</li></ul>'
    return e(str(node.get("text", "")))


def _valueset_html(vs: Mapping[str, Any], e: Callable[[str], str]) -> str:
    has_value = any("value" in c for c in vs["codes"])
    head = '<tr><th scope="col">System</th><th scope="col">Code</th><th scope="col">Display</th>'
    head += '<th scope="col">Value</th></tr>' if has_value else "</tr>"
    rows = []
    # Ranges and prefixes first: in a long list they say most; very long lists are cut on the page (the
    # JSON has every code).
    codes = sorted(vs["codes"], key=lambda c: c.get("match") == "exact")
    for c in codes[:MAX_ROWS]:
        flag = ' <span class="muted">(unverified)</span>' if c.get("verified") is False else ""
        value = f"<td>{e(str(c.get('value', '')))}</td>" if has_value else ""
        rows.append(
            f'<tr><td><abbr title="{e(c["system"])}">{e(c["system_name"])}</abbr></td>'
            f"<td><code>{e(c['code'])}</code></td><td>{e(c['display'])}{flag}</td>{value}</tr>"
        )
    if len(codes) > MAX_ROWS:
        rows.append(
            f'<tr><td colspan="{4 if has_value else 3}" class="muted">… and {len(codes) - MAX_ROWS} more codes: '
            f"see the JSON of this page or <code>fhir_mappings/valuesets/{e(vs['id'])}.yaml</code></td></tr>"
        )
    names = vs.get("names") or []
    names_html = (
        f'<p class="small"><strong>Also matched by name in uncoded text:</strong> {e(", ".join(names))}</p>'
        if names
        else ""
    )
    count = vs["count"]
    noun = "code" if count == 1 else "codes"
    table = f'<table><caption class="muted small">{e(vs["id"])}</caption>{head}{"".join(rows)}</table>{names_html}'
    label = f"{e(vs['title'])} — {count} {noun}" + (f", {len(names)} names" if names else "")
    if count > LONG_LIST or len(names) > LONG_LIST:
        return f'<details class="vs"><summary>{label}</summary>{table}</details>'
    return f'<div class="vs"><h4>{label}</h4>{table}</div>'


def _tests_html(tests: list[Mapping[str, Any]], e: Callable[[str], str]) -> str:
    if not tests:
        return ""
    rows = "".join(
        f"<tr><td>{e(t['label'])}</td><td>{e(t['unit'])}</td><td>{e(t.get('default_range', '—'))}</td>"
        f"<td>{e(t.get('order', '—'))}</td></tr>"
        for t in tests
    )
    return (
        '<table><caption>Lab tests</caption><tr><th scope="col">Test</th><th scope="col">Unit used</th>'
        '<th scope="col">Default reference range (when the result has none)</th>'
        f'<th scope="col">What to order</th></tr>{rows}</table>'
    )


def trial_html(d: Mapping[str, Any], base_url: str) -> str:
    e = html.escape
    valuesets: Mapping[str, Any] = d.get("valuesets", {})
    tests: Mapping[str, Any] = d.get("tests", {})
    toc: list[str] = []
    body: list[str] = []
    for kind, heading, when in (
        ("inclusion", "Inclusion criteria", "Met when"),
        ("exclusion", "Exclusion criteria", "Excludes the patient when"),
    ):
        items = [c for c in d["criteria"] if c["kind"] == kind]
        if not items:
            continue
        body.append(f'<h2 id="{kind}">{heading} ({len(items)})</h2>')
        toc.append(f'<li><a href="#{kind}">{heading}</a><ol>')
        for c in items:
            cid = e(c["id"])
            toc.append(f'<li><a href="#{cid}">{e(c["text"])}</a></li>')
            tags = f'<span class="tag {kind}">{kind}</span>'
            if c.get("judgement"):
                tags += '<span class="tag judgement">investigator\'s judgement</span>'
            logic = c.get("logic")
            logic_html = (
                f'<p class="small"><strong>{when}:</strong></p><div class="logic">{_logic_html(logic, e)}</div>'
                if isinstance(logic, Mapping)
                else f"<p><code>{e(c.get('rule', ''))}</code></p>"
            )
            used_tests = [tests[t] for t in c.get("tests", []) if t in tests]
            used_sets = [valuesets[v] for v in c.get("valuesets", []) if v in valuesets]
            codes = ""
            if used_tests or used_sets:
                codes = (
                    '<p class="codes-for">Codes and thresholds used</p>'
                    + _tests_html(used_tests, e)
                    + "".join(_valueset_html(vs, e) for vs in used_sets)
                )
            body.append(
                f'<section class="criterion {kind}" id="{cid}" aria-labelledby="{cid}-h">'
                f'<h3 id="{cid}-h">{e(c["text"])}</h3><p class="small">{tags}<code class="muted">{cid}</code></p>'
                f"{logic_html}{codes}</section>"
            )
        toc.append("</ol></li>")
    left_out: list[Mapping[str, Any]] = d.get("left_out", [])
    if left_out:
        body.append('<h2 id="left-out">Not screened</h2><p class="small">Registry criteria the service does not '
                    "decide from the record; the study team checks them at enrolment.</p><ul>")
        for item in left_out:
            note = f" — {e(item['note'])}" if item.get("note") else ""
            body.append(f"<li>{e(item['text'])} <span class=\"muted small\">({e(item['reason'])}{note})</span></li>")
        body.append("</ul>")
        toc.append('<li><a href="#left-out">Not screened</a></li>')
    link = f'<a href="{e(d["url"])}">Trial registry record</a> · ' if d.get("url") else ""
    source = f" · source: {e(d['source'])}" if d.get("source") else ""
    closed = (
        "<p><strong>Closed:</strong> listed here, not screened (no cards are issued for it).</p>"
        if d.get("status") == "closed"
        else ""
    )
    window = d.get("measurement_window")
    window_text = (
        f"Lab results count when taken within {e(window)} unless a criterion says otherwise. " if window else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{e(d["short_name"])}'
        f' eligibility criteria</title><link rel="icon" href="data:,"><style>{_STYLE}</style></head><body>'
        '<a class="skip" href="#inclusion">Skip to the criteria</a>'
        f'<header><p class="muted small">Clinical trial eligibility criteria · {e(d["short_name"])}</p>'
        f"<h1>{e(d['title'])}</h1><p>{e(d['description'])}</p>{closed}"
        f'<p class="small muted">{link}trial id <code>{e(d["id"])}</code>{source}</p></header>'
        '<main><p class="small">How to read this page: each criterion shows the trial\'s wording, how the '
        "screening service decides it from coded record data, and the codes and thresholds it uses. "
        f"{window_text}Missing data never counts as met: it is listed on the card as <em>to confirm</em>. "
        "ULN and LLN come from the result's own reference range when it has one.</p>"
        f'<nav aria-label="Criteria"><ol>{"".join(toc)}</ol></nav>{"".join(body)}</main>'
        f'<footer class="small muted"><p>Machine-readable: <code>GET {e(base_url)}/trials/{e(d["id"])}</code> '
        f'with <code>Accept: application/json</code>. <a href="{e(base_url)}/trials">All trials</a>.</p></footer>'
        f"{_PRINT_SCRIPT}</body></html>"
    )


def portfolio_html(d: Mapping[str, Any], base_url: str) -> str:
    e = html.escape
    with_status = any("status" in t for t in d["trials"])  # trial files that say whether they are open
    rows = []
    for t in d["trials"]:
        status = f"<td>{e(str(t.get('status', '')))}</td>" if with_status else ""
        registry = f'<a href="{e(t["url"])}">registry record</a>' if t.get("url") else ""
        rows.append(
            f'<tr><td><a href="{e(t["page"])}">{e(t["short_name"])}</a></td><td>{e(t["title"])}</td>'
            f"{status}<td>{t['criteria']}</td><td><code>{e(t['id'])}</code></td><td>{registry}</td></tr>"
        )
    status_head = "<th>Status</th>" if with_status else ""
    n = len(d["trials"])
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><title>Trials screened</title>'
        f'<link rel="icon" href="data:,"><style>{_STYLE}</style></head><body>'
        f"<header><h1>Trials screened</h1><p>This service screens patients against {n} "
        f"trial{'s' if n != 1 else ''}; each page lists a trial's criteria and how they are decided.</p>"
        "</header><main><table><caption>Trials</caption><thead><tr><th>Trial</th><th>Title</th>"
        f"{status_head}<th>Criteria</th><th>Id</th><th>Registry</th></tr></thead><tbody>{''.join(rows)}"
        "</tbody></table></main>"
        f'<footer class="small muted"><p>Machine-readable: <code>GET {e(base_url)}/trials</code> '
        "with <code>Accept: application/json</code>.</p></footer></body></html>"
    )


@cache
def demo_html() -> str:
    return (STATIC / "demo.html").read_text(encoding="utf-8")
