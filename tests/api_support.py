"""Shared helpers for the API tests: settings, a client with a fixed clock, real FHIR request bodies."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.servicerequest import ServiceRequest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

import cds
from cds.api import create_app
from cds.cards import find_empty
from cds.demo import ANCHOR_DATE, DemoPatient, demo_request, load_demo_patients, searchset
from cds.settings import Settings
from cds.valuesets import MAPPINGS_DIR
from hooks import HOOKS

FHIR = "https://fhir.example.org/r4"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjZHMtc2VydmljZSJ9.c2lnbmF0dXJl"
# The demo Bundles' clinical dates are written for this evaluation time.
NOW = datetime(ANCHOR_DATE.year, ANCHOR_DATE.month, ANCHOR_DATE.day, 12, 0, tzinfo=UTC)
SERVICE = "/cds-services/trial-eligibility"


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth": "none",
        "database_url": f"sqlite:///{tmp_path / 'cds.sqlite3'}",
        "fhir_allowlist": [FHIR],
        "time_budget_s": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


def seed_trial_only(tmp_path: Path) -> Path:
    """A trials folder holding the seed trial alone, for tests of one trial's cards whatever else is bundled."""
    folder = tmp_path / "seed-trial"
    folder.mkdir(exist_ok=True)
    seed = MAPPINGS_DIR / "trials" / "npc-liver-mets-ldrt.yaml"
    shutil.copyfile(seed, folder / seed.name)
    return folder


def make_client(tmp_path: Path, **overrides: Any) -> TestClient:
    app = create_app(make_settings(tmp_path, **overrides), clock=lambda: NOW)
    return spec_client(app)


# ---------------------------------------------------------------------------------------------------
# The CDS Hooks 2.0 JSON Schema (cds/api/schema/cds-hooks-2.0): every answer the API tests get is checked.

SCHEMA_DIR = Path(cds.__file__).parent / "api" / "schema" / "cds-hooks-2.0"
SCHEMA_BASE = "https://trial-cds.invalid/schema/cds-hooks-2.0/"
#: What can be checked: the four documents of the specification, and a card on its own.
SCHEMAS = {
    "discovery-response": "discovery-response.json",
    "hook-request": "hook-request.json",
    "hook-response": "hook-response.json",
    "feedback-request": "feedback-request.json",
    "card": "common.json#/$defs/card",
}


@cache
def spec_validator(name: str) -> Draft202012Validator:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(contents)
        resources.append((contents["$id"], Resource.from_contents(contents)))
    registry: Registry = Registry().with_resources(resources)
    return Draft202012Validator({"$ref": SCHEMA_BASE + SCHEMAS[name]}, registry=registry)


def spec_errors(name: str, instance: Any) -> list[str]:
    """What the CDS Hooks 2.0 schema ``name`` finds wrong with ``instance`` ([] when it conforms)."""
    found = spec_validator(name).iter_errors(instance)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in found)


def assert_spec(name: str, instance: Any) -> None:
    errors = spec_errors(name, instance)
    assert errors == [], f"not a CDS Hooks 2.0 {name}: {errors}"


_SERVICE_PATH = re.compile(r"^/cds-services/[^/]+$")


class SpecClient(TestClient):
    """A TestClient that checks every successful CDS Hooks answer against the 2.0 schema: discovery and
    service responses. (Requests are the tests' own business: many are malformed on purpose.)"""

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        response = super().request(method, url, *args, **kwargs)
        path = response.request.url.path
        if response.status_code == 200 and response.headers.get("content-type", "").startswith("application/json"):
            if method.upper() == "GET" and path == "/cds-services":
                assert_spec("discovery-response", response.json())
            elif method.upper() == "POST" and _SERVICE_PATH.match(path):
                assert_spec("hook-response", response.json())
        return response


def spec_client(app: FastAPI, *, raise_server_exceptions: bool = False) -> TestClient:
    return SpecClient(app, raise_server_exceptions=raise_server_exceptions)


def patients() -> dict[str, DemoPatient]:
    """The synthetic demo patients, with their dates as written (evaluation date 2026-11-01)."""
    return load_demo_patients(ANCHOR_DATE)


def full_request(client: TestClient, patient_id: str = "npc-01") -> dict[str, Any]:
    """A patient-view request with every prefetch key the service asks for."""
    service = client.app.state.cds.services["trial-eligibility"]  # type: ignore[attr-defined]
    return demo_request(patients()[patient_id], HOOKS["patient-view"], service.resource_types)


def bare_request(patient_id: str = "npc-01", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id},
    }
    body.update(extra)
    return body


def with_server(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "fhirServer": FHIR,
        "fhirAuthorization": {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/Patient.rs patient/Observation.rs patient/Condition.rs",
            "subject": "trial-cds",
        },
    }


_PATH = re.compile(r"^/r4/([A-Za-z]+)(?:/([A-Za-z0-9\-.]+))?$")


def fhir_handler(patient: DemoPatient, calls: list[httpx.Request]) -> Any:
    """A respx side effect acting as the EHR's FHIR server for one patient: reads and patient searches."""

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401)
        match = _PATH.match(request.url.path)
        if match is None:
            return httpx.Response(404)
        rtype, rid = match.groups()
        found = patient.resources_of(rtype)
        if rid is not None:
            hit = next((r for r in found if r.get("id") == rid), None)
            return httpx.Response(200, json=hit) if hit else httpx.Response(404)
        if request.url.params.get("patient") != patient.id:
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "total": 0})
        return httpx.Response(200, json=searchset(found))

    return handle


def is_operation_outcome(body: Any, *codes: str) -> bool:
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return False
    issues = body.get("issue")
    if not isinstance(issues, list) or not issues:
        return False
    for issue in issues:
        if issue.get("severity") not in {"error", "fatal"} or not issue.get("diagnostics"):
            return False
    return not codes or any(issue.get("code") in codes for issue in issues)


def assert_spec_card(card: dict[str, Any]) -> None:
    """A CDS Hooks 2.0 card as the specification asks (the schema), and as this service makes them:
    nothing empty, links and suggestions complete."""
    assert_spec("card", card)
    assert find_empty(card) == []
    uuid.UUID(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in {"info", "warning", "critical"}
    assert card["source"]["label"]
    for link in card.get("links", []):
        assert link["label"] and link["url"].startswith(("http://", "https://")) and link["type"] == "absolute"
        assert link["autolaunchable"] is False
    for reason in card.get("overrideReasons", []):
        assert reason["code"] and reason["system"] and reason["display"]
    if "suggestions" in card:
        assert card["selectionBehavior"] == "at-most-one" and len(card["suggestions"]) == 1
        for suggestion in card["suggestions"]:
            assert suggestion["label"]
            for action in suggestion["actions"]:
                assert action["type"] == "create" and action["description"]
                ServiceRequest.model_validate(action["resource"])
