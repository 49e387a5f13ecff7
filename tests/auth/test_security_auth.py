"""Client authentication end to end, through ``create_app`` in jwt mode: a clients file, the EHR's JWK Set
served by respx, the real routes. ``tests/auth/test_auth.py`` covers the token rules one by one on a tiny app;
this checks they are wired to discovery, service and feedback, and what ``trial-cds serve`` starts with."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import yaml
from api_support import NOW, SERVICE, full_request, is_operation_outcome, make_settings, spec_client
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey
from structlog.testing import capture_logs
from typer.testing import CliRunner

from cds.api import create_app
from cds.auth.errors import UNAUTHORIZED_OUTCOME

AUDIENCE = "https://cds.example.org/cds-services"
ISS = "https://ehr.example.com/"
JWKS_URL = "https://ehr.example.com/.well-known/jwks.json"


@pytest.fixture(scope="module")
def ehr_key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": "ehr-1"}, auto_kid=False)


@pytest.fixture(scope="module")
def forger_key() -> ECKey:
    # Same kid as the EHR's real key: only the signature tells them apart.
    return ECKey.generate_key("P-384", parameters={"kid": "ehr-1"}, auto_kid=False)


def token(key: ECKey, *, alg: str = "ES384", **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"iss": ISS, "sub": "ehr", "aud": AUDIENCE, "iat": now, "exp": now + 300}
    body["jti"] = str(uuid.uuid4())
    body.update(claims)
    return jwt.encode({"alg": alg, "typ": "JWT", "kid": key.kid}, body, key, algorithms=[alg])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def jwks(ehr_key: ECKey) -> Iterator[respx.Route]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield router.get(JWKS_URL).mock(
            return_value=httpx.Response(200, json={"keys": [ehr_key.as_dict(private=False)]})
        )


@pytest.fixture
def jwt_app(tmp_path: Path) -> FastAPI:
    clients = tmp_path / "clients.yaml"
    clients.write_text(yaml.safe_dump([{"name": "EHR", "iss": ISS, "jwks_url": JWKS_URL}]), encoding="utf-8")
    return create_app(make_settings(tmp_path, auth="jwt", clients_file=clients, audience=AUDIENCE), clock=lambda: NOW)


def assert_401_without_reason(response: httpx.Response) -> None:
    """A 401 with the one OperationOutcome of every refusal: what is expected, never what was wrong."""
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == UNAUTHORIZED_OUTCOME
    assert is_operation_outcome(response.json(), "login")


def test_discovery_needs_a_valid_token_and_a_token_works_once(
    jwt_app: FastAPI, jwks: respx.Route, ehr_key: ECKey, forger_key: ECKey
) -> None:
    with spec_client(jwt_app) as client:
        good = token(ehr_key)
        response = client.get("/cds-services", headers=bearer(good))
        assert response.status_code == 200
        assert "trial-eligibility" in [s["id"] for s in response.json()["services"]]

        assert_401_without_reason(client.get("/cds-services"))  # no token
        assert_401_without_reason(client.get("/cds-services", headers=bearer(good)))  # replayed jti
        assert_401_without_reason(client.get("/cds-services", headers=bearer(token(forger_key))))  # forged signature
        assert_401_without_reason(
            client.get("/cds-services", headers=bearer(token(ehr_key, aud="https://other.example")))
        )
        unsigned = good.rsplit(".", 1)[0] + "."
        assert_401_without_reason(client.get("/cds-services", headers=bearer(unsigned)))
        assert_401_without_reason(client.get("/cds-services", headers={"Authorization": "Basic dXNlcjpwYXNz"}))
    assert jwks.called


def test_service_and_feedback_are_guarded_too(
    jwt_app: FastAPI, jwks: respx.Route, ehr_key: ECKey, forger_key: ECKey
) -> None:
    with spec_client(jwt_app) as client:
        body = full_request(client)
        assert_401_without_reason(client.post(SERVICE, json=body))
        assert_401_without_reason(client.post(SERVICE, json=body, headers=bearer(token(forger_key))))
        response = client.post(SERVICE, json=body, headers=bearer(token(ehr_key, aud=f"{AUDIENCE}/trial-eligibility")))
        assert response.status_code == 200 and response.json()["cards"], response.text
        card = response.json()["cards"][0]["uuid"]

        feedback = {
            "feedback": [
                {
                    "card": card,
                    "outcome": "overridden",
                    "overrideReason": {"reason": {"code": "not-interested", "display": "Not interested"}},
                    "outcomeTimestamp": "2026-11-01T12:05:00Z",
                }
            ]
        }
        store = jwt_app.state.cds.store
        assert_401_without_reason(client.post(f"{SERVICE}/feedback", json=feedback))
        assert_401_without_reason(client.post(f"{SERVICE}/feedback", json=feedback, headers=bearer(token(forger_key))))
        assert store.feedback_count() == 0  # a refused call writes nothing
        assert client.post(f"{SERVICE}/feedback", json=feedback, headers=bearer(token(ehr_key))).status_code == 200
        assert store.feedback_count() == 1


def test_an_unauthenticated_bad_body_still_gets_only_a_401(jwt_app: FastAPI, jwks: respx.Route) -> None:
    # Authentication runs before the body is read: an unauthenticated caller learns nothing about parsing.
    with spec_client(jwt_app) as client:
        assert_401_without_reason(
            client.post(SERVICE, content=b"{not json", headers={"content-type": "application/json"})
        )
        assert_401_without_reason(client.post(SERVICE, content=b"x" * 100_000))
    assert not jwks.called


def test_health_and_trial_pages_stay_open(jwt_app: FastAPI, jwks: respx.Route) -> None:
    with spec_client(jwt_app) as client:
        assert client.get("/health").status_code == 200
        missing = client.get("/trials/nope", headers={"Accept": "application/json"})
        assert missing.status_code == 404 and is_operation_outcome(missing.json(), "not-found")


# ---------------------------------------------------------------------------------------------------
# What `trial-cds serve` starts.


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Runs ``trial-cds serve`` with uvicorn replaced: the app it would serve is captured."""
    for name in list(__import__("os").environ):
        if name.startswith("TRIAL_CDS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRIAL_CDS_DATABASE_URL", f"sqlite:///{tmp_path / 'serve.sqlite3'}")
    captured: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        captured["app"] = app
        captured["kwargs"] = kwargs

    monkeypatch.setattr("uvicorn.run", fake_run)
    return captured


