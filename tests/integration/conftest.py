"""Fixtures of the integration suite.

The suite runs against the FHIR R4 server named by ``FHIR_BASE_URL`` (with ``FHIR_BEARER_TOKEN`` when the
server needs one, ``FHIR_ID_PREFIX`` to keep the synthetic patients apart on a shared server). Without
``FHIR_BASE_URL`` the tests that need a server are skipped; the fault tests, which start their own small
HTTP server on 127.0.0.1, always run.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from itest_support import FhirServer, fixture_files, read_json, server_from_env

from cds.fhir.load import prefix_ids, upload_bundle
from cds.portfolio import load_portfolio
from cds.trials import Trial

NO_SERVER = (
    "no FHIR server configured: set FHIR_BASE_URL (e.g. `FHIR_BASE_URL=$(scripts/fhir-servers start-sekmet)`, "
    "or the URL of any FHIR R4 server; FHIR_BEARER_TOKEN if it needs one)"
)


@pytest.fixture(scope="session")
def fhir_server() -> FhirServer:
    server = server_from_env()
    if server is None:
        pytest.skip(NO_SERVER)
    headers = {"Accept": "application/fhir+json"}
    if server.token:
        headers["Authorization"] = f"Bearer {server.token}"
    try:
        response = httpx.get(f"{server.base}/metadata", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        pytest.fail(f"FHIR_BASE_URL={server.base}: /metadata cannot be reached ({type(exc).__name__}: {exc})")
    if response.status_code != 200:
        pytest.fail(f"FHIR_BASE_URL={server.base}: /metadata answered HTTP {response.status_code}")
    return server


@pytest.fixture(scope="session")
def trials() -> dict[str, Trial]:
    """The trials the service screens: the open ones of the bundled portfolio."""
    return load_portfolio().open_trials


@pytest.fixture(scope="session")
def loaded_fixtures(fhir_server: FhirServer) -> dict[str, dict[str, Any]]:
    """Every fixture patient, uploaded (one transaction each, PUT by id: a re-run changes nothing).
    Fixture file stem → the Bundle as uploaded (ids prefixed with FHIR_ID_PREFIX)."""
    loaded: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with httpx.Client(timeout=120) as http:
        for path in fixture_files():
            bundle = prefix_ids(read_json(path), fhir_server.prefix)
            upload_bundle(fhir_server.base, bundle, token=fhir_server.token, http=http, source=path.name)
            loaded[path.stem] = bundle
    print(f"\nloaded {len(loaded)} fixture patients into {fhir_server.base} in {time.perf_counter() - started:.1f} s")
    return loaded
