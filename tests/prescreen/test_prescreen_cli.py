"""`trial-cds prescreen` on the command line: one source, known open trials, a clear error otherwise;
counts on stderr, never a patient id."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest
from prescreen_support import NOW, PATIENT_BUNDLES
from typer.testing import CliRunner

from cds.cli import app

runner = CliRunner()
BUNDLES = str(PATIENT_BUNDLES[0].parent)


def test_one_source_is_required(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prescreen", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--ndjson DIR or --bundles DIR" in result.output


def test_an_unknown_trial_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prescreen", "--bundles", BUNDLES, "--out", str(tmp_path), "--trial", "nope"])
    assert result.exit_code == 2
    assert "unknown trial 'nope'" in result.output


def test_a_folder_without_inputs_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prescreen", "--ndjson", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "holds no *.ndjson or *.ndjson.gz file" in result.output


def test_the_log_holds_counts_and_no_patient_id(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["prescreen", "--bundles", BUNDLES, "--out", str(tmp_path), "--now", NOW, "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "npc-liver-mets-ldrt: 74 patients" in result.output
    assert "protected health information" in result.output
    assert "Patient/" not in result.output and "npc-01" not in result.output


@pytest.mark.skipif(find_spec("pyspark") is not None, reason="PySpark is installed here (the spark extra)")
def test_the_spark_engine_without_pyspark_says_how_to_install_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["prescreen", "--bundles", BUNDLES, "--out", str(tmp_path), "--engine", "spark"])
    assert result.exit_code == 2
    assert "pip install" in result.output and "trial-cds[spark]" in result.output
