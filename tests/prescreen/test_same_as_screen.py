"""A pre-screen gives every patient the verdict and criteria `trial-cds screen --format json` gives the
patient's Bundle: from a folder of Bundles and from the same data exported as NDJSON."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from prescreen_support import NOW, PATIENT_BUNDLES, exported, write_ndjson
from typer.testing import CliRunner

from cds.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def screened() -> dict[tuple[str, str], bytes]:
    """`trial-cds screen --format json` on each Bundle, by patient and trial (every open trial)."""
    result = runner.invoke(app, ["screen", *map(str, PATIENT_BUNDLES), "--now", NOW, "--format", "json"])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    trials = {line["trial"] for line in lines}
    assert len(trials) > 1 and len(lines) == len(PATIENT_BUNDLES) * len(trials)
    return {(line["patient"], line["trial"]): orjson.dumps(line) for line in lines}


def _prescreened(out: Path) -> dict[tuple[str, str], bytes]:
    lines = [line for path in sorted(out.glob("*.jsonl")) for line in path.read_bytes().splitlines()]
    return {(orjson.loads(line)["patient"], orjson.loads(line)["trial"]): line for line in lines}


def test_prescreen_of_the_bundles_gives_each_patient_the_screen_answer(
    screened: dict[tuple[str, str], bytes], tmp_path: Path
) -> None:
    bundles = str(PATIENT_BUNDLES[0].parent)
    result = runner.invoke(
        app, ["prescreen", "--bundles", bundles, "--out", str(tmp_path / "out"), "--now", NOW, "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert _prescreened(tmp_path / "out") == screened


def test_prescreen_of_the_same_data_as_ndjson_gives_each_patient_the_screen_answer(
    screened: dict[tuple[str, str], bytes], tmp_path: Path
) -> None:
    resources = [r for path in PATIENT_BUNDLES for r in exported(orjson.loads(path.read_bytes()))]
    folder = write_ndjson(tmp_path / "export", resources)
    result = runner.invoke(
        app, ["prescreen", "--ndjson", str(folder), "--out", str(tmp_path / "out"), "--now", NOW, "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    assert _prescreened(tmp_path / "out") == screened


def test_the_outputs_are_the_same_bytes_whatever_the_number_of_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cds.prescreen import spill

    # Small chunks and many partitions: files cut at line ends, spilled by different workers, in any order.
    monkeypatch.setattr(spill, "CHUNK_BYTES", 20_000)
    monkeypatch.setattr(spill, "MIN_PARTITION_INPUT_BYTES", 10_000)
    resources = [r for path in PATIENT_BUNDLES for r in exported(orjson.loads(path.read_bytes()))]
    folder = write_ndjson(tmp_path / "export", resources)
    outputs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"out-{workers}"
        args = ["prescreen", "--ndjson", str(folder), "--out", str(out), "--now", NOW, "--workers", workers]
        result = runner.invoke(app, [*args, "--work-dir", str(tmp_path / f"work-{workers}")])
        assert result.exit_code == 0, result.output
        outputs[workers] = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
    assert len(list((tmp_path / "work-2").glob("spill-*/chunk-*"))) > 2
    assert outputs["1"] == outputs["2"]
