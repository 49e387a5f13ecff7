"""Authentication of CDS clients (cds.auth): a tiny app with protected routes, JWK Sets served by respx."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import structlog
import yaml
from fastapi import Depends, FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey
from structlog.testing import capture_logs

import cds.auth.jwks as jwks_module
from cds.auth import (
    AuthError,
    VerifiedClient,
    auth_exception_handler,
    close_auth_state,
    require_cds_client,
)
from cds.auth.clients import ClientsFileError, parse_clients
from cds.auth.errors import UNAUTHORIZED_OUTCOME
from cds.auth.replay import ReplayStore
from cds.settings import Settings

AUDIENCE = "https://cds.example.org/cds-services"
EHR_ISS = "https://ehr.example.com/"
EHR_JWKS = "https://ehr.example.com/.well-known/jwks.json"
EHR_JKU = "https://ehr.example.com/jwks/rotating.json"
EVIL_JKU = "https://evil.example.net/jwks.json"
UNPINNED_ISS = "https://unpinned-ehr.example.com"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
TENANT_ISS = "https://tenanted-ehr.example.com"
TENANT_JWKS = "https://tenanted-ehr.example.com/jwks.json"

# ---------------------------------------------------------------------------------------------- keys


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": "ec-384"}, auto_kid=False)


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-2048"}, auto_kid=False)


@pytest.fixture(scope="module")
def jku_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "jku-256"}, auto_kid=False)


def jwks_of(*keys: Key) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def claims_for(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": EHR_ISS,
        "sub": "ehr-client",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key: Key, alg: str, claims: dict[str, Any] | None = None, **header: Any) -> str:
    hdr: dict[str, Any] = {"alg": alg, "typ": "JWT", "kid": key.kid}
    hdr.update(header)
    hdr = {k: v for k, v in hdr.items() if v is not None}
    return jwt.encode(hdr, claims if claims is not None else claims_for(), key, algorithms=[alg])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_token(header: dict[str, Any], claims: dict[str, Any], signing_input_signer: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(signing_input_signer(signing_input.encode('ascii')))}"


# ----------------------------------------------------------------------------------------------- app


@pytest.fixture
def clients_file(tmp_path: Path) -> Path:
    path = tmp_path / "clients.yaml"
    path.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Example EHR",
                    "iss": EHR_ISS,
                    "jwks_url": EHR_JWKS,
                    "allowed_jku": [EHR_JKU],
                },
                {"name": "Unpinned EHR", "iss": UNPINNED_ISS, "allowed_jku": [EHR_JKU]},
                {
                    "name": "Tenanted EHR",
                    "iss": TENANT_ISS,
                    "jwks_url": TENANT_JWKS,
                    "tenants": ["hospital-a", "hospital-b"],
                },
            ]
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'trial-cds.sqlite3'}"


def make_settings(clients_file: Path | None, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth": "jwt",
        "clients_file": clients_file,
        "audience": AUDIENCE,
        "database_url": db_url,
        "jwt_leeway_s": 60,
        "jwks_timeout_s": 2.0,
        "jwks_cache_s": 300,
    }
    values.update(overrides)
    return Settings(**values)


def make_app(settings: Settings, *, empty_401: bool = True) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    if empty_401:
        app.add_exception_handler(AuthError, auth_exception_handler)

    @app.get("/cds-services")
    async def discovery(client: VerifiedClient = Depends(require_cds_client)) -> dict[str, Any]:  # noqa: B008
        return {"iss": client.iss, "sub": client.sub, "tenant": client.tenant, "jti": client.jti}

    @app.post("/cds-services/{service_id}")
    async def service(
        service_id: str,
        client: VerifiedClient = Depends(require_cds_client),  # noqa: B008
    ) -> dict[str, Any]:
        return {"service": service_id, "iss": client.iss}

    @app.post("/cds-services/{service_id}/feedback")
    async def feedback(
        service_id: str,
        client: VerifiedClient = Depends(require_cds_client),  # noqa: B008
    ) -> dict[str, Any]:
        return {"feedback": service_id, "iss": client.iss}

    return app


class JWKSServer:
    """The EHR side: JWK Sets served at fake https URLs through respx."""

    def __init__(self, router: respx.MockRouter, ec_key: ECKey, rsa_key: RSAKey, jku_key: ECKey) -> None:
        self.sets: dict[str, dict[str, Any]] = {
            EHR_JWKS: jwks_of(ec_key, rsa_key),
            EHR_JKU: jwks_of(jku_key),
            TENANT_JWKS: jwks_of(ec_key),
        }
        self.routes = {url: router.get(url).mock(side_effect=self._serve(url)) for url in self.sets}
        self.evil = router.get(EVIL_JKU).mock(return_value=httpx.Response(200, json=jwks_of(ec_key)))

    def _serve(self, url: str) -> Callable[[httpx.Request], httpx.Response]:
        def serve(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=self.sets[url])

        return serve

    def calls(self, url: str) -> int:
        return self.routes[url].call_count


@pytest.fixture
def ehr(ec_key: ECKey, rsa_key: RSAKey, jku_key: ECKey) -> Iterator[JWKSServer]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        yield JWKSServer(router, ec_key, rsa_key, jku_key)


@pytest.fixture
async def app(clients_file: Path, db_url: str) -> AsyncIterator[FastAPI]:
    application = make_app(make_settings(clients_file, db_url))
    yield application
    close_auth_state(application)


@pytest.fixture
async def client(app: FastAPI, ehr: JWKSServer) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def assert_rejected(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == UNAUTHORIZED_OUTCOME


# ------------------------------------------------------------------------------------------- accepted


async def test_valid_es384_token_is_accepted(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    claims = claims_for(tenant="t-1")
    response = await client.get("/cds-services", headers=bearer(sign(ec_key, "ES384", claims)))
    assert response.status_code == 200
    assert response.json() == {"iss": EHR_ISS, "sub": "ehr-client", "tenant": "t-1", "jti": claims["jti"]}


async def test_valid_rs384_token_is_accepted(client: httpx.AsyncClient, rsa_key: RSAKey) -> None:
    response = await client.get("/cds-services", headers=bearer(sign(rsa_key, "RS384")))
    assert response.status_code == 200


@pytest.mark.parametrize("alg", ["RS256", "RS512", "PS256", "PS384", "PS512"])
async def test_other_rsa_algorithms_are_accepted(client: httpx.AsyncClient, rsa_key: RSAKey, alg: str) -> None:
    response = await client.get("/cds-services", headers=bearer(sign(rsa_key, alg)))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "aud"),
    [
        ("/cds-services", AUDIENCE + "/"),
        ("/cds-services", [AUDIENCE, "https://other.example.org"]),
        ("/cds-services/trial-screen", AUDIENCE),
        ("/cds-services/trial-screen", AUDIENCE + "/trial-screen"),  # the spec's per-endpoint aud
        ("/cds-services/trial-screen/feedback", AUDIENCE + "/trial-screen/feedback"),
        ("/cds-services/trial-screen/feedback", AUDIENCE + "/trial-screen"),
    ],
)
async def test_accepted_audiences(client: httpx.AsyncClient, ec_key: ECKey, path: str, aud: Any) -> None:
    token = sign(ec_key, "ES384", claims_for(aud=aud))
    if path == "/cds-services":
        response = await client.get(path, headers=bearer(token))
    else:
        response = await client.post(path, headers=bearer(token), json={})
    assert response.status_code == 200


async def test_expiry_within_leeway_is_accepted(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    now = int(time.time())
    token = sign(ec_key, "ES384", claims_for(iat=now - 100, exp=now - 30))
    assert (await client.get("/cds-services", headers=bearer(token))).status_code == 200


# ------------------------------------------------------------------------------------------- rejected


async def test_expired_token_is_rejected(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    now = int(time.time())
    token = sign(ec_key, "ES384", claims_for(iat=now - 4000, exp=now - 3600))
    assert_rejected(await client.get("/cds-services", headers=bearer(token)))


async def test_iat_in_the_future_is_rejected(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    now = int(time.time())
    token = sign(ec_key, "ES384", claims_for(iat=now + 600, exp=now + 900))
    assert_rejected(await client.get("/cds-services", headers=bearer(token)))


@pytest.mark.parametrize(
    "aud",
    [
        "https://other.example.org/cds-services",
        "https://cds.example.org/cds-services/trial-screen",  # another endpoint than the one called
        "https://cds.example.org",
        "https://cds.example.org/cds-services-evil",
        ["https://other.example.org/cds-services"],
    ],
)
async def test_wrong_audience_is_rejected(client: httpx.AsyncClient, ec_key: ECKey, aud: Any) -> None:
    token = sign(ec_key, "ES384", claims_for(aud=aud))
    assert_rejected(await client.get("/cds-services", headers=bearer(token)))


async def test_unconfigured_issuer_is_rejected(client: httpx.AsyncClient, ehr: JWKSServer, ec_key: ECKey) -> None:
    token = sign(ec_key, "ES384", claims_for(iss="https://stranger.example.com/"))
    assert_rejected(await client.get("/cds-services", headers=bearer(token)))
    assert ehr.calls(EHR_JWKS) == 0


async def test_issuer_must_match_exactly(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    token = sign(ec_key, "ES384", claims_for(iss=EHR_ISS.rstrip("/")))
    assert_rejected(await client.get("/cds-services", headers=bearer(token)))


async def test_unknown_kid_is_rejected_after_one_refetch(
    client: httpx.AsyncClient, ehr: JWKSServer, ec_key: ECKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks_module, "MIN_REFETCH_INTERVAL_S", 0.0)
    assert (await client.get("/cds-services", headers=bearer(sign(ec_key, "ES384")))).status_code == 200
    assert ehr.calls(EHR_JWKS) == 1

    stranger = ECKey.generate_key("P-384", parameters={"kid": "not-published"}, auto_kid=False)
    assert_rejected(await client.get("/cds-services", headers=bearer(sign(stranger, "ES384"))))
    assert ehr.calls(EHR_JWKS) == 2  # re-fetched once, not more


async def test_key_rotation_is_picked_up_by_the_refetch(
    client: httpx.AsyncClient, ehr: JWKSServer, ec_key: ECKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jwks_module, "MIN_REFETCH_INTERVAL_S", 0.0)
    assert (await client.get("/cds-services", headers=bearer(sign(ec_key, "ES384")))).status_code == 200
    rotated = ECKey.generate_key("P-384", parameters={"kid": "ec-384-next"}, auto_kid=False)
    ehr.sets[EHR_JWKS] = jwks_of(ec_key, rotated)
    assert (await client.get("/cds-services", headers=bearer(sign(rotated, "ES384")))).status_code == 200
    assert ehr.calls(EHR_JWKS) == 2


async def test_unknown_kids_cannot_make_the_service_hammer_the_ehr(
    client: httpx.AsyncClient, ehr: JWKSServer, ec_key: ECKey
) -> None:
    assert (await client.get("/cds-services", headers=bearer(sign(ec_key, "ES384")))).status_code == 200
    for n in range(5):
        stranger = ECKey.generate_key("P-384", parameters={"kid": f"made-up-{n}"}, auto_kid=False)
        assert_rejected(await client.get("/cds-services", headers=bearer(sign(stranger, "ES384"))))
    assert ehr.calls(EHR_JWKS) == 1  # the set was fetched moments ago: no re-fetch yet


async def test_signature_by_another_key_with_a_published_kid_is_rejected(
    client: httpx.AsyncClient, ec_key: ECKey
) -> None:
    assert ec_key.kid is not None
    impostor = ECKey.generate_key("P-384", parameters={"kid": ec_key.kid}, auto_kid=False)
    assert_rejected(await client.get("/cds-services", headers=bearer(sign(impostor, "ES384"))))


async def test_alg_none_is_rejected(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    token = raw_token({"alg": "none", "typ": "JWT", "kid": ec_key.kid}, claims_for(), lambda _: b"")
    assert_rejected(await client.get("/cds-services", headers=bearer(token)))
    assert_rejected(await client.get("/cds-services", headers=bearer(token.rstrip("."))))


async def test_hs256_signed_with_the_public_key_is_rejected(client: httpx.AsyncClient, rsa_key: RSAKey) -> None:
    public_pem = rsa_key.as_pem(private=False)
    for secret in (public_pem, json.dumps(rsa_key.as_dict(private=False)).encode()):

        def hs256(data: bytes, secret: bytes = secret) -> bytes:
            return hmac.new(secret, data, hashlib.sha256).digest()

        token = raw_token({"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}, claims_for(), hs256)
        assert_rejected(await client.get("/cds-services", headers=bearer(token)))


async def test_missing_kid_typ_or_jti_is_rejected(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    no_kid = jwt.encode({"alg": "ES384", "typ": "JWT"}, claims_for(), ec_key, algorithms=["ES384"])
    assert "kid" not in json.loads(base64.urlsafe_b64decode(no_kid.split(".")[0] + "=="))
    assert_rejected(await client.get("/cds-services", headers=bearer(no_kid)))
    assert_rejected(await client.get("/cds-services", headers=bearer(sign(ec_key, "ES384", typ="at+jwt"))))
    for missing in ("jti", "exp", "iat", "aud"):
        token = sign(ec_key, "ES384", claims_for(**{missing: None}))
        assert_rejected(await client.get("/cds-services", headers=bearer(token)))


async def test_replayed_jti_is_rejected_also_by_another_app_on_the_same_database(
    client: httpx.AsyncClient, ec_key: ECKey, clients_file: Path, db_url: str, ehr: JWKSServer
) -> None:
    token = sign(ec_key, "ES384")
    assert (await client.get("/cds-services", headers=bearer(token))).status_code == 200
    assert_rejected(await client.get("/cds-services", headers=bearer(token)))

    # A second app instance (another worker or replica) with its own caches, same database file.
    other_app = make_app(make_settings(clients_file, db_url))
    try:
        async with asgi_client(other_app) as other:
            assert_rejected(await other.get("/cds-services", headers=bearer(token)))
            fresh = sign(ec_key, "ES384")
            assert (await other.get("/cds-services", headers=bearer(fresh))).status_code == 200
        assert_rejected(await client.get("/cds-services", headers=bearer(fresh)))
    finally:
        close_auth_state(other_app)


async def test_concurrent_uses_of_one_token_succeed_once(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    token = sign(ec_key, "ES384")
    responses = await asyncio.gather(*(client.get("/cds-services", headers=bearer(token)) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] + [401] * 7


async def test_same_jti_from_another_issuer_is_not_a_replay(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    jti = str(uuid.uuid4())
    first = sign(ec_key, "ES384", claims_for(jti=jti))
    second = sign(ec_key, "ES384", claims_for(jti=jti, iss=TENANT_ISS, tenant="hospital-a"))
    assert (await client.get("/cds-services", headers=bearer(first))).status_code == 200
    assert (await client.get("/cds-services", headers=bearer(second))).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer a.b.c"},
    ],
)
async def test_missing_or_malformed_authorization_is_rejected(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert_rejected(await client.get("/cds-services", headers=headers))


async def test_without_the_handler_the_401_still_says_nothing(clients_file: Path, db_url: str, ehr: JWKSServer) -> None:
    app = make_app(make_settings(clients_file, db_url), empty_401=False)
    try:
        async with asgi_client(app) as c:
            response = await c.get("/cds-services")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "Unauthorized"}
    finally:
        close_auth_state(app)


async def test_jku_of_a_client_without_pinned_keys_is_fetched(
    client: httpx.AsyncClient, ehr: JWKSServer, jku_key: ECKey
) -> None:
    token = sign(jku_key, "ES256", claims_for(iss=UNPINNED_ISS), jku=EHR_JKU)
    assert (await client.get("/cds-services", headers=bearer(token))).status_code == 200
    assert ehr.calls(EHR_JKU) == 1
    assert ehr.calls(EHR_JWKS) == 0


async def test_jku_of_a_client_pinned_by_jwks_url_is_checked_not_fetched(
    client: httpx.AsyncClient, ehr: JWKSServer, ec_key: ECKey
) -> None:
    token = sign(ec_key, "ES384", jku=EHR_JKU)
    assert (await client.get("/cds-services", headers=bearer(token))).status_code == 200
    assert ehr.calls(EHR_JWKS) == 1
    assert ehr.calls(EHR_JKU) == 0


async def test_a_token_signed_by_the_jku_keys_of_a_pinned_client_is_rejected(
    client: httpx.AsyncClient, ehr: JWKSServer, jku_key: ECKey
) -> None:
    token = sign(jku_key, "ES256", jku=EHR_JKU)  # the key published at the jku, not in the pinned set
    assert_rejected(await client.get("/cds-services", headers=bearer(token)))
    assert ehr.calls(EHR_JKU) == 0


def sandbox_clients_file(tmp_path: Path, key: ECKey) -> Path:
    """The reference sandbox's entry as docs/security.md shows it: ES384 keys pinned inline, its jku allowed."""
    path = tmp_path / "sandbox-clients.yaml"
    entry = {"name": "CDS Hooks sandbox", "iss": SANDBOX_ISS, "jwks": jwks_of(key), "allowed_jku": [SANDBOX_JKU]}
    path.write_text(yaml.safe_dump({"clients": [entry]}), encoding="utf-8")
    return path


