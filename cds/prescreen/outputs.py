"""The pre-screen's outputs for a trial coordinator, per trial: ``<trial>.csv`` (the ranked candidates),
``<trial>.jsonl`` (the same order, one `trial-cds screen --format json` line each) and ``<trial>.html`` (counts
per verdict, the criteria that exclude most, the candidates with what to confirm); ``index.html`` links them
and ``summary.json`` holds the counts (no PHI).

They hold PHI (patient ids and what their records say): the folder is made owner-only (0700) and every
file is written owner-only (0600), each atomically (a temporary file renamed), and the report says so."""

from __future__ import annotations

import csv
import html
import io
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

import orjson

from cds.engine import TrialSpec
from cds.prescreen.screening import VERDICT_ORDER, CandidateRow

FILE_MODE = 0o600
DIR_MODE = 0o700
#: Candidates listed in a trial's HTML report (likely eligible and needs review, in rank order); the CSV
#: and JSON lines list every patient.
HTML_CANDIDATES = 1000
PHI_NOTICE = (
    "This report holds protected health information (patient identifiers and what their records say). "
    "Keep it where only the people screening for the trial can read it; do not e-mail or print it."
)
CSV_COLUMNS = (
    "rank",
    "trial",
    "patient",
    "verdict",
    "criteria_met",
    "criteria_ruling_out",
    "criteria_to_confirm",
    "criteria_total",
    "to_confirm",
    "excluded_by",
    "latest_data",
)
_VERDICT_LABEL = {"likely_eligible": "likely eligible", "needs_review": "needs review", "not_eligible": "not eligible"}


@dataclass
class TrialSummary:
    """What a trial's outputs hold, without PHI: counts per verdict and per excluding criterion."""

    trial_id: str
    title: str
    verdicts: dict[str, int] = field(default_factory=dict)
    excluded_by: dict[str, int] = field(default_factory=dict)

    @property
    def patients(self) -> int:
        return sum(self.verdicts.values())


