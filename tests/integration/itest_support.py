"""Shared helpers of the integration suite: the FHIR server under test, the service, offline answers."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api_support import spec_client
from fastapi.testclient import TestClient

from cds.api.app import create_app
from cds.cards import ASSESSMENT_EXTENSION, prune
from cds.engine import evaluate
from cds.record import PatientRecord
from cds.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "patients"
#: The fixtures' expected outcomes are written for this evaluation time.
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SERVICE = "/cds-services/trial-eligibility"


@dataclass(frozen=True)
class FhirServer:
    """The FHIR server the suite runs against (from FHIR_BASE_URL, FHIR_BEARER_TOKEN, FHIR_ID_PREFIX)."""

    base: str
    token: str | None
    #: Put before every resource id, so that the synthetic patients do not meet other data on a shared server.
    prefix: str


def server_from_env() -> FhirServer | None:
    base = os.environ.get("FHIR_BASE_URL", "").strip().rstrip("/")
    if not base:
        return None
    token = os.environ.get("FHIR_BEARER_TOKEN", "").strip() or None
    return FhirServer(base=base, token=token, prefix=os.environ.get("FHIR_ID_PREFIX", "").strip())


def time_budget_s() -> float:
    """The service's time budget for the suite: generous, real servers on a busy CI machine are slow."""
    return float(os.environ.get("FHIR_TIME_BUDGET_S", "15"))


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*.json"))


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def make_app_client(base_urls: list[str], database: Path, **overrides: Any) -> TestClient:
    """The service (no client authentication, the given FHIR servers allow-listed, every card shown),
    with its clock set to :data:`NOW`."""
    values: dict[str, Any] = {
        "auth": "none",
        "fhir_allowlist": base_urls,
        "time_budget_s": time_budget_s(),
        "show_not_eligible": True,
        "max_cards": 100,  # a card per open trial, not the three most useful and a summary
        "database_url": f"sqlite:///{database}",
    }
    values.update(overrides)
    app = create_app(Settings(**values), clock=lambda: NOW)
    return spec_client(app, raise_server_exceptions=True)


def hook_request(patient_id: str, base: str, token: str | None) -> dict[str, Any]:
    """A patient-view request with fhirServer and no prefetch: the service must fetch everything."""
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": base,
        "context": {"userId": "Practitioner/it-clinician-1", "patientId": patient_id},
    }
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.rs",
            "subject": "trial-cds",
        }
    return body


def card_assessments(response_json: Mapping[str, Any]) -> dict[str, Any]:
    """trial id → the machine-readable assessment of its card."""
    out: dict[str, Any] = {}
    for card in response_json.get("cards", []):
        assessment = (card.get("extension") or {}).get(ASSESSMENT_EXTENSION)
        if assessment is not None:
            out[assessment["trial"]] = assessment
    return out


def offline_assessments(trials: Mapping[str, Any], record: PatientRecord) -> dict[str, Any]:
    """trial id → the engine's assessment of ``record`` at :data:`NOW`, pruned as the card extension is."""
    return {tid: prune(evaluate(trial, record, NOW).screen_json()) for tid, trial in trials.items()}


def screen_offline(trials: Mapping[str, Any], bundle: Mapping[str, Any]) -> dict[str, Any]:
    """What `trial-cds screen --now 2026-11-01T12:00:00Z BUNDLE` says: the same engine, no HTTP."""
    return offline_assessments(trials, PatientRecord.from_bundle(bundle))


def bundle_of(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