def _serve(*args: str) -> Any:
    from cds.cli import app as cli

    return CliRunner().invoke(cli, ["serve", *args])


def test_plain_serve_without_a_clients_file_refuses_to_start_and_says_what_to_set(served: dict[str, Any]) -> None:
    result = _serve()
    assert result.exit_code == 2
    assert "TRIAL_CDS_CLIENTS_FILE is not set" in result.output and "TRIAL_CDS_AUTH=none" in result.output
    assert "Traceback" not in result.output
    assert "app" not in served  # nothing listened


def test_serve_with_an_invalid_clients_file_refuses_to_start(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clients = tmp_path / "clients.yaml"
    clients.write_text(yaml.safe_dump([{"name": "EHR", "iss": ISS}]), encoding="utf-8")  # no key set
    monkeypatch.setenv("TRIAL_CDS_CLIENTS_FILE", str(clients))
    result = _serve()
    assert result.exit_code == 2
    assert "TRIAL_CDS_CLIENTS_FILE" in result.output and "needs 'jwks', 'jwks_url' or 'allowed_jku'" in result.output
    assert "app" not in served


def test_serve_refuses_cors_for_every_origin_outside_demo_mode(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAL_CDS_AUTH", "none")
    monkeypatch.setenv("TRIAL_CDS_CORS_ORIGINS", "*")
    result = _serve()
    assert result.exit_code == 2
    assert "invalid configuration" in result.output and "TRIAL_CDS_CORS_ORIGINS=*" in result.output
    assert "app" not in served
    assert _serve("--demo").exit_code == 0  # demo mode opens CORS anyway


def test_plain_serve_with_clients_is_jwt_and_refuses_unsigned_calls(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clients = tmp_path / "clients.yaml"
    clients.write_text(yaml.safe_dump([{"name": "EHR", "iss": ISS, "jwks_url": JWKS_URL}]), encoding="utf-8")
    monkeypatch.setenv("TRIAL_CDS_CLIENTS_FILE", str(clients))
    result = _serve()
    assert result.exit_code == 0, result.output
    app = served["app"]
    assert app.state.settings.auth == "jwt" and app.state.settings.fhir_allowlist == []
    assert served["kwargs"]["h11_max_incomplete_event_size"] > app.state.settings.max_header_bytes
    with capture_logs() as logs, spec_client(app) as client:
        assert_401_without_reason(client.get("/cds-services"))
        assert_401_without_reason(client.post(SERVICE, json={}))
        assert client.get("/openapi.json").status_code == 404  # no schema or docs outside demo mode
        assert client.get("/docs").status_code == 404
    start = next(e for e in logs if e["event"] == "service.start")
    assert start["clients"] == 1 and start["auth"] == "jwt"
    warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert "service.auth_disabled" not in warnings and "service.no_clients" not in warnings
    assert {"service.audience_derived", "service.public_base_url_derived"} <= set(warnings)


def test_serve_demo_warns_that_authentication_is_off(served: dict[str, Any]) -> None:
    result = _serve("--demo")
    assert result.exit_code == 0, result.output
    assert "NO authentication" in result.output
    with capture_logs() as logs, spec_client(served["app"], raise_server_exceptions=True) as client:
        assert client.get("/cds-services").status_code == 200
    assert any(e["event"] == "service.auth_disabled" and e["log_level"] == "warning" for e in logs)


def test_auth_none_by_environment_warns_at_start_up(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAL_CDS_AUTH", "none")
    assert _serve().exit_code == 0
    with capture_logs() as logs, spec_client(served["app"], raise_server_exceptions=True) as client:
        assert client.get("/cds-services").status_code == 200
    assert any(e["event"] == "service.auth_disabled" and e["log_level"] == "warning" for e in logs)
