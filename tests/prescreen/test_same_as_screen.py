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
def screened() -> dict[str, bytes]:
    """`trial-cds screen --format json` on each Bundle, by patient."""
    result = runner.invoke(app, ["screen", *map(str, PATIENT_BUNDLES), "--now", NOW, "--format", "json"])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(PATIENT_BUNDLES)
    return {line["patient"]: orjson.dumps(line) for line in lines}


def _prescreened(out: Path) -> dict[str, bytes]:
    lines = (out / "npc-liver-mets-ldrt.jsonl").read_bytes().splitlines()
    return {orjson.loads(line)["patient"]: line for line in lines}


def test_prescreen_of_the_bundles_gives_each_patient_the_screen_answer(
    screened: dict[str, bytes], tmp_path: Path
) -> None:
    bundles = str(PATIENT_BUNDLES[0].parent)
    result = runner.invoke(
        app, ["prescreen", "--bundles", bundles, "--out", str(tmp_path / "out"), "--now", NOW, "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert _prescreened(tmp_path / "out") == screened


def test_prescreen_of_the_same_data_as_ndjson_gives_each_patient_the_screen_answer(
    screened: dict[str, bytes], tmp_path: Path
) -> None:
    resources = [r for path in PATIENT_BUNDLES for r in exported(orjson.loads(path.read_bytes()))]
    folder = write_ndjson(tmp_path / "export", resources)
    result = runner.invoke(
        app, ["prescreen", "--ndjson", str(folder), "--out", str(tmp_path / "out"), "--now", NOW, "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    assert _prescreened(tmp_path / "out") == screened
