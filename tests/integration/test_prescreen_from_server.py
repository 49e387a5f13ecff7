"""End to end: Synthea patients with nasopharyngeal carcinoma loaded into the FHIR server under test, then
`trial-cds prescreen --fhir` (Bulk Data $export on the sandbox HAPI, paged search on SEKMET) with the local
engine and with Spark: each loaded patient gets, for every open trial, the answer `trial-cds screen` gives
the patient's own Bundle. Needs FHIR_BASE_URL and TRIAL_CDS_SYNTHEA_POPULATION (set by scripts/test.sh)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from itest_support import FhirServer
from typer.testing import CliRunner

from cds.cli import app
from cds.fhir.load import load_files, prefix_ids, read_bundle

pytestmark = pytest.mark.integration

runner = CliRunner()
#: Patients of the population's NPC module: the ones the bundled trials have something to say about.
NPC_PATIENTS = 2


def _population() -> Path:
    directory = os.environ.get("TRIAL_CDS_SYNTHEA_POPULATION", "").strip()
    if not directory:
        pytest.skip("no Synthea population: set TRIAL_CDS_SYNTHEA_POPULATION=$(scripts/synthea-population)")
    return Path(directory)


def _npc_bundles(population: Path) -> list[Path]:
    """The smallest Bundles whose patient has a nasopharyngeal carcinoma (ICD-10-CM C11)."""
    found = [p for p in (population / "fhir").glob("*.json") if b'"code": "C11.' in p.read_bytes()]
    if len(found) < NPC_PATIENTS:
        pytest.skip(f"{population} holds fewer than {NPC_PATIENTS} NPC patients")
    return sorted(found, key=lambda p: (p.stat().st_size, p.name))[:NPC_PATIENTS]


def _evaluation_day(population: Path) -> str:
    return str(json.loads((population / "population.json").read_text(encoding="utf-8"))["reference_date"])


def _comparable(line: dict[str, Any]) -> dict[str, Any]:
    """The verdict and each criterion's status. Not the reasons: where several resources tie (same date),
    which of them a reason names follows the order the resources arrive in, and a server's export order is
    not the Bundle's."""
    return {"verdict": line["verdict"], "criteria": [(c["id"], c["status"]) for c in line["criteria"]]}


@pytest.fixture(scope="module")
def loaded(fhir_server: FhirServer, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """The NPC patients loaded into the server; what `screen` answers on each one's Bundle, by patient
    and trial."""
    population = _population()
    files = _npc_bundles(population)
    load_files(fhir_server.base, files, token=fhir_server.token, id_prefix=fhir_server.prefix, placeholders=True)
    folder = tmp_path_factory.mktemp("bundles")
    for path in files:
        (folder / path.name).write_bytes(orjson.dumps(prefix_ids(read_bundle(path), fhir_server.prefix)))
    now = _evaluation_day(population)
    result = runner.invoke(app, ["screen", *map(str, sorted(folder.glob("*.json"))), "--now", now, "--format", "json"])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert {line["verdict"] for line in lines} - {"not_eligible"}, "no NPC patient is a candidate for any trial"
    return {(line["patient"], line["trial"]): _comparable(line) for line in lines}


@pytest.mark.parametrize(
    "engine",
    [["--engine", "local", "--workers", "2"], ["--engine", "spark", "--master", "local[2]"]],
    ids=["local", "spark"],
)
def test_prescreen_from_the_server_gives_each_patient_the_screen_answer(
    fhir_server: FhirServer, loaded: dict[tuple[str, str], Any], tmp_path: Path, engine: list[str]
) -> None:
    if engine[1] == "spark":
        pytest.importorskip("pyspark", reason="the Spark engine needs PySpark: pip install trial-cds[spark]")
    token = ["--token", fhir_server.token] if fhir_server.token else []
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "prescreen",
            "--fhir",
            fhir_server.base,
            *token,
            "--out",
            str(out),
            "--now",
            _evaluation_day(_population()),
            *engine,
        ],
    )
    assert result.exit_code == 0, result.output
    patients = {patient for patient, _ in loaded}
    got = {}
    for path in sorted(out.glob("*.jsonl")):
        for raw in path.read_bytes().splitlines():
            line = orjson.loads(raw)
            if line["patient"] in patients:  # the server may hold other tests' patients too
                got[(line["patient"], line["trial"])] = _comparable(line)
    assert got == loaded
    assert (out / "index.html").stat().st_mode & 0o077 == 0
