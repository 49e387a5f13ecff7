"""No PHI or tokens in any log output: a full patient-view request (prefetched, then fetched with a
fhirAuthorization token, then with a failing FHIR server), a bad request, feedback with a free-text
comment, an internal error, and failed client authentications with tokens - with every log captured
(structlog's output, and the standard library's loggers at DEBUG: httpx, uvicorn, sqlalchemy, ...)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import yaml
from api_support import NOW, SERVICE, make_settings, spec_client
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

from cds.api import create_app
from cds.auth.errors import UNAUTHORIZED_OUTCOME
from cds.demo import searchset
from cds.logging_setup import configure_logging

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "patients" / "01-base-male-eligible.json"
FHIR = "https://fhir.example.org/r4"
PATIENT_ID = "zq-4471-pt"
FHIR_TOKEN = "fhir-access-ZQ7c1d9e2b44a0f6a8e3b5c7d9e1f3a5"
FAMILY, GIVEN = "Quonsett", "Zebediah"
MRN = "MRN-7734-ZQ"
BIRTH = "1974-05-12"
PHONE = "+1-555-0199-734"
STREET = "17 Larkspur Crescent"
NOTE = "Lives with daughter Philippa, prefers calls after 6pm"
NARRATIVE = "Narrative for Zebediah Q."
COMMENT = "Discussed with Mr Quonsett and his daughter"

SECRETS = [PATIENT_ID, FHIR_TOKEN, FAMILY, GIVEN, MRN, BIRTH, PHONE, STREET, NOTE, NARRATIVE, COMMENT, "Philippa"]


def record() -> list[dict[str, Any]]:
    """Fixture patient 01 with the patient's id changed and PHI added in the usual places."""
    text = FIXTURE.read_text(encoding="utf-8").replace('"npc-01"', f'"{PATIENT_ID}"')
    text = text.replace("Patient/npc-01", f"Patient/{PATIENT_ID}")
    resources = [entry["resource"] for entry in json.loads(text)["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    patient["name"] = [{"use": "official", "text": f"{GIVEN} {FAMILY}", "family": FAMILY, "given": [GIVEN]}]
    patient["identifier"] = [{"system": "https://hospital.example.org/mrn", "value": MRN}]
    patient["birthDate"] = BIRTH
    patient["telecom"] = [{"system": "phone", "value": PHONE}]
    patient["address"] = [{"line": [STREET], "city": "Springfield"}]
    patient["text"] = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{NARRATIVE}</div>'}
    condition = next(r for r in resources if r["resourceType"] == "Condition")
    condition["note"] = [{"text": NOTE}]
    return resources


def hook_request(client: TestClient, *, prefetch: bool) -> dict[str, Any]:
    resources = record()
    service = client.app.state.cds.services["trial-eligibility"]  # type: ignore[attr-defined]
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": PATIENT_ID},
    }
    if prefetch:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for resource in resources:
            by_type.setdefault(resource["resourceType"], []).append(resource)
        keys: dict[str, Any] = {}
        for key, template in service.templates.items():
            rtype = template.split("?")[0].split("/")[0]
            found = by_type.get(rtype, [])
            keys[key] = found[0] if rtype == "Patient" else (searchset(found) if found else None)
        body["prefetch"] = keys
    else:
        body["fhirServer"] = FHIR
        body["fhirAuthorization"] = {
            "access_token": FHIR_TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.rs",
            "subject": "trial-cds",
        }
    return body


def fhir_server(request: httpx.Request) -> httpx.Response:
    if request.headers.get("authorization") != f"Bearer {FHIR_TOKEN}":
        return httpx.Response(401)
    rtype, _, rid = request.url.path.removeprefix("/r4/").partition("/")
    found = [r for r in record() if r["resourceType"] == rtype]
    if rid:
        hit = next((r for r in found if r.get("id") == rid), None)
        return httpx.Response(200, json=hit) if hit else httpx.Response(404)
    return httpx.Response(200, json=searchset(found))


def test_no_phi_or_token_in_any_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every standard-library logger, at its most verbose
    app = create_app(make_settings(tmp_path, log_level="DEBUG"), clock=lambda: NOW)
    with spec_client(app) as client:
        # Prefetched record.
        response = client.post(SERVICE, json=hook_request(client, prefetch=True))
        assert response.status_code == 200 and response.json()["cards"], response.text
        card = response.json()["cards"][0]
        # Fetched record, with the access token.
        with respx.mock(assert_all_mocked=True) as mock:
            mock.get(url__startswith=FHIR).mock(side_effect=fhir_server)
            response = client.post(SERVICE, json=hook_request(client, prefetch=False))
        assert response.status_code == 200 and response.json()["cards"], response.text
        # The FHIR server refuses the token.
        with respx.mock(assert_all_mocked=True) as mock:
            mock.get(url__startswith=FHIR).mock(return_value=httpx.Response(401, text=f"bad token {FHIR_TOKEN}"))
            response = client.post(SERVICE, json=hook_request(client, prefetch=False))
        assert response.status_code == 412
        # A bad request whose values are PHI.
        bad = hook_request(client, prefetch=True)
        bad["context"]["patientId"] = f"{GIVEN} {FAMILY} {BIRTH}"
        bad["hookInstance"] = MRN
        assert client.post(SERVICE, json=bad).status_code == 400
        # Feedback with a free-text comment.
        feedback = {
            "card": card["uuid"],
            "outcome": "overridden",
            "overrideReason": {"reason": card["overrideReasons"][0], "userComment": COMMENT},
            "outcomeTimestamp": "2026-11-01T12:05:00Z",
        }
        assert client.post(f"{SERVICE}/feedback", json={"feedback": [feedback]}).status_code == 200

    # An internal error whose message carries PHI.
    def broken(_trial: Any, _record: Any, _now: Any) -> Any:
        raise RuntimeError(f"cannot screen {GIVEN} {FAMILY}, born {BIRTH}, MRN {MRN}")

    failing = create_app(make_settings(tmp_path, log_level="DEBUG"), evaluate=broken, clock=lambda: NOW)
    with spec_client(failing) as client:
        response = client.post(SERVICE, json=hook_request(client, prefetch=True))
        assert response.status_code == 500

    captured = capsys.readouterr()
    everything = "\n".join([captured.out, captured.err, caplog.text])
    assert "cds_service.answered" in everything and "unhandled_error" in everything  # logs were captured
    for secret in SECRETS:
        assert secret not in everything, secret


def test_failed_client_authentication_never_logs_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    iss, jwks_url = "https://ehr.example.com/", "https://ehr.example.com/jwks.json"
    clients = tmp_path / "clients.yaml"
    clients.write_text(yaml.safe_dump([{"iss": iss, "jwks_url": jwks_url}]), encoding="utf-8")
    key = ECKey.generate_key("P-384", parameters={"kid": "k1"}, auto_kid=False)
    stranger = ECKey.generate_key("P-384", parameters={"kid": "k1"}, auto_kid=False)
    now = int(time.time())
    claims = {"iss": iss, "sub": "ehr", "aud": "https://cds.example.org/cds-services", "iat": now, "exp": now + 300}
    header = {"alg": "ES384", "typ": "JWT", "kid": "k1"}
    forged = jwt.encode(header, {**claims, "jti": "j-1"}, stranger, algorithms=["ES384"])
    old = {**claims, "jti": "j-2", "iat": now - 900, "exp": now - 600}
    expired = jwt.encode(header, old, key, algorithms=["ES384"])
    garbage = "nQt7x.a-jwt-W4.ZQ7-garbage-token-value"  # parts no other log text contains
    app = create_app(
        make_settings(
            tmp_path,
            auth="jwt",
            clients_file=clients,
            audience="https://cds.example.org/cds-services",
            log_level="DEBUG",
        ),
        clock=lambda: NOW,
    )
    with respx.mock(assert_all_mocked=True) as mock, spec_client(app) as client:
        mock.get(jwks_url).mock(return_value=httpx.Response(200, json={"keys": [key.as_dict(private=False)]}))
        for token in (forged, expired, garbage):
            response = client.post(SERVICE, json={"hook": "patient-view"}, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401 and response.json() == UNAUTHORIZED_OUTCOME
    captured = capsys.readouterr()
    everything = "\n".join([captured.out, captured.err, caplog.text])
    assert everything.count("cds_client_rejected") >= 3
    for token in (forged, expired, garbage):
        assert token not in everything
        for part in token.split("."):
            assert part not in everything, part


def test_standard_library_http_client_logs_are_quiet() -> None:
    # httpx logs every request URL at INFO (FHIR URLs carry patient ids): kept at WARNING or above.
    configure_logging("DEBUG")
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING
