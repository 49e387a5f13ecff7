"""Every fixture patient, over HTTP: the service fetches the record from a real FHIR server (no prefetch)
and its assessment must equal the offline `trial-cds screen` result for the same Bundle."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from itest_support import (
    SERVICE,
    FhirServer,
    card_assessments,
    fixture_files,
    hook_request,
    make_app_client,
    screen_offline,
)

from cds.fhir.load import patient_ids

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(fhir_server: FhirServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    database = tmp_path_factory.mktemp("service") / "cds.sqlite3"
    with make_app_client([fhir_server.base], database) as client:
        yield client


@pytest.mark.parametrize("name", [p.stem for p in fixture_files()])
def test_assessment_over_http_equals_offline(
    name: str,
    fhir_server: FhirServer,
    loaded_fixtures: dict[str, dict[str, Any]],
    service: TestClient,
    trials: dict[str, Any],
) -> None:
    bundle = loaded_fixtures[name]
    (patient_id,) = patient_ids(bundle)
    response = service.post(SERVICE, json=hook_request(patient_id, fhir_server.base, fhir_server.token))
    assert response.status_code == 200, response.text
    over_http = card_assessments(response.json())
    offline = screen_offline(trials, bundle)
    assert set(over_http) == set(offline), "one card per trial (show_not_eligible is on)"
    for trial_id, expected in offline.items():
        assert over_http[trial_id] == expected, f"{name}: {trial_id} differs over HTTP"