async def test_inline_keys_verify_an_es384_client_whose_jku_is_never_fetched(
    tmp_path: Path, db_url: str, ec_key: ECKey
) -> None:
    app = make_app(make_settings(sandbox_clients_file(tmp_path, ec_key), db_url))
    # No route at all: any HTTP request (to the unreachable jku or anywhere else) fails the test.
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as network:
        try:
            async with asgi_client(app) as c:
                token = sign(ec_key, "ES384", claims_for(iss=SANDBOX_ISS), jku=SANDBOX_JKU)
                response = await c.get("/cds-services", headers=bearer(token))
        finally:
            close_auth_state(app)
    assert response.status_code == 200, response.text
    assert response.json()["iss"] == SANDBOX_ISS
    assert network.calls.call_count == 0


async def test_inline_keys_still_require_the_jku_on_the_allow_list(tmp_path: Path, db_url: str, ec_key: ECKey) -> None:
    app = make_app(make_settings(sandbox_clients_file(tmp_path, ec_key), db_url))
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as network:
        try:
            async with asgi_client(app) as c:
                token = sign(ec_key, "ES384", claims_for(iss=SANDBOX_ISS), jku=EVIL_JKU)
                with capture_logs() as logs:
                    assert_rejected(await c.get("/cds-services", headers=bearer(token)))
        finally:
            close_auth_state(app)
    assert network.calls.call_count == 0
    assert [entry["reason"] for entry in logs if entry["event"] == "cds_client_rejected"] == ["jku_not_allowed"]


