"""The coordinator's files: ranked CSV, JSON lines in the `screen` format, an HTML report with counts,
candidates and the criteria that exclude most — owner-only, and saying that they hold PHI."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

from prescreen_support import row

from cds.prescreen.outputs import PHI_NOTICE, write_outputs
from cds.prescreen.ranking import by_trial, rank

ROWS = rank(
    [
        row("p-3", "not_eligible"),
        row("p-1", "likely_eligible", confirm=0, latest="2026-10-01"),
        row("p-2", "needs_review", confirm=2),
        row("p-4", "not_eligible"),
    ]
)


def _written(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    write_outputs(by_trial(ROWS), out)
    return out


def test_the_folder_and_every_file_are_owner_only(tmp_path: Path) -> None:
    out = _written(tmp_path)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    files = list(out.iterdir())
    assert {p.name for p in files} == {"t1.csv", "t1.jsonl", "t1.html", "index.html", "summary.json"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_an_existing_folder_is_made_owner_only(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir(mode=0o755)
    out = _written(tmp_path)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


def test_the_csv_lists_every_patient_ranked_with_what_to_confirm(tmp_path: Path) -> None:
    with (_written(tmp_path) / "t1.csv").open(newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [(r["rank"], r["patient"], r["verdict"]) for r in lines] == [
        ("1", "p-1", "likely_eligible"),
        ("2", "p-2", "needs_review"),
        ("3", "p-3", "not_eligible"),
        ("4", "p-4", "not_eligible"),
    ]
    assert lines[1]["to_confirm"] == "c0;c1"
    assert lines[2]["excluded_by"] == "c9"
    assert lines[0]["latest_data"] == "2026-10-01"


def test_the_json_lines_are_the_screen_lines_in_rank_order(tmp_path: Path) -> None:
    lines = (_written(tmp_path) / "t1.jsonl").read_text().splitlines()
    assert lines == [r.screen_json for r in ROWS]


def test_the_report_says_it_holds_phi_and_counts_verdicts_and_exclusions(tmp_path: Path) -> None:
    report = (_written(tmp_path) / "t1.html").read_text()
    assert PHI_NOTICE in report
    assert '<td class="likely_eligible">likely eligible</td><td class="n">1</td>' in report
    assert '<td class="not_eligible">not eligible</td><td class="n">2</td>' in report
    assert '<tr><td>c9</td><td></td><td class="n">2</td>' in report  # the histogram of excluding criteria
    assert "p-1" in report and "p-2" in report
    assert "p-3" not in report  # the report lists candidates; the CSV lists everyone


def test_the_index_links_each_trial_s_files(tmp_path: Path) -> None:
    index = (_written(tmp_path) / "index.html").read_text()
    assert PHI_NOTICE in index
    for name in ("t1.html", "t1.csv", "t1.jsonl"):
        assert f'href="{name}"' in index


def test_text_from_the_data_is_escaped_in_the_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_outputs({"t1": [row("<script>", "likely_eligible", confirm=0)]}, out)
    assert "<script>" not in (out / "t1.html").read_text()
