"""Fetching and caching CDS clients' JWK Sets.

A key set is fetched with httpx (async, ``settings.jwks_timeout_s``, no redirects, at most
``MAX_JWKS_BYTES``) and kept for ``settings.jwks_cache_s``. A token whose ``kid`` is not in the cached
set causes one forced re-fetch (key rotation), but no more than one per URL every
``MIN_REFETCH_INTERVAL_S`` so that a stream of made-up ``kid`` values cannot make the service hammer
an EHR. When a fetch fails, a set fetched before is used for up to ``STALE_GRACE_S`` more.
Only RSA and EC keys are kept: symmetric (``oct``) keys never verify a CDS Hooks JWT.

The caller must only pass URLs that the clients file trusts (the client's ``jwks_url``, or a ``jku``
on its allow-list); this module does not decide trust.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, Key, KeySet, RSAKey

MAX_JWKS_BYTES = 256 * 1024
MIN_REFETCH_INTERVAL_S = 10.0
STALE_GRACE_S = 3600.0
MIN_RSA_BITS = 2048

_log = structlog.get_logger("cds.auth")


class JWKSError(Exception):
    """The key set could not be obtained (network, HTTP status, size, or content)."""


@dataclass
class _Entry:
    keys: KeySet | None
    fetched_at: float  # monotonic time of the last successful fetch (or -inf)
    attempted_at: float  # monotonic time of the last attempt, successful or not


class JWKSCache:
    def __init__(
        self,
        *,
        timeout_s: float,
        cache_s: float,
        min_refetch_interval_s: float | None = None,
        stale_grace_s: float | None = None,
        clock: Callable[[], float] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.min_refetch_interval_s = (
            MIN_REFETCH_INTERVAL_S if min_refetch_interval_s is None else min_refetch_interval_s
        )
        self.stale_grace_s = STALE_GRACE_S if stale_grace_s is None else stale_grace_s
        self._clock = clock or time.monotonic
        self._transport = transport
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def key_set_for(self, url: str, kid: str) -> KeySet:
        """The key set at ``url``, re-fetched once if it is stale or lacks ``kid``.

        The returned set may still lack ``kid`` (then the caller rejects the token).
        Raises ``JWKSError`` when no usable set can be had.
        """
        entry = self._entries.get(url)
        if entry is not None and entry.keys is not None and self._fresh(entry) and _has_kid(entry.keys, kid):
            return entry.keys
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            entry = self._entries.get(url)  # another task may have fetched while we waited
            if entry is not None and entry.keys is not None:
                if self._fresh(entry) and _has_kid(entry.keys, kid):
                    return entry.keys
                if self._clock() - entry.attempted_at < self.min_refetch_interval_s:
                    if self._usable(entry):
                        return entry.keys
                    raise JWKSError("key set expired and re-fetched too recently")
            elif entry is not None and self._clock() - entry.attempted_at < self.min_refetch_interval_s:
                raise JWKSError("key set fetch failed recently")
            return await self._refresh(url, entry)

    async def _refresh(self, url: str, entry: _Entry | None) -> KeySet:
        now = self._clock()
        try:
            keys = await self._fetch(url)
        except JWKSError as error:
            if entry is None:
                entry = _Entry(keys=None, fetched_at=float("-inf"), attempted_at=now)
                self._entries[url] = entry
            entry.attempted_at = now
            if entry.keys is not None and self._usable(entry):
                _log.warning("jwks_fetch_failed_using_stale", url=url, error=str(error))
                return entry.keys
            raise
        self._entries[url] = _Entry(keys=keys, fetched_at=now, attempted_at=now)
        return keys

    def _fresh(self, entry: _Entry) -> bool:
        return self._clock() - entry.fetched_at < self.cache_s

    def _usable(self, entry: _Entry) -> bool:
        return self._clock() - entry.fetched_at < self.cache_s + self.stale_grace_s

    async def _fetch(self, url: str) -> KeySet:
        timeout = httpx.Timeout(self.timeout_s)
        try:
            async with (
                httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=self._transport) as client,
                client.stream("GET", url, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise JWKSError(f"HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_JWKS_BYTES:
                        raise JWKSError("key set too large")
        except httpx.HTTPError as error:
            raise JWKSError(type(error).__name__) from error
        return parse_key_set(bytes(body))


def parse_key_set(body: bytes) -> KeySet:
    """A JWK Set document reduced to its usable public RSA/EC signing keys."""
    try:
        data = json.loads(body)
    except ValueError as error:
        raise JWKSError("key set is not JSON") from error
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise JWKSError("key set has no 'keys' list")
    keys: list[Key] = []
    for item in data["keys"]:
        if not isinstance(item, dict) or item.get("kty") not in ("RSA", "EC"):
            continue
        if item.get("use") not in (None, "sig"):
            continue
        if not isinstance(item.get("kid"), str) or not item["kid"]:
            continue  # CDS Hooks: kid is required and identifies the key
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SecurityWarning)  # short RSA keys are dropped just below
                key = RSAKey.import_key(item) if item["kty"] == "RSA" else ECKey.import_key(item)
        except (JoseError, ValueError, TypeError):
            continue
        if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:
            continue
        keys.append(key)
    if not keys:
        raise JWKSError("key set has no usable RSA or EC signing key")
    return KeySet(keys)


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys)