async def test_inline_keys_reject_a_kid_they_do_not_hold(tmp_path: Path, db_url: str, ec_key: ECKey) -> None:
    other = ECKey.generate_key("P-384", parameters={"kid": "not-pinned"}, auto_kid=False)
    app = make_app(make_settings(sandbox_clients_file(tmp_path, ec_key), db_url))
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as network:
        try:
            async with asgi_client(app) as c:
                token = sign(other, "ES384", claims_for(iss=SANDBOX_ISS), jku=SANDBOX_JKU)
                assert_rejected(await c.get("/cds-services", headers=bearer(token)))
        finally:
            close_auth_state(app)
    assert network.calls.call_count == 0


@pytest.mark.parametrize("document", ["README.md", "docs/security.md"])
def test_the_documented_sandbox_clients_file_is_valid_once_its_keys_are_copied_in(document: str, ec_key: ECKey) -> None:
    text = (Path(__file__).resolve().parents[2] / document).read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml")[1:] if "iss: https://sandbox.cds-hooks.org" in b]
    assert len(blocks) == 1, f"{document} shows the sandbox's clients file once"
    data = yaml.safe_load(textwrap.dedent(blocks[0]))
    (entry,) = data["clients"]
    documented_key = entry["jwks"]["keys"][0]
    assert documented_key["crv"] == "P-384" and documented_key["alg"] == "ES384"
    entry["jwks"]["keys"] = [{**documented_key, **ec_key.as_dict(private=False)}]  # the copied public key
    client = parse_clients(data).get(SANDBOX_ISS)
    assert client is not None and client.pinned and client.jku_allowed(SANDBOX_JKU)


