"""Units of cds.auth: the clients file, JWK Set parsing and the JWKS cache's fetch policy."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, RSAKey

from cds.auth.clients import ClientsFile, ClientsFileError, load_clients, parse_clients
from cds.auth.jwks import MAX_JWKS_BYTES, JWKSCache, JWKSError, parse_key_set

URL = "https://ehr.example.com/jwks.json"


# ------------------------------------------------------------------------------------------- clients


def test_clients_file_accepts_a_list_or_a_clients_mapping(tmp_path: Path) -> None:
    entry = {"iss": "https://ehr.example.com/", "jwks_url": URL, "name": "EHR"}
    for content in ([entry], {"clients": [entry]}):
        path = tmp_path / "clients.yaml"
        path.write_text(json.dumps(content), encoding="utf-8")  # JSON is YAML
        registry = load_clients(path)
        client = registry.get("https://ehr.example.com/")
        assert client is not None and client.name == "EHR" and client.tenants is None
        assert registry.get("https://ehr.example.com") is None  # exact match only


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"iss": "a"}], "needs 'jwks', 'jwks_url' or 'allowed_jku'"),
        ([{"iss": "a", "jwks_url": "http://ehr.example.com/jwks"}], "must be https"),
        ([{"iss": "a", "allowed_jku": ["ftp://ehr.example.com/jwks"]}], "must be https"),
        ([{"iss": "a", "jwks_url": URL, "tenants": []}], "empty 'tenants'"),
        ([{"iss": "a", "jwks_url": URL, "surprise": 1}], "Extra inputs"),
        ([{"iss": "a", "jwks_url": URL}, {"iss": "a", "jwks_url": URL}], "appears twice"),
        ({"iss": "a"}, "expected a list"),
    ],
)
def test_invalid_clients_files_are_refused(entries: Any, message: str) -> None:
    with pytest.raises(ClientsFileError, match=message):
        parse_clients(entries)


def test_http_key_urls_are_allowed_for_localhost_only() -> None:
    registry = parse_clients([{"iss": "dev", "jwks_url": "http://localhost:8080/jwks"}])
    assert len(registry) == 1


def test_clients_file_is_reread_when_it_changes_and_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(json.dumps([{"iss": "one", "jwks_url": URL}]), encoding="utf-8")
    cached = ClientsFile(path)
    assert cached.registry().get("one") is not None

    path.write_text(json.dumps([{"iss": "two", "jwks_url": URL}, {"iss": "three", "jwks_url": URL}]))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert cached.registry().get("one") is None
    assert cached.registry().get("two") is not None

    path.write_text("- iss: [unclosed", encoding="utf-8")
    with pytest.raises(ClientsFileError):
        cached.registry()
    path.unlink()
    with pytest.raises(ClientsFileError):
        cached.registry()
    with pytest.raises(ClientsFileError, match="not set"):
        ClientsFile(None).registry()


# ------------------------------------------------------------------------------------------ key sets


def test_parse_key_set_keeps_only_public_rsa_and_ec_signing_keys_with_a_kid() -> None:
    ec = ECKey.generate_key("P-384", parameters={"kid": "ec"}, auto_kid=False)
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa"}, auto_kid=False)
    with pytest.warns(SecurityWarning):
        weak = RSAKey.generate_key(1024, parameters={"kid": "weak"}, auto_kid=False)
    enc = ECKey.generate_key("P-256", parameters={"kid": "enc", "use": "enc"}, auto_kid=False)
    no_kid = ECKey.generate_key("P-256", auto_kid=False)
    oct_key = OctKey.generate_key(256, parameters={"kid": "oct"}, auto_kid=False)
    document = {
        "keys": [
            ec.as_dict(private=False),
            rsa.as_dict(private=False),
            weak.as_dict(private=False),
            enc.as_dict(private=False),
            no_kid.as_dict(private=False),
            oct_key.as_dict(private=True),
            {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"},
            "not a key",
        ]
    }
    key_set = parse_key_set(json.dumps(document).encode())
    assert sorted(str(key.kid) for key in key_set) == ["ec", "rsa"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"keys": 1}', b'{"keys": []}'])
def test_parse_key_set_refuses_unusable_documents(body: bytes) -> None:
    with pytest.raises(JWKSError):
        parse_key_set(body)


# --------------------------------------------------------------------------------------------- cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _jwks(*kids: str) -> dict[str, Any]:
    return {
        "keys": [
            ECKey.generate_key("P-256", parameters={"kid": kid}, auto_kid=False).as_dict(private=False) for kid in kids
        ]
    }


async def test_cache_expires_and_refetch_is_rate_limited() -> None:
    clock = Clock()
    cache = JWKSCache(timeout_s=1, cache_s=300, min_refetch_interval_s=10, clock=clock)
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get(URL).mock(return_value=httpx.Response(200, json=_jwks("a")))
        await cache.key_set_for(URL, "a")
        await cache.key_set_for(URL, "a")
        assert route.call_count == 1
        await cache.key_set_for(URL, "unknown")  # fetched just now: no re-fetch
        assert route.call_count == 1
        clock.now += 11
        await cache.key_set_for(URL, "unknown")  # unknown kid: one re-fetch
        assert route.call_count == 2
        await cache.key_set_for(URL, "a")
        assert route.call_count == 2
        clock.now += 301
        await cache.key_set_for(URL, "a")  # expired
        assert route.call_count == 3


async def test_failed_fetch_uses_the_stale_set_for_a_while_then_fails() -> None:
    clock = Clock()
    cache = JWKSCache(timeout_s=1, cache_s=300, min_refetch_interval_s=10, stale_grace_s=600, clock=clock)
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get(URL).mock(return_value=httpx.Response(200, json=_jwks("a")))
        await cache.key_set_for(URL, "a")
        route.mock(return_value=httpx.Response(503))
        clock.now += 400
        keys = await cache.key_set_for(URL, "a")
        assert [key.kid for key in keys] == ["a"]
        clock.now += 600
        with pytest.raises(JWKSError):
            await cache.key_set_for(URL, "a")


async def test_fetch_refuses_errors_redirects_and_oversized_sets() -> None:
    cache = JWKSCache(timeout_s=1, cache_s=300, min_refetch_interval_s=0)
    with respx.mock(assert_all_mocked=True) as router:
        route = router.get(URL)
        for response in (
            httpx.Response(404),
            httpx.Response(302, headers={"Location": "https://evil.example.net/jwks"}),
            httpx.Response(200, content=b" " * (MAX_JWKS_BYTES + 1)),
        ):
            route.mock(return_value=response)
            with pytest.raises(JWKSError):
                await cache.key_set_for(URL, "a")
        route.mock(side_effect=httpx.ReadTimeout("slow"))
        with pytest.raises(JWKSError):
            await cache.key_set_for(URL, "a")