def owner_only_dir(path: Path) -> Path:
    """``path`` made (parents too) and set to owner-only: it will hold PHI."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    path.chmod(DIR_MODE)
    return path


@contextmanager
def owner_only_file(path: Path, mode: str = "w") -> Iterator[IO[str]]:
    """A new file at ``path``, readable by its owner only from its first byte, put in place only when
    complete (a temporary file beside it, renamed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # whatever the umask or an earlier file of the name
        with open(fd, mode, encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_outputs(
    ranked_by_trial: Mapping[str, Iterable[CandidateRow]],
    out_dir: Path,
    *,
    trials: Mapping[str, TrialSpec] | None = None,
    evaluated_at: datetime | None = None,
    html_candidates: int = HTML_CANDIDATES,
) -> list[TrialSummary]:
    """Write each trial's CSV, JSON lines and HTML report, then the index; each trial's rows are read once,
    in the order given (ranked: :func:`cds.prescreen.ranking.rank` or ``merge_ranked``)."""
    owner_only_dir(out_dir)
    trials = trials or {}
    summaries = [
        _write_trial(trial_id, rows, out_dir, trials.get(trial_id), evaluated_at, html_candidates)
        for trial_id, rows in sorted(ranked_by_trial.items())
    ]
    _write_index(summaries, out_dir, evaluated_at)
    return summaries


def _write_trial(
    trial_id: str,
    rows: Iterable[CandidateRow],
    out_dir: Path,
    trial: TrialSpec | None,
    evaluated_at: datetime | None,
    html_candidates: int,
) -> TrialSummary:
    summary = TrialSummary(trial_id, trial.title if trial else trial_id, {v: 0 for v in VERDICT_ORDER})
    excluded: Counter[str] = Counter()
    listed: list[tuple[int, CandidateRow]] = []
    with (
        owner_only_file(out_dir / f"{trial_id}.csv") as csv_file,
        owner_only_file(out_dir / f"{trial_id}.jsonl") as jsonl_file,
    ):
        writer = csv.writer(csv_file, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for rank, row in enumerate(rows, start=1):
            writer.writerow(
                (
                    rank,
                    row.trial_id,
                    _cell(row.patient_id),
                    row.verdict,
                    row.criteria_met,
                    row.criteria_ruling_out,
                    row.criteria_unknown,
                    row.criteria_total,
                    ";".join(row.to_confirm),
                    ";".join(row.excluded_by),
                    row.latest_data,
                )
            )
            jsonl_file.write(row.screen_json + "\n")
            summary.verdicts[row.verdict] = summary.verdicts.get(row.verdict, 0) + 1
            excluded.update(row.excluded_by)
            if row.verdict != "not_eligible" and len(listed) < html_candidates:
                listed.append((rank, row))
    summary.excluded_by = dict(sorted(excluded.items(), key=lambda kv: (-kv[1], kv[0])))
    with owner_only_file(out_dir / f"{trial_id}.html") as report:
        report.write(_trial_html(summary, listed, trial, evaluated_at))
    return summary


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "@", "\t", "\r") else text


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
.phi{border:2px solid #b00;background:#fee;padding:.6em 1em;font-weight:600}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.n{text-align:right}.bar{background:#c44;height:.9em;display:inline-block}
.likely_eligible{color:#060}.needs_review{color:#a60}.not_eligible{color:#a00}small{color:#666}
"""


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f'<p class="phi">{html.escape(PHI_NOTICE)}</p>\n{body}</body></html>\n'
    )


def _when(evaluated_at: datetime | None) -> str:
    return f"<p>Evaluated on {html.escape(evaluated_at.isoformat())}.</p>\n" if evaluated_at else ""


def _trial_html(
    summary: TrialSummary,
    listed: list[tuple[int, CandidateRow]],
    trial: TrialSpec | None,
    evaluated_at: datetime | None,
) -> str:
    e = html.escape
    texts = {c.id: c.text for c in trial.criteria} if trial else {}
    out = [f"<h1>{e(summary.trial_id)} — {e(summary.title)}</h1>\n", _when(evaluated_at)]
    out.append("<h2>Patients by verdict</h2>\n<table><tr><th>Verdict</th><th>Patients</th></tr>\n")
    for verdict, n in summary.verdicts.items():
        label = e(_VERDICT_LABEL.get(verdict, verdict))
        out.append(f'<tr><td class="{e(verdict)}">{label}</td><td class="n">{n}</td></tr>\n')
    out.append(f'<tr><th>all</th><td class="n">{summary.patients}</td></tr></table>\n')
    out.append(
        "<h2>Criteria that exclude most</h2>\n<p><small>Patients each criterion rules out (an inclusion not "
        "met, an exclusion that applies); a patient ruled out by several criteria counts under each.</small></p>\n"
    )
    if summary.excluded_by:
        top = max(summary.excluded_by.values())
        out.append("<table><tr><th>Criterion</th><th>Text</th><th>Patients</th><th></th></tr>\n")
        for cid, n in summary.excluded_by.items():
            width = max(1, round(20 * n / top))
            out.append(
                f'<tr><td>{e(cid)}</td><td>{e(texts.get(cid, ""))}</td><td class="n">{n}</td>'
                f'<td><span class="bar" style="width:{width}em"></span></td></tr>\n'
            )
        out.append("</table>\n")
    else:
        out.append("<p>No criterion rules a patient out.</p>\n")
    candidates = summary.verdicts.get("likely_eligible", 0) + summary.verdicts.get("needs_review", 0)
    shown = ""
    if len(listed) < candidates:
        shown = f" (the first {len(listed)}; every patient is in {e(summary.trial_id)}.csv)"
    out.append(f"<h2>Candidates{shown}</h2>\n")
    if listed:
        out.append(
            "<table><tr><th>Rank</th><th>Patient</th><th>Verdict</th><th>To confirm</th>"
            "<th>Latest deciding data</th></tr>\n"
        )
        for rank, row in listed:
            confirm = "<br>".join(f"{e(cid)}{': ' + e(texts[cid]) if cid in texts else ''}" for cid in row.to_confirm)
            out.append(
                f'<tr><td class="n">{rank}</td><td>{e(row.patient_id)}</td>'
                f'<td class="{e(row.verdict)}">{e(_VERDICT_LABEL.get(row.verdict, row.verdict))}</td>'
                f"<td>{confirm or '—'}</td><td>{e(row.latest_data) or '—'}</td></tr>\n"
            )
        out.append("</table>\n")
    else:
        out.append("<p>No patient is likely eligible or needs review.</p>\n")
    return _page(f"Pre-screen: {summary.trial_id}", "".join(out))


def _write_index(summaries: list[TrialSummary], out_dir: Path, evaluated_at: datetime | None) -> None:
    e = html.escape
    rows = io.StringIO()
    rows.write("<table><tr><th>Trial</th><th>Title</th>")
    rows.write("".join(f"<th>{e(_VERDICT_LABEL[v])}</th>" for v in VERDICT_ORDER))
    rows.write("<th>Files</th></tr>\n")
    for s in summaries:
        tid = e(s.trial_id)
        rows.write(f'<tr><td><a href="{tid}.html">{tid}</a></td><td>{e(s.title)}</td>')
        rows.write("".join(f'<td class="n">{s.verdicts.get(v, 0)}</td>' for v in VERDICT_ORDER))
        rows.write(f'<td><a href="{tid}.csv">CSV</a> · <a href="{tid}.jsonl">JSON lines</a></td></tr>\n')
    rows.write("</table>\n")
    with owner_only_file(out_dir / "index.html") as index:
        index.write(_page("Pre-screen", f"<h1>Pre-screen</h1>\n{_when(evaluated_at)}{rows.getvalue()}"))
    counts = {
        "evaluated_at": evaluated_at.isoformat() if evaluated_at else None,
        "trials": [
            {"trial": s.trial_id, "title": s.title, "verdicts": s.verdicts, "excluded_by": s.excluded_by}
            for s in summaries
        ],
    }
    with owner_only_file(out_dir / "summary.json") as summary_file:
        summary_file.write(orjson.dumps(counts, option=orjson.OPT_INDENT_2).decode() + "\n")