def test_a_client_gives_its_key_set_once(ec_key: ECKey) -> None:
    both = {"iss": SANDBOX_ISS, "jwks": jwks_of(ec_key), "jwks_url": SANDBOX_JKU}
    with pytest.raises(ClientsFileError, match="not both"):
        parse_clients([both])


def test_a_private_key_in_the_clients_file_is_refused_without_printing_it(ec_key: ECKey) -> None:
    private = ec_key.as_dict(private=True)
    with pytest.raises(ClientsFileError, match="private key material") as info:
        parse_clients([{"iss": SANDBOX_ISS, "jwks": {"keys": [private]}}])
    assert private["d"] not in str(info.value)


@pytest.mark.parametrize(
    "jwks",
    [{"keys": []}, {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}, {"no": "keys"}],
    ids=["empty", "symmetric-only", "not-a-jwk-set"],
)
def test_inline_keys_without_a_usable_signing_key_are_an_invalid_clients_file(jwks: dict[str, Any]) -> None:
    with pytest.raises(ClientsFileError, match="'jwks'"):
        parse_clients([{"iss": SANDBOX_ISS, "jwks": jwks}])


async def test_jku_not_on_the_allow_list_is_rejected_without_fetching_it(
    client: httpx.AsyncClient, ehr: JWKSServer, ec_key: ECKey
) -> None:
    token = sign(ec_key, "ES384", jku=EVIL_JKU)
    assert_rejected(await client.get("/cds-services", headers=bearer(token)))
    assert not ehr.evil.called
    assert ehr.calls(EHR_JWKS) == 0


