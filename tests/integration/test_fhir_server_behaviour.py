"""What real FHIR servers do differently, over HTTP: paging across several pages (HAPI's `_getpages`, other
servers' `_offset`), a `_count` larger than the server allows, a patient with no data, an unknown patient,
a deleted resource."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from itest_support import (
    FIXTURES,
    SERVICE,
    FhirServer,
    bundle_of,
    card_assessments,
    hook_request,
    make_app_client,
    read_json,
    screen_offline,
)

from cds.fhir import http as fhir_http
from cds.fhir.client import FhirClient
from cds.fhir.load import prefix_ids, upload_bundle
from cds.settings import Settings

pytestmark = pytest.mark.integration


def delete_resource(base_url: str, resource_type: str, resource_id: str, *, token: str | None = None) -> int:
    """DELETE one resource; the HTTP status (200/202/204 deleted, 404/410 already gone: all fine)."""
    with fhir_http.client(30.0) as http:
        response = http.delete(
            f"{base_url.rstrip('/')}/{resource_type}/{resource_id}", headers=fhir_http.headers(token)
        )
    assert response.status_code in (200, 202, 204, 404, 410), response.text[:300]
    return response.status_code


def _observation(pid: str, oid: str, day: int, value: float) -> dict[str, Any]:
    """A final platelet count (LOINC 777-3) on 2026-<month>-<day>."""
    month, dom = 1 + (day // 28) % 9, 1 + day % 28
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "777-3", "display": "Platelets"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": f"2026-{month:02d}-{dom:02d}T08:00:00Z",
        "valueQuantity": {
            "value": value,
            "unit": "10*3/uL",
            "system": "http://unitsofmeasure.org",
            "code": "10*3/uL",
        },
    }


def _patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "male", "birthDate": "1974-03-02"}


def _with_extra_observations(base_fixture: str, prefix: str, count: int) -> dict[str, Any]:
    """A fixture patient (ids prefixed) with ``count`` older platelet counts added."""
    bundle = prefix_ids(read_json(FIXTURES / f"{base_fixture}.json"), prefix)
    pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    for i in range(count):
        obs = _observation(pid, f"{pid}-extra-{i:03d}", i, 150.0 + i)
        bundle["entry"].append({"resource": obs})
    return bundle


def _fetch(server: FhirServer, query: str, **settings: Any) -> Any:
    values: dict[str, Any] = {"auth": "none", "fhir_allowlist": [server.base], "time_budget_s": 30.0}
    values.update(settings)
    client = FhirClient(server.base, Settings(**values), access_token=server.token)
    return asyncio.run(client.search_all({"q": query}))["q"]


@pytest.fixture(scope="module")
def service(fhir_server: FhirServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The service with a small page size, so that one patient's Observations span several pages."""
    database = tmp_path_factory.mktemp("service") / "cds.sqlite3"
    with make_app_client([fhir_server.base], database, page_size=5) as client:
        yield client


def _over_http(service: TestClient, server: FhirServer, patient_id: str) -> dict[str, Any]:
    response = service.post(SERVICE, json=hook_request(patient_id, server.base, server.token))
    assert response.status_code == 200, response.text
    return card_assessments(response.json())


def test_paging_across_several_pages(fhir_server: FhirServer, service: TestClient, trials: dict[str, Any]) -> None:
    bundle = _with_extra_observations("01-base-male-eligible", f"{fhir_server.prefix}pg-", 20)
    upload_bundle(fhir_server.base, bundle, token=fhir_server.token)
    pid = f"{fhir_server.prefix}pg-npc-01"
    observations = sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")

    fetched = _fetch(fhir_server, f"Observation?patient={pid}", page_size=5)
    assert fetched.error is None
    assert not fetched.partial, fetched.problems
    assert len(fetched.resources) == observations
    assert fetched.pages >= 4, f"{observations} Observations at _count=5 came in {fetched.pages} pages"
    assert len({r["id"] for r in fetched.resources}) == observations, "no resource twice across pages"

    assert _over_http(service, fhir_server, pid) == screen_offline(trials, bundle)


def test_count_larger_than_the_server_allows(fhir_server: FhirServer) -> None:
    """Asking for 1000 per page: the server may answer with fewer (HAPI caps _count), and the next links
    bring the rest."""
    pid = f"{fhir_server.prefix}it-many-01"
    resources = [_patient(pid)] + [_observation(pid, f"{pid}-obs-{i:03d}", i, 100.0 + i) for i in range(130)]
    upload_bundle(fhir_server.base, bundle_of(resources), token=fhir_server.token)
    fetched = _fetch(fhir_server, f"Observation?patient={pid}", page_size=1000)
    assert fetched.error is None
    assert not fetched.partial, fetched.problems
    assert len(fetched.resources) == 130
    print(f"130 Observations at _count=1000: {fetched.pages} page(s), {fetched.requests} request(s)")


def test_patient_with_no_data(fhir_server: FhirServer, service: TestClient, trials: dict[str, Any]) -> None:
    pid = f"{fhir_server.prefix}it-nodata-01"
    bundle = bundle_of([_patient(pid)])
    upload_bundle(fhir_server.base, bundle, token=fhir_server.token)
    assert _over_http(service, fhir_server, pid) == screen_offline(trials, bundle)


def test_unknown_patient_is_a_412(fhir_server: FhirServer, service: TestClient) -> None:
    """A patient id the server does not know (the read answers 404, every search is empty): there is no
    record to screen, so the service answers 412 with an OperationOutcome, never a verdict on nobody."""
    pid = f"{fhir_server.prefix}it-unknown-0000"
    response = service.post(SERVICE, json=hook_request(pid, fhir_server.base, fhir_server.token))
    assert response.status_code == 412, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Patient" in outcome["issue"][0]["diagnostics"]


def test_deleted_resource_no_longer_counts(
    fhir_server: FhirServer, service: TestClient, trials: dict[str, Any]
) -> None:
    bundle = prefix_ids(read_json(FIXTURES / "28-platelets-falling-latest-low.json"), f"{fhir_server.prefix}del-")
    full = screen_offline(trials, bundle)
    # The Observation whose removal changes the offline assessment (the latest, low, platelet count).
    chosen: dict[str, Any] | None = None
    without: dict[str, Any] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Observation":
            continue
        rest = copy.deepcopy(bundle)
        rest["entry"] = [
            e for e in rest["entry"] if e["resource"] is not None and e["resource"].get("id") != resource["id"]
        ]
        without = screen_offline(trials, rest)
        if without != full:
            chosen = resource
            break
    assert chosen is not None, "the fixture has an Observation that matters"
    pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")

    upload_bundle(fhir_server.base, bundle, token=fhir_server.token)  # (re)creates it: PUT by id
    assert _over_http(service, fhir_server, pid) == full

    status = delete_resource(fhir_server.base, "Observation", chosen["id"], token=fhir_server.token)
    assert status in (200, 202, 204)
    headers = {"Accept": "application/fhir+json"}
    if fhir_server.token:
        headers["Authorization"] = f"Bearer {fhir_server.token}"
    read = httpx.get(f"{fhir_server.base}/Observation/{chosen['id']}", headers=headers, timeout=30)
    assert read.status_code in (404, 410), "a deleted resource reads as 404 or 410"

    assert _over_http(service, fhir_server, pid) == without
