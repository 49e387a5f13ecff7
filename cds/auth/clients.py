"""The trusted CDS clients (EHRs), read from ``settings.clients_file`` (YAML).

The file holds a list (or a mapping with a ``clients`` list) of entries::

    - name: General Hospital EHR          # for people and logs
      iss: https://ehr.example.com/       # the JWT "iss", compared exactly (case and trailing slash count)
      jwks_url: https://keys.hospital.internal/ehr.json   # pinned: the client's key set, on our network
      allowed_jku:                        # "jku" header values accepted for this client (exact match)
        - https://ehr.example.com/jwks/2025
      tenants: [tenant-a, tenant-b]       # optional; if given, the "tenant" claim must be one of them

    - name: CDS Hooks sandbox
      iss: https://sandbox.cds-hooks.org
      jwks: {keys: [{kty: EC, crv: P-384, kid: ..., x: ..., y: ...}]}   # pinned inline (a JWK Set)
      allowed_jku: [https://sandbox.cds-hooks.org/.well-known/jwks.json]

A client's key set is *pinned* when it has an inline ``jwks`` or a ``jwks_url`` (one or the other): every
token of that client is verified against it, and a ``jku`` in the token's header is checked against
``allowed_jku`` (or the ``jwks_url``) but never fetched. A client with only ``allowed_jku`` has its keys
fetched from the token's ``jku``. Each client needs ``jwks``, ``jwks_url`` or at least one ``allowed_jku``.
Key URLs must be https (plain http is accepted only for localhost, for development). The file is re-read
when its modification time or size changes; a file that cannot be read or is invalid makes every request
fail (closed), with an error log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from cds.auth.jwks import JWKSError, parse_key_set

#: Longest "iss" / "jti" the replay table stores (its column sizes).
MAX_ISS_LENGTH = 512
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ClientsFileError(Exception):
    """The clients file is missing, unreadable or invalid."""


class ClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1, max_length=MAX_ISS_LENGTH)
    name: str | None = None
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = None
    allowed_jku: tuple[str, ...] = ()
    tenants: frozenset[str] | None = None
    _inline_keys: KeySet | None = PrivateAttr(default=None)

    @field_validator("jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_key_url(value)
        return value

    @field_validator("allowed_jku")
    @classmethod
    def _check_allowed_jku(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            _check_key_url(url)
        return value

    @field_validator("tenants")
    @classmethod
    def _check_tenants(cls, value: frozenset[str] | None) -> frozenset[str] | None:
        if value is not None and not value:
            raise ValueError("an empty 'tenants' list rejects every request; omit it to allow any tenant")
        return value

    @model_validator(mode="after")
    def _needs_keys(self) -> ClientConfig:
        if self.jwks is not None and self.jwks_url is not None:
            raise ValueError(f"client {self.iss!r}: give its key set once, as 'jwks' or as 'jwks_url', not both")
        if self.jwks is None and self.jwks_url is None and not self.allowed_jku:
            raise ValueError(f"client {self.iss!r} needs 'jwks', 'jwks_url' or 'allowed_jku'")
        if self.jwks is not None:
            if _holds_private_key(self.jwks):
                raise ValueError(
                    f"client {self.iss!r}: 'jwks' holds private key material; only the EHR's public keys belong here"
                )
            try:
                self._inline_keys = parse_key_set(json.dumps(self.jwks).encode())
            except JWKSError as error:
                raise ValueError(f"client {self.iss!r}: 'jwks' {error}") from None
        return self

    @property
    def pinned(self) -> bool:
        """Whether the client's keys are configured here (inline or at ``jwks_url``), never taken from a token."""
        return self.jwks is not None or self.jwks_url is not None

    @property
    def inline_keys(self) -> KeySet | None:
        return self._inline_keys

    def jku_allowed(self, jku: str) -> bool:
        return jku in self.allowed_jku or jku == self.jwks_url


#: JWK members that only a private (or symmetric) key has (RFC 7518, sections 6.2.2, 6.3.2 and 6.4).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _holds_private_key(jwks: dict[str, Any]) -> bool:
    keys = jwks.get("keys")
    return isinstance(keys, list) and any(isinstance(key, dict) and _PRIVATE_MEMBERS & set(key) for key in keys)


def _check_key_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS:
        return
    raise ValueError(f"key set URL must be https (http only for localhost): {url!r}")


@dataclass(frozen=True)
class ClientRegistry:
    """The configured clients, by exact ``iss``."""

    by_iss: dict[str, ClientConfig]

    def get(self, iss: str) -> ClientConfig | None:
        return self.by_iss.get(iss)

    def __len__(self) -> int:
        return len(self.by_iss)


def parse_clients(data: Any, source: str = "clients file") -> ClientRegistry:
    if isinstance(data, dict) and set(data) == {"clients"}:
        data = data["clients"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise ClientsFileError(f"{source}: expected a list of clients (or a mapping with 'clients')")
    by_iss: dict[str, ClientConfig] = {}
    for index, entry in enumerate(data):
        try:
            client = ClientConfig.model_validate(entry)
        except ValidationError as error:
            # The problems without the input: an entry may hold key material, which is not for the log.
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in error.errors(include_input=False)
            )
            raise ClientsFileError(f"{source}: client #{index + 1} is invalid: {problems}") from None
        if client.iss in by_iss:
            raise ClientsFileError(f"{source}: iss {client.iss!r} appears twice")
        by_iss[client.iss] = client
    return ClientRegistry(by_iss)


def load_clients(path: Path) -> ClientRegistry:
    """Read and validate a clients file (the API/CLI can call this at start-up to fail fast)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ClientsFileError(f"{path}: cannot read the clients file ({error.strerror})") from error
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ClientsFileError(f"{path}: not valid YAML") from error
    return parse_clients(data, str(path))


class ClientsFile:
    """``load_clients`` with a cache keyed on the file's modification time and size."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._registry: ClientRegistry | None = None

    def registry(self) -> ClientRegistry:
        if self.path is None:
            raise ClientsFileError("settings.clients_file is not set, so no CDS client is trusted")
        try:
            stat = os.stat(self.path)
        except OSError as error:
            self._stamp = self._registry = None
            raise ClientsFileError(f"{self.path}: cannot read the clients file ({error.strerror})") from error
        stamp = (stat.st_mtime_ns, stat.st_size)
        if self._registry is None or stamp != self._stamp:
            self._stamp = self._registry = None
            self._registry = load_clients(self.path)
            self._stamp = stamp
        return self._registry