async def test_tenant_allow_list(client: httpx.AsyncClient, ec_key: ECKey) -> None:
    allowed = sign(ec_key, "ES384", claims_for(iss=TENANT_ISS, tenant="hospital-a"))
    response = await client.get("/cds-services", headers=bearer(allowed))
    assert response.status_code == 200
    assert response.json()["tenant"] == "hospital-a"
    other = sign(ec_key, "ES384", claims_for(iss=TENANT_ISS, tenant="hospital-z"))
    assert_rejected(await client.get("/cds-services", headers=bearer(other)))
    missing = sign(ec_key, "ES384", claims_for(iss=TENANT_ISS))
    assert_rejected(await client.get("/cds-services", headers=bearer(missing)))


async def test_no_clients_file_fails_closed(db_url: str, ehr: JWKSServer, ec_key: ECKey) -> None:
    app = make_app(make_settings(None, db_url))
    try:
        async with asgi_client(app) as c:
            assert_rejected(await c.get("/cds-services", headers=bearer(sign(ec_key, "ES384"))))
    finally:
        close_auth_state(app)


async def test_jwks_endpoint_down_fails_closed(client: httpx.AsyncClient, ehr: JWKSServer, ec_key: ECKey) -> None:
    ehr.routes[EHR_JWKS].mock(side_effect=httpx.ConnectTimeout("down"))
    assert_rejected(await client.get("/cds-services", headers=bearer(sign(ec_key, "ES384"))))


