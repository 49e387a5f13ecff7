"""A re-run with the same inputs, trials and evaluation date spills nothing and screens only the
partitions without a done marker; another evaluation date is another run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import fhir_builders as fb
import orjson
import pytest
from prescreen_support import PATIENT_BUNDLES, write_ndjson

from cds.portfolio import load_portfolio
from cds.prescreen import local
from cds.prescreen.local import Screening
from cds.prescreen.run import Inputs, Outcome, prescreen

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
TRIAL = "npc-liver-mets-ldrt"


def _run(out: Path, now: datetime = NOW) -> Outcome:
    trials = load_portfolio().trials
    return prescreen(
        Inputs(PATIENT_BUNDLES[0].parent, bundles=True),
        out,
        Screening(None, (TRIAL,), now),
        {TRIAL: trials[TRIAL]},
        workers=1,
    )


def test_a_re_run_skips_every_finished_partition_and_writes_the_same_files(tmp_path: Path) -> None:
    first = _run(tmp_path)
    csv = (tmp_path / f"{TRIAL}.csv").read_bytes()
    again = _run(tmp_path)
    assert first.skipped == 0
    assert again.skipped == again.partitions == first.partitions
    assert (tmp_path / f"{TRIAL}.csv").read_bytes() == csv


def test_a_partition_without_its_done_marker_is_screened_again(tmp_path: Path) -> None:
    first = _run(tmp_path)
    [marker, *_] = sorted((tmp_path / ".work").glob("*-results-*/part-*.done"))
    patients = orjson.loads(marker.read_bytes())["patients"]
    marker.unlink()  # as a run interrupted while screening it leaves it
    again = _run(tmp_path)
    assert again.skipped == first.partitions - 1
    assert again.patients == patients


def test_another_evaluation_date_screens_every_partition_again(tmp_path: Path) -> None:
    first = _run(tmp_path)
    later = _run(tmp_path, datetime(2027, 1, 1, tzinfo=UTC))
    assert later.skipped == 0
    assert later.partitions == first.partitions


def test_many_partitions_are_merged_in_rounds_into_the_same_ranking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(tmp_path)
    expected = (tmp_path / f"{TRIAL}.csv").read_bytes()
    [results] = (tmp_path / ".work").glob("*-results-*")
    assert len(list((results / TRIAL).glob("part-*.jsonl"))) > 4
    monkeypatch.setattr(local, "MERGE_FANIN", 2)
    ranked = list(local.ranked_results(results / TRIAL))
    assert [r.patient_id for r in ranked] == [line.split(",")[2] for line in expected.decode().splitlines()[1:]]
    assert not list((results / TRIAL).glob("merge-*")), "the intermediate files are removed"


def test_resources_of_a_patient_the_data_does_not_hold_are_counted_not_screened(tmp_path: Path) -> None:
    export = write_ndjson(
        tmp_path / "export",
        [fb.patient(pid="p-1"), fb.vital_sign("8867-4", "Heart rate", 70, "/min", "2026-10-01", pid="p-2")],
    )
    trial = load_portfolio().trials[TRIAL]
    screening = Screening(None, (TRIAL,), NOW)
    outcome = prescreen(Inputs(export, bundles=False), tmp_path / "out", screening, {TRIAL: trial}, workers=1)
    assert outcome.patients == 1
    [summary] = outcome.summaries
    assert summary.patients == 1
    missing = sum(orjson.loads(m.read_bytes())["without_patient"] for m in (tmp_path / "out").rglob("*.done"))
    assert missing == 1
