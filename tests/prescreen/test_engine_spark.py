"""`trial-cds prescreen --engine spark` writes byte for byte what the local engine writes on the same input:
from NDJSON and from Bundles, on the hand-built patients and on Synthea's; Spark groups a patient whose
resources are spread over several files, and the screening reads the Medications their requests name.

One local[2] Spark session serves every test here (tests/spark_support.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fhir_builders as fb
import orjson
import pytest
from prescreen_support import NOW, PATIENT_BUNDLES, exported, row, write_ndjson
from spark_support import local_spark_session, require_spark
from typer.testing import CliRunner

from cds.cli import app
from cds.portfolio import default_trials
from cds.valuesets import MAPPINGS_DIR

require_spark()

from pyspark.sql import SparkSession  # noqa: E402  (after the check: PySpark is an optional extra)

from cds.prescreen.engine_spark import TrialSource, TrialStreams, run_spark  # noqa: E402
from cds.prescreen.screening import CandidateRow, screen_patient  # noqa: E402
from cds.prescreen.shared import SharedResources  # noqa: E402

runner = CliRunner()
TRIAL = "npc-liver-mets-ldrt"
WHEN = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SYNTHEA_ENV = "TRIAL_CDS_SYNTHEA_POPULATION"
SECOND_TRIAL = Path(__file__).resolve().parents[1] / "engine" / "data" / "trials" / "second-trial.yaml"


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = local_spark_session()
    yield session
    session.stop()


def prescreen(out: Path, *args: str) -> Path:
    result = runner.invoke(app, ["prescreen", "--out", str(out), "--now", NOW, *args])
    assert result.exit_code == 0, result.output
    return out


def outputs(folder: Path) -> dict[str, bytes]:
    """Every output file by name (not the local engine's work folder)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def assert_same_outputs(local: Path, spark: Path) -> None:
    written, expected = outputs(spark), outputs(local)
    assert sorted(written) == sorted(expected)
    assert {name for name in written if name.endswith((".csv", ".jsonl", ".html"))}, "no output to compare"
    for name, content in expected.items():
        assert written[name] == content, f"{name} differs between the engines"


def both_engines(tmp_path: Path, *source: str, spark_source: Sequence[str] = ()) -> tuple[Path, Path]:
    local = prescreen(tmp_path / "local", *source, "--workers", "1")
    on_spark = prescreen(tmp_path / "spark", *(spark_source or source), "--engine", "spark")
    return local, on_spark


def test_the_fixture_patients_as_ndjson_give_the_same_outputs_on_both_engines(
    spark: SparkSession, tmp_path: Path
) -> None:
    resources = [r for path in PATIENT_BUNDLES for r in exported(orjson.loads(path.read_bytes()))]
    export = write_ndjson(tmp_path / "export", resources)
    # Spark given the folder as a URL, as it is given hdfs:// or s3a:// ones on a cluster.
    local, on_spark = both_engines(tmp_path, "--ndjson", str(export), spark_source=("--ndjson", export.as_uri()))
    assert_same_outputs(local, on_spark)
    assert (on_spark / f"{TRIAL}.csv").read_text().count("\n") == len(PATIENT_BUNDLES) + 1  # a header, a row each


def test_the_fixture_bundles_give_the_same_outputs_on_both_engines(spark: SparkSession, tmp_path: Path) -> None:
    local, on_spark = both_engines(tmp_path, "--bundles", str(PATIENT_BUNDLES[0].parent))
    assert_same_outputs(local, on_spark)


# ---------------------------------------------------------------------------------------------------
# Synthea's patients (scripts/synthea-population), a few of them: Synthea-shaped records, urn:uuid references
# in the Bundles, and two trials from a trials folder (the executors load it from the broadcast text).


@pytest.fixture(scope="module")
def synthea_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # As tests/population reads it (synthea_population.py): scripts/test.sh names the population's folder.
    population = os.environ.get(SYNTHEA_ENV)
    if not population:
        reason = f"no Synthea population: {SYNTHEA_ENV} is not set (scripts/test.sh sets it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    bundles = sorted((Path(population) / "fhir").glob("*.json"))
    if not bundles:
        pytest.fail(f"{SYNTHEA_ENV}: {population}/fhir holds no Bundle")
    folder = tmp_path_factory.mktemp("synthea-bundles")
    for path in bundles[::45]:  # six patients across the population
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trials")
    for path in (MAPPINGS_DIR / "trials").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    shutil.copy(SECOND_TRIAL, folder / SECOND_TRIAL.name)
    return folder


@pytest.mark.population
def test_synthea_patients_as_ndjson_give_the_same_outputs_on_both_engines(
    spark: SparkSession, synthea_bundles: Path, two_trials: Path, tmp_path: Path
) -> None:
    resources = [r for path in sorted(synthea_bundles.iterdir()) for r in exported(orjson.loads(path.read_bytes()))]
    export = write_ndjson(tmp_path / "export", resources)
    local, on_spark = both_engines(tmp_path, "--ndjson", str(export), "--trials-dir", str(two_trials))
    assert_same_outputs(local, on_spark)
    assert {"npc-liver-mets-ldrt.csv", "second-trial.csv"} <= set(outputs(on_spark))


@pytest.mark.population
def test_synthea_bundles_give_the_same_outputs_on_both_engines(
    spark: SparkSession, synthea_bundles: Path, two_trials: Path, tmp_path: Path
) -> None:
    local, on_spark = both_engines(tmp_path, "--bundles", str(synthea_bundles), "--trials-dir", str(two_trials))
    assert_same_outputs(local, on_spark)


# ---------------------------------------------------------------------------------------------------
# Grouping and shared resources, on the engine itself.


def screen_on_spark(spark: SparkSession, folder: Path) -> list[CandidateRow]:
    rows = run_spark(spark, [folder], kind="ndjson", trials=TrialSource.of_folder(None, (TRIAL,)), now=WHEN)
    return list(rows)


def write_lines(path: Path, resources: Sequence[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))


def test_a_patient_spread_over_several_files_is_screened_on_all_of_its_resources(
    spark: SparkSession, tmp_path: Path
) -> None:
    # Patient 13 (liver metastases four months after radiotherapy) and patient 01, their Observations
    # split over two files of one type and interleaved, as an export split by size writes them, their
    # Conditions in a file whose name says no type.
    first, second = (exported(orjson.loads(p.read_bytes())) for p in (PATIENT_BUNDLES[12], PATIENT_BUNDLES[0]))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for resource in [*first, *second]:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    export = tmp_path / "export"
    export.mkdir()
    observations = by_type.pop("Observation")
    write_lines(export / "Observation-1.ndjson", observations[::2])
    write_lines(export / "Observation-2.ndjson", observations[1::2])
    # A file not named after its type is read whole, whatever it holds.
    write_lines(export / "conditions-and-more.ndjson", by_type.pop("Condition"))
    for rtype, resources in by_type.items():
        write_lines(export / f"{rtype}.ndjson", resources)

    rows = screen_on_spark(spark, export)

    assert sorted(r.patient_id for r in rows) == sorted([first[0]["id"], second[0]["id"]])
    for patient in (first, second):
        pid = patient[0]["id"]
        # The patient's resources in the order the files give them: by file name, then line.
        in_input_order = [
            r
            for name in sorted(p.name for p in export.iterdir())
            for r in map(orjson.loads, (export / name).read_bytes().splitlines())
            if r is patient[0] or r.get("id") in {x["id"] for x in patient}
        ]
        assert len(in_input_order) == len(patient)
        expected = screen_patient(in_input_order, SharedResources(), [default_trials()[TRIAL]], None, WHEN)
        assert [r for r in rows if r.patient_id == pid] == expected


def test_resources_whose_patient_the_jvm_cannot_read_are_grouped_by_the_key_function(
    spark: SparkSession, tmp_path: Path
) -> None:
    # A reference that is a number before the one naming the patient: the key function skips it, the JVM
    # reads it as the text "5" and leaves the line to Python; the run groups again, with the same outcome.
    resources = [r for path in PATIENT_BUNDLES[:2] for r in exported(orjson.loads(path.read_bytes()))]
    odd = next(r for r in resources if r["resourceType"] == "Condition")
    odd["patient"], odd["subject"] = odd["subject"], {"reference": 5}
    export = write_ndjson(tmp_path / "export", resources)
    local, on_spark = both_engines(tmp_path, "--ndjson", str(export))
    assert_same_outputs(local, on_spark)


def pembrolizumab_by_reference() -> tuple[dict[str, Any], dict[str, Any]]:
    """A MedicationRequest naming a Medication resource (pembrolizumab, an immune checkpoint inhibitor)
    instead of carrying the code, as EHR exports often do, and that Medication."""
    medication: dict[str, Any] = {
        "resourceType": "Medication",
        "id": "med-pembrolizumab",
        "code": fb.codeable([(fb.RXNORM, "1547545", "pembrolizumab"), (fb.ATC, "L01FF02", "pembrolizumab")]),
    }
    request = fb.med_request("pembrolizumab", status="completed", authored="2024-09-02")
    del request["medicationCodeableConcept"]
    request["medicationReference"] = {"reference": "Medication/med-pembrolizumab"}
    return request, medication


def test_a_medication_a_request_names_is_read_by_the_screening(spark: SparkSession, tmp_path: Path) -> None:
    patient = exported(orjson.loads(PATIENT_BUNDLES[0].read_bytes()))  # likely eligible as it is
    request, medication = pembrolizumab_by_reference()
    request["subject"] = {"reference": f"Patient/{patient[0]['id']}"}
    with_medication = write_ndjson(tmp_path / "with", [*patient, request, medication])
    without_medication = write_ndjson(tmp_path / "without", [*patient, request])

    [row] = screen_on_spark(spark, with_medication)
    [unresolved] = screen_on_spark(spark, without_medication)

    assert "exc_prior_checkpoint_inhibitor" in row.excluded_by
    assert row.verdict == "not_eligible"
    assert "exc_prior_checkpoint_inhibitor" not in unresolved.excluded_by


# ---------------------------------------------------------------------------------------------------
# The command line, and the driver's side of the outputs.


def test_a_folder_without_inputs_is_a_clear_error_on_spark(spark: SparkSession, tmp_path: Path) -> None:
    args = ["prescreen", "--ndjson", str(tmp_path), "--out", str(tmp_path / "out"), "--engine", "spark"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "holds no *.ndjson or *.ndjson.gz file" in result.output


def test_a_master_without_the_spark_engine_is_refused(tmp_path: Path) -> None:
    args = ["prescreen", "--bundles", str(PATIENT_BUNDLES[0].parent), "--out", str(tmp_path), "--master", "local[2]"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--master is for --engine spark" in result.output


def test_each_trial_reads_its_own_rows_of_the_ranked_stream_even_a_trial_without_any() -> None:
    rows = [row("p1", trial="a"), row("p2", trial="a"), row("p1", trial="c")]
    streams = TrialStreams(iter(rows))
    read = {tid: list(streams.rows_of(tid)) for tid in ("a", "b", "c")}
    streams.finish()
    assert read == {"a": rows[:2], "b": [], "c": rows[2:]}


def test_rows_left_unread_are_an_error_not_a_shorter_list() -> None:
    streams = TrialStreams(iter([row("p1", trial="a"), row("p1", trial="b")]))
    assert len(list(streams.rows_of("a"))) == 1
    with pytest.raises(RuntimeError, match="rows of trial 'b' were not written"):
        streams.finish()
