"""A few Synthea patients loaded into the FHIR server under test with `trial-cds load` (in bounded
transactions) and copied back with cds.prescreen.bulk_export: every loaded resource comes back, as loaded.

On a server that declares $export (the sandbox HAPI) the copy is a Bulk Data export; on one that does not
(SEKMET), paged search; and paged search is also checked on a server with $export. Needs FHIR_BASE_URL and
the Synthea population (TRIAL_CDS_SYNTHEA_POPULATION, which scripts/test.sh sets from
scripts/synthea-population); skipped without either.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from itest_support import FhirServer

from cds.fhir.load import LoadResult, load_files, prefix_ids, read_bundle, to_transaction
from cds.prescreen.bulk_export import BulkAuth, export_to_ndjson

pytestmark = pytest.mark.integration

#: The smallest patients of the population: enough resource types, quick to load and export.
PATIENTS = 3


def population_files() -> list[Path]:
    directory = os.environ.get("TRIAL_CDS_SYNTHEA_POPULATION", "").strip()
    if not directory:
        pytest.skip("no Synthea population: set TRIAL_CDS_SYNTHEA_POPULATION=$(scripts/synthea-population)")
    bundles = [p for p in (Path(directory) / "fhir").glob("*.json") if not p.name.startswith(("hospital", "practit"))]
    if not bundles:
        pytest.skip(f"{directory}/fhir holds no patient Bundle")
    return sorted(bundles, key=lambda p: (p.stat().st_size, p.name))[:PATIENTS]


def declares_export(server: FhirServer) -> bool:
    headers = {"Accept": "application/fhir+json"}
    if server.token:
        headers["Authorization"] = f"Bearer {server.token}"
    statement = httpx.get(f"{server.base}/metadata", headers=headers, timeout=60).json()
    return any(op.get("name") == "export" for rest in statement.get("rest", []) for op in rest.get("operation", []))


@pytest.fixture(scope="module")
def loaded(fhir_server: FhirServer) -> tuple[list[LoadResult], dict[str, dict[str, Any]]]:
    """The patients, loaded (placeholders for the practitioners and organisations: the population holds no
    hospital or practitioner file), and every resource as the server should now hold it, by Type/id."""
    files = population_files()
    results = load_files(
        fhir_server.base, files, token=fhir_server.token, id_prefix=fhir_server.prefix, placeholders=True,
        chunk_size=200,
    )
    expected: dict[str, dict[str, Any]] = {}
    for path in files:
        transaction = to_transaction(prefix_ids(read_bundle(path), fhir_server.prefix))
        for entry in transaction["entry"]:
            expected[entry["request"]["url"]] = entry["resource"]
    return results, expected


def exported(directory: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(directory.glob("*.ndjson")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)


#: Synthea refers to these conditionally (``Practitioner?identifier=…``); the loader resolved each to a
#: ``Type/id`` on the server (here a placeholder). Compared by type only.
_SHARED_REF = re.compile(r'"reference": "(Practitioner|Organization|Location|PractitionerRole)[/?][^"]*"')


def comparable(resource: dict[str, Any]) -> str:
    """A resource without what the server sets itself (meta: versionId, lastUpdated), references to shared
    resources by their type only."""
    text = json.dumps({k: v for k, v in resource.items() if k != "meta"}, sort_keys=True)
    return _SHARED_REF.sub(r'"reference": "\1"', text)


def test_loading_synthea_patients_uses_bounded_transactions(
    loaded: tuple[list[LoadResult], dict[str, dict[str, Any]]],
) -> None:
    results, expected = loaded
    assert len(results) == PATIENTS
    assert sum(r.resources for r in results) - sum(r.placeholders for r in results) == len(expected)
    assert all(r.chunks == -(-r.resources // 200) for r in results)
    assert all(len(r.patient_ids) == 1 for r in results)


@pytest.mark.parametrize("level", ["auto", "search"])
def test_every_loaded_resource_comes_back_from_the_export(
    fhir_server: FhirServer,
    loaded: tuple[list[LoadResult], dict[str, dict[str, Any]]],
    tmp_path: Path,
    level: Literal["auto", "search"],
) -> None:
    _, expected = loaded
    types = sorted({key.split("/")[0] for key in expected})
    result = export_to_ndjson(
        fhir_server.base, tmp_path, BulkAuth(token=fhir_server.token), None, types,
        level=level, max_retry_after_s=2.0, max_wait_s=900.0,
    )
    assert result.method == ("bulk" if level == "auto" and declares_export(fhir_server) else "search")
    by_key = {f"{r['resourceType']}/{r['id']}": r for r in exported(tmp_path)}
    missing = sorted(set(expected) - set(by_key))
    assert not missing, f"{len(missing)} loaded resources not exported, e.g. {missing[:5]}"
    different = [key for key, resource in expected.items() if comparable(by_key[key]) != comparable(resource)]
    assert not different, f"{len(different)} resources came back changed, e.g. {different[:5]}"
    assert set(result.counts) <= set(types)
    for rtype, path in result.files.items():
        assert result.counts[rtype] == len(path.read_text(encoding="utf-8").splitlines())
