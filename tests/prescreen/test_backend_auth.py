"""cds.prescreen.backend_auth: SMART Backend Services (client credentials, private_key_jwt signed with the
client's key) and its use by the bulk export; the assertion is verified here with the public key only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from fhir_builders import patient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from cds.prescreen.backend_auth import BackendServices, BulkAuth, BulkAuthError, auth_from_options
from cds.prescreen.bulk_export import export_to_ndjson

BASE = "https://fhir.example.org/r4"
TOKEN_URL = "https://auth.example.org/token"
CLIENT = "trial-cds-prescreen"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def token_server(requests: list[httpx.Request], *, expires_in: int = 300, refuse: bool = False) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.path == "/r4/.well-known/smart-configuration":
            configuration = {"token_endpoint": TOKEN_URL, "grant_types_supported": ["client_credentials"]}
            return httpx.Response(200, json=configuration)
        if str(request.url) == TOKEN_URL:
            if refuse:
                return httpx.Response(401, json={"error": "invalid_client", "error_description": "unknown kid"})
            return httpx.Response(
                200, json={"access_token": f"at-{len(requests)}", "token_type": "bearer", "expires_in": expires_in}
            )
        return httpx.Response(404)

    return httpx.Client(transport=httpx.MockTransport(handle))


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def public_only(key: RSAKey | ECKey) -> RSAKey | ECKey:
    return type(key).import_key(key.as_dict(private=False))


@pytest.mark.parametrize(
    ("key", "algorithm"), [(RSAKey.generate_key(2048), "RS384"), (ECKey.generate_key("P-384"), "ES384")]
)
def test_the_client_assertion_is_signed_with_the_private_key_and_verifies_with_the_public_one(
    tmp_path: Path, key: RSAKey | ECKey, algorithm: str
) -> None:
    pem = tmp_path / "client.pem"
    pem.write_bytes(key.as_pem(private=True))
    clock = Clock()
    backend = BackendServices.from_key_file(CLIENT, pem, kid="key-2026")
    backend.clock = clock
    requests: list[httpx.Request] = []
    with token_server(requests) as http:
        token = BulkAuth(backend=backend).access_token(http, BASE)
    assert token == "at-2"
    discovery, token_request = requests
    assert discovery.url == f"{BASE}/.well-known/smart-configuration"
    sent = form(token_request)
    assert sent["grant_type"] == "client_credentials"
    assert sent["scope"] == "system/*.rs"
    assert sent["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    verified = jwt.decode(sent["client_assertion"], public_only(key), algorithms=[algorithm])
    assert verified.header == {"alg": algorithm, "kid": "key-2026", "typ": "JWT"}
    claims = verified.claims
    assert (claims["iss"], claims["sub"], claims["aud"]) == (CLIENT, CLIENT, TOKEN_URL)
    assert claims["exp"] == int(clock.now) + 300
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 32


def test_an_assertion_from_another_key_does_not_verify(tmp_path: Path) -> None:
    pem = tmp_path / "client.pem"
    pem.write_bytes(ECKey.generate_key("P-384").as_pem(private=True))
    assertion = BackendServices.from_key_file(CLIENT, pem, kid="k").assertion(TOKEN_URL)
    from joserfc.errors import BadSignatureError

    with pytest.raises(BadSignatureError):
        jwt.decode(assertion, public_only(ECKey.generate_key("P-384")), algorithms=["ES384"])


def test_a_private_jwk_file_gives_its_own_kid(tmp_path: Path) -> None:
    key = ECKey.generate_key("P-384", parameters={"kid": "from-the-jwks"})
    path = tmp_path / "client.jwk.json"
    path.write_text(json.dumps(key.as_dict(private=True)))
    backend = BackendServices.from_key_file(CLIENT, path)
    assert (backend.kid, backend.algorithm) == ("from-the-jwks", "ES384")


def test_a_key_that_is_not_private_or_not_p384_is_refused(tmp_path: Path) -> None:
    public = tmp_path / "public.jwk.json"
    public.write_text(json.dumps(RSAKey.generate_key(2048).as_dict(private=False)))
    with pytest.raises(BulkAuthError, match="private key is needed"):
        BackendServices.from_key_file(CLIENT, public)
    p256 = tmp_path / "p256.pem"
    p256.write_bytes(ECKey.generate_key("P-256").as_pem(private=True))
    with pytest.raises(BulkAuthError, match="ES384 needs a P-384 key"):
        BackendServices.from_key_file(CLIENT, p256)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(BulkAuthError, match="not a PEM private key or a private JWK"):
        BackendServices.from_key_file(CLIENT, junk)


def backend_with_clock(tmp_path: Path) -> tuple[BackendServices, Clock]:
    pem = tmp_path / "client.pem"
    pem.write_bytes(ECKey.generate_key("P-384").as_pem(private=True))
    backend = BackendServices.from_key_file(CLIENT, pem, token_url=TOKEN_URL)
    clock = Clock()
    backend.clock = clock
    return backend, clock


def test_the_access_token_is_reused_until_shortly_before_it_expires(tmp_path: Path) -> None:
    backend, clock = backend_with_clock(tmp_path)
    auth = BulkAuth(backend=backend)
    requests: list[httpx.Request] = []
    with token_server(requests, expires_in=300) as http:
        first = auth.access_token(http, BASE)
        clock.now += 200
        assert auth.access_token(http, BASE) == first
        clock.now += 60
        assert auth.access_token(http, BASE) != first
    assert len(requests) == 2  # the token URL was given: no discovery


def test_a_refusal_by_the_token_endpoint_names_the_oauth_error_but_not_the_assertion(tmp_path: Path) -> None:
    backend, _ = backend_with_clock(tmp_path)
    requests: list[httpx.Request] = []
    with token_server(requests, refuse=True) as http, pytest.raises(BulkAuthError) as refused:
        BulkAuth(backend=backend).access_token(http, BASE)
    message = str(refused.value)
    assert "HTTP 401: invalid_client (unknown kid)" in message
    assert form(requests[0])["client_assertion"] not in message


def test_the_bulk_export_sends_the_backend_services_token(tmp_path: Path) -> None:
    backend, _ = backend_with_clock(tmp_path)
    seen: list[httpx.Request] = []
    status = f"{BASE}/$export-poll-status?_jobId=1"

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        url = str(request.url)
        if url == TOKEN_URL:
            return httpx.Response(200, json={"access_token": "backend-token", "expires_in": 300})
        if url == f"{BASE}/metadata":
            return httpx.Response(200, json={"resourceType": "CapabilityStatement", "rest": [
                {"operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}]}]})
        if url.startswith(f"{BASE}/$export?"):
            return httpx.Response(202, headers={"Content-Location": status})
        if url == status and request.method == "GET":
            done: dict[str, Any] = {"transactionTime": "2026-11-01T00:00:00Z", "requiresAccessToken": True,
                                    "output": [{"type": "Patient", "url": f"{BASE}/files/1"}], "error": []}
            return httpx.Response(200, json=done)
        if url == status:
            return httpx.Response(202)
        if url == f"{BASE}/files/1":
            return httpx.Response(200, content=json.dumps(patient(pid="p1")).encode() + b"\n")
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(handle)) as http:
        result = export_to_ndjson(BASE, tmp_path / "out", BulkAuth(backend=backend), None, ["Patient"], http=http)
    assert result.counts == {"Patient": 1}
    to_server = [r for r in seen if str(r.url).startswith(BASE) and "metadata" not in str(r.url)]
    assert to_server and all(r.headers["Authorization"] == "Bearer backend-token" for r in to_server)
    assert len([r for r in seen if str(r.url) == TOKEN_URL]) == 1


def test_the_command_line_options_give_a_token_a_backend_client_or_nothing(tmp_path: Path) -> None:
    pem = tmp_path / "client.pem"
    pem.write_bytes(RSAKey.generate_key(2048).as_pem(private=True))
    assert auth_from_options(None) is None
    assert auth_from_options("t-1") == BulkAuth(token="t-1")
    backend = auth_from_options(None, CLIENT, pem, kid="k-1")
    assert backend is not None and backend.backend is not None
    assert (backend.backend.client_id, backend.backend.kid, backend.backend.algorithm) == (CLIENT, "k-1", "RS384")
    with pytest.raises(BulkAuthError, match="both a client id and its private key"):
        auth_from_options(None, CLIENT, None)
    with pytest.raises(BulkAuthError, match="not both"):
        auth_from_options("t-1", CLIENT, pem)
