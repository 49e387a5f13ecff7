"""Schemathesis over the service's own OpenAPI schema, in-process: whatever a client sends, no 5xx.

The app exposes ``/openapi.json`` in demo mode only, so the schema is read from a demo-mode app (no
client authentication, no FHIR server allow-listed: nothing leaves the process). The CDS routes read
their bodies themselves, and describe the request models through ``openapi_extra``, so schemathesis
generates real ``HookRequest`` / ``FeedbackRequest`` bodies, valid (positive) and invalid (negative).
Bounded: 25 examples per operation and mode, no shrinking, no example database.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from api_support import NOW, make_settings
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.generation.modes import GenerationMode

from cds.api import create_app

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(make_settings(tmp, demo=True, fhir_allowlist=[]), clock=lambda: NOW)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations(schema: Any) -> dict[str, Any]:
    out = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        out[f"{operation.method.upper()} {operation.path}"] = operation
    return out


def test_the_schema_describes_the_request_bodies(schema: Any) -> None:
    paths = schema.raw_schema["paths"]
    for path, required in (
        ("/cds-services/{service_id}", {"hook", "hookInstance", "context"}),
        ("/cds-services/{service_id}/feedback", {"feedback"}),
    ):
        body = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["required"]) == required
        assert "$defs" not in str(body)  # references inlined: the document stands on its own


# Real ids for the path parameters, so generated bodies reach the service rather than a 404.
REAL_IDS = {"service_id": "trial-eligibility", "trial_id": "npc-liver-mets-ldrt", "patient_id": "npc-01"}


def _fuzz(name: str, operation: Any, mode: GenerationMode, statuses: set[int], pinned: dict[str, str]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=pinned or None))
    def call(case: Any) -> None:
        response = case.call()
        statuses.add(response.status_code)
        assert response.status_code < 500, (name, response.status_code, response.text[:500])
        if 400 <= response.status_code < 500 and name.startswith(("POST /cds-services", "GET /trials")):
            assert response.json()["resourceType"] == "OperationOutcome", (name, response.text[:500])

    call()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_no_operation_answers_5xx(schema: Any, mode: GenerationMode) -> None:
    operations = _operations(schema)
    assert {"POST /cds-services/{service_id}", "POST /cds-services/{service_id}/feedback"} <= set(operations)
    seen: dict[str, set[int]] = {}
    for name, operation in operations.items():
        statuses = seen.setdefault(name, set())
        if mode is GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # only string path parameters and no body: nothing can be made invalid by the schema
        _fuzz(name, operation, mode, statuses, {})  # random path parameters
        pinned = {k: v for k, v in REAL_IDS.items() if "{" + k + "}" in operation.path}
        if pinned:
            _fuzz(name, operation, mode, statuses, pinned)
    # The generated bodies reach the service and its checks (not just the router).
    posts = seen["POST /cds-services/{service_id}"] | seen["POST /cds-services/{service_id}/feedback"]
    assert 400 in posts, seen
