"""Settings a hospital can debug (issue 15, item 5): every refusal before a route is an OperationOutcome
with a log line that says why, and the start-up says what the service will do."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from api_support import NOW, SERVICE, bare_request, is_operation_outcome, make_client, make_settings, spec_client
from structlog.testing import capture_logs

import cds
from cds.api import create_app
from cds.api.errors import header_bytes
from cds.settings import SettingsError

EHR_ORIGIN = "https://ehr.example.org"


def preflight(origin: str, method: str = "POST", headers: str = "authorization, content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


# ---------------------------------------------------------------------------------------------- CORS


def test_a_preflight_from_an_origin_not_allowed_is_a_403_outcome_and_a_warning_naming_it(tmp_path: Path) -> None:
    with make_client(tmp_path, cors_origins=[EHR_ORIGIN]) as client, capture_logs() as logs:
        response = client.options(SERVICE, headers=preflight("https://other.example.net"))
    assert response.status_code == 403
    assert is_operation_outcome(response.json(), "forbidden")
    assert "TRIAL_CDS_CORS_ORIGINS" in response.json()["issue"][0]["diagnostics"]
    refused = [e for e in logs if e["event"] == "cors_preflight_refused"]
    assert len(refused) == 1 and refused[0]["log_level"] == "warning"
    assert refused[0]["origin"] == "https://other.example.net" and refused[0]["allowed_origins"] == [EHR_ORIGIN]


def test_a_preflight_is_refused_with_a_reason_when_no_origin_is_configured(tmp_path: Path) -> None:
    with make_client(tmp_path) as client, capture_logs() as logs:
        response = client.options(SERVICE, headers=preflight(EHR_ORIGIN))
    assert response.status_code == 403 and is_operation_outcome(response.json(), "forbidden")
    assert [e["origin"] for e in logs if e["event"] == "cors_preflight_refused"] == [EHR_ORIGIN]


def test_a_preflight_asking_for_a_header_not_allowed_names_what_was_refused(tmp_path: Path) -> None:
    with make_client(tmp_path, cors_origins=[EHR_ORIGIN]) as client, capture_logs() as logs:
        response = client.options(SERVICE, headers=preflight(EHR_ORIGIN, headers="x-custom"))
    assert response.status_code == 403
    assert [e["refused"] for e in logs if e["event"] == "cors_preflight_refused"] == ["headers"]


def test_a_preflight_from_an_allowed_origin_still_succeeds(tmp_path: Path) -> None:
    with make_client(tmp_path, cors_origins=[EHR_ORIGIN]) as client:
        response = client.options(SERVICE, headers=preflight(EHR_ORIGIN))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == EHR_ORIGIN


def test_cors_for_every_origin_is_refused_outside_demo_mode(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"TRIAL_CDS_CORS_ORIGINS=\*"):
        create_app(make_settings(tmp_path, cors_origins=["*"]))
    demo = create_app(make_settings(tmp_path, cors_origins=["*"], demo=True))
    assert demo.state.settings.cors_origins == ["*"]


# -------------------------------------------------------------------------------------- header cap


def test_request_headers_over_the_cap_are_a_431_outcome_before_authentication(tmp_path: Path) -> None:
    clients = tmp_path / "clients.yaml"
    clients.write_text(yaml.safe_dump([{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/k"}]))
    app = create_app(make_settings(tmp_path, auth="jwt", clients_file=clients, max_header_bytes=2048))
    with spec_client(app) as client, capture_logs() as logs:
        response = client.post(SERVICE, json={}, headers={"X-Padding": "p" * 3000})
    assert response.status_code == 431
    assert is_operation_outcome(response.json(), "too-long")
    events = [e["event"] for e in logs]
    assert "request_headers_too_large" in events and "cds_client_rejected" not in events


def test_request_headers_at_the_cap_are_served(tmp_path: Path) -> None:
    with make_client(tmp_path, max_header_bytes=2048) as client:
        base = client.build_request("GET", "/cds-services", headers={"X-Padding": ""})
        room = 2048 - header_bytes({"headers": base.headers.raw})
        response = client.get("/cds-services", headers={"X-Padding": "p" * room})
        over = client.get("/cds-services", headers={"X-Padding": "p" * (room + 1)})
    assert response.status_code == 200, response.text
    assert over.status_code == 431


def test_the_header_cap_defaults_to_16_kib(tmp_path: Path) -> None:
    assert make_settings(tmp_path).max_header_bytes == 16 * 1024


# -------------------------------------------------------------------------------------- disconnect


def test_a_client_that_disconnects_mid_request_is_logged_at_info_not_error(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path), clock=lambda: NOW)
    body = json.dumps(bare_request()).encode()
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": SERVICE,
        "raw_path": SERVICE.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    # The lifespan runs: the app is as served.
    with spec_client(app, raise_server_exceptions=True), capture_logs() as logs:
        asyncio.run(app(scope, receive, send))
    disconnects = [e for e in logs if e["event"] == "client_disconnected"]
    assert len(disconnects) == 1 and disconnects[0]["log_level"] == "info"
    assert not [e for e in logs if e["log_level"] in {"error", "critical"}]


# --------------------------------------------------------------------------------------- start-up


def test_the_start_up_says_what_the_service_will_do_in_json_and_in_plain_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = tmp_path / "clients.yaml"
    clients.write_text(yaml.safe_dump([{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/k"}]))
    settings = make_settings(
        tmp_path,
        auth="jwt",
        clients_file=clients,
        audience="https://cds.hospital.org/cds-services",
        cors_origins=[EHR_ORIGIN],
        public_base_url="https://cds.hospital.org",
    )
    app = create_app(settings, clock=lambda: NOW)
    capsys.readouterr()
    with capture_logs() as logs, spec_client(app, raise_server_exceptions=True):
        pass
    err = capsys.readouterr().err
    start = next(e for e in logs if e["event"] == "service.start")
    assert start["audience"] == "https://cds.hospital.org/cds-services"
    assert start["fhir_allowlist"] == settings.fhir_allowlist and start["cors_origins"] == [EHR_ORIGIN]
    assert start["clients"] == 1 and start["build"] == cds.build() and start["trials"]
    for words in (
        "1 trusted client(s)",
        "https://cds.hospital.org/cds-services",
        settings.fhir_allowlist[0],
        EHR_ORIGIN,
        cds.build(),
        *start["trials"],
    ):
        assert words in err
    events = {e["event"] for e in logs}
    assert "service.public_base_url_derived" not in events and "service.audience_derived" not in events


def test_card_links_that_follow_the_host_header_are_warned_about_at_start_up(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    with capture_logs() as logs, client:
        pass
    warning = next(e for e in logs if e["event"] == "service.public_base_url_derived")
    assert warning["log_level"] == "warning" and "TRIAL_CDS_PUBLIC_BASE_URL" in warning["hint"]