async def test_derived_audience_when_unset_warns_once(
    clients_file: Path, db_url: str, ehr: JWKSServer, ec_key: ECKey
) -> None:
    app = make_app(make_settings(clients_file, db_url, audience=None))
    try:
        async with asgi_client(app) as c:
            with capture_logs() as logs:
                for _ in range(2):
                    token = sign(ec_key, "ES384", claims_for(aud="http://testserver/cds-services"))
                    assert (await c.get("/cds-services", headers=bearer(token))).status_code == 200
                assert_rejected(await c.get("/cds-services", headers=bearer(sign(ec_key, "ES384"))))
        warnings = [entry for entry in logs if entry["event"] == "cds_auth_audience_derived"]
        assert len(warnings) == 1
        assert warnings[0]["audience"] == "http://testserver/cds-services"
    finally:
        close_auth_state(app)


# -------------------------------------------------------------------------------------------- logging


async def test_rejections_are_logged_once_with_reason_and_never_the_token(
    client: httpx.AsyncClient,
    ec_key: ECKey,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    now = int(time.time())
    good = sign(ec_key, "ES384")
    tokens = {
        "ok": good,
        "replayed_jti": good,
        "expired": sign(ec_key, "ES384", claims_for(iat=now - 4000, exp=now - 3600)),
        "invalid_claim_aud": sign(ec_key, "ES384", claims_for(aud="https://other.example.org")),
        "unknown_iss": sign(ec_key, "ES384", claims_for(iss="https://stranger.example.com/")),
        "jku_not_allowed": sign(ec_key, "ES384", jku=EVIL_JKU),
    }
    with capture_logs() as logs:
        for expected, token in tokens.items():
            response = await client.get("/cds-services", headers=bearer(token))
            assert response.status_code == (200 if expected == "ok" else 401)
    rejections = [entry for entry in logs if entry["event"] == "cds_client_rejected"]
    assert [entry["reason"] for entry in rejections] == [k for k in tokens if k != "ok"]
    for entry in rejections:
        assert entry["log_level"] == "warning"
        assert entry["kid"] == ec_key.kid
    assert rejections[0]["iss"] == EHR_ISS
    assert rejections[0]["jti"]
    by_reason = {entry["reason"]: entry for entry in rejections}
    assert by_reason["invalid_claim_aud"]["aud"] == "https://other.example.org"
    assert by_reason["unknown_iss"]["iss"] == "https://stranger.example.com/"
    assert by_reason["jku_not_allowed"]["jku"] == EVIL_JKU

    # The same requests with structlog's default output (console), then every captured text.
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        for token in tokens.values():
            await client.get("/cds-services", headers=bearer(token))
    finally:
        structlog.configure(**saved)
    captured = capsys.readouterr()
    everything = "\n".join([repr(logs), caplog.text, captured.out, captured.err])
    assert "cds_client_rejected" in everything
    for token in tokens.values():
        assert token not in everything
        for part in token.split("."):
            assert part not in everything


async def test_an_unreadable_token_is_logged_with_what_could_be_read(client: httpx.AsyncClient) -> None:
    header = b64url(json.dumps({"alg": "ES384", "kid": "k\x00" + "x" * 500, "jku": EVIL_JKU}).encode())
    payload = b64url(json.dumps({"iss": SANDBOX_ISS, "aud": [AUDIENCE, 7, *["u"] * 20]}).encode())
    with capture_logs() as logs:
        assert_rejected(await client.get("/cds-services", headers=bearer(f"{header}.{payload}.bm90LWEtc2ln")))
        assert_rejected(await client.get("/cds-services", headers=bearer("%%%.***.!!!")))
    first, second = (entry for entry in logs if entry["event"] == "cds_client_rejected")
    assert first["iss"] == SANDBOX_ISS and first["jku"] == EVIL_JKU
    assert first["aud"] == [AUDIENCE, "u", "u", "u"]  # strings among the first five only
    assert first["kid"].startswith("k?x") and len(first["kid"]) == 201  # printable, shortened
    assert set(second) >= {"reason", "path"} and not set(second) & {"iss", "aud", "jku", "kid"}


# ------------------------------------------------------------------------------------ replay store unit


def test_replay_store_allows_reuse_only_after_expiry(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    store = ReplayStore(f"sqlite:///{tmp_path / 'replay.sqlite3'}", clock=lambda: clock[0])
    try:
        assert store._first_use("iss", "jti-1", 1_000_100) is True
        assert store._first_use("iss", "jti-1", 1_000_100) is False
        assert store._first_use("other-iss", "jti-1", 1_000_100) is True
        clock[0] = 1_000_200.0
        assert store._first_use("iss", "jti-1", 1_000_300) is True  # the old row had expired
        assert store._first_use("iss", "jti-1", 1_000_300) is False
        clock[0] = 2_000_000.0
        # "other-iss" (expired at 1_000_100) was already purged by the occasional purge at 1_000_200.
        assert store.purge() == 1
        assert store.purge() == 0
    finally:
        store.dispose()


def test_replay_store_uses_the_stores_database_engine_wal_and_busy_timeout(tmp_path: Path) -> None:
    store = ReplayStore(f"sqlite:///{tmp_path / 'replay.sqlite3'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
    finally:
        store.dispose()


async def test_replay_store_in_memory_is_one_database_for_every_worker_thread() -> None:
    store = ReplayStore("sqlite://")
    try:
        assert await store.first_use("iss", "jti-1", int(time.time()) + 60) is True
        replays = await asyncio.gather(*(store.first_use("iss", "jti-1", int(time.time()) + 60) for _ in range(4)))
        assert replays == [False] * 4
    finally:
        store.dispose()
