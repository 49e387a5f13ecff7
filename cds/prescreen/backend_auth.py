"""How ``trial-cds prescreen --fhir`` authenticates to a FHIR server: a bearer token given as it is, or SMART
Backend Services (the client credentials grant with a ``private_key_jwt`` client assertion, signed by joserfc
with the client's private key, RS384 or ES384, its JWKS ``kid`` in the header).

The token endpoint comes from the server's ``.well-known/smart-configuration`` unless given. An access token
is asked for when first needed and again shortly before it expires (``expires_in``). Neither the token nor
the assertion is ever logged or put in an error message.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

#: The algorithms SMART Backend Services requires servers to support.
BACKEND_ALGORITHMS: tuple[str, ...] = ("RS384", "ES384")
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: A client assertion lives at most five minutes (SMART Backend Services).
ASSERTION_LIFETIME_S = 300
#: Ask for a new access token this long before the current one expires.
REFRESH_MARGIN_S = 60.0


class BulkAuthError(Exception):
    """The server's authorization cannot be obtained (message without the token, the key or PHI)."""


@dataclass
class BackendServices:
    """A registered backend client: its id, its private key (PEM or a private JWK), the key's ``kid`` as
    published in the client's JWKS, and the scopes to ask for."""

    client_id: str
    key: RSAKey | ECKey
    kid: str
    algorithm: Literal["RS384", "ES384"]
    scope: str = "system/*.rs"
    #: Default: the ``token_endpoint`` of ``<base>/.well-known/smart-configuration``.
    token_url: str | None = None
    clock: Callable[[], float] = time.time

    @classmethod
    def from_key_file(
        cls, client_id: str, key_file: Path, *, kid: str | None = None, scope: str = "system/*.rs",
        token_url: str | None = None,
    ) -> BackendServices:
        """Read a PEM private key or a private JWK (JSON). The algorithm follows the key: RS384 for RSA,
        ES384 for EC (P-384). ``kid`` defaults to the JWK's own ``kid``, else the key's RFC 7638 thumbprint."""
        try:
            data = key_file.read_bytes()
        except OSError as exc:
            raise BulkAuthError(f"cannot read the private key file {key_file} ({exc.strerror})") from exc
        key = _import_key(data)
        if key is None:
            raise BulkAuthError(f"{key_file}: not a PEM private key or a private JWK")
        if not isinstance(key, RSAKey | ECKey) or not key.is_private:
            raise BulkAuthError(f"{key_file}: an RSA or EC private key is needed")
        algorithm: Literal["RS384", "ES384"] = "RS384" if isinstance(key, RSAKey) else "ES384"
        if isinstance(key, ECKey) and key.curve_name != "P-384":
            raise BulkAuthError(f"{key_file}: ES384 needs a P-384 key, not {key.curve_name}")
        return cls(
            client_id=client_id, key=key, kid=kid or key.kid or key.thumbprint(), algorithm=algorithm,
            scope=scope, token_url=token_url,
        )

    def assertion(self, token_url: str) -> str:
        """The signed client assertion for one token request (a fresh ``jti`` each time)."""
        now = int(self.clock())
        header = {"alg": self.algorithm, "kid": self.kid, "typ": "JWT"}
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + ASSERTION_LIFETIME_S,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(header, claims, self.key, algorithms=list(BACKEND_ALGORITHMS))


def _import_key(data: bytes) -> object | None:
    """The key in ``data`` (a JWK as JSON, or PEM: RSA tried first, then EC), or None."""
    if data.lstrip().startswith(b"{"):
        try:
            return JWKRegistry.import_key(json.loads(data))
        except (JoseError, ValueError, TypeError):
            return None
    for key_type in ("RSA", "EC"):
        try:
            return JWKRegistry.import_key(data, key_type)
        except (JoseError, ValueError, TypeError):
            continue
    return None


@dataclass
class BulkAuth:
    """The server's authorization: a fixed bearer ``token``, or a ``backend`` client that fetches one."""

    token: str | None = None
    backend: BackendServices | None = None
    _current: str | None = field(default=None, repr=False)
    _expires_at: float = field(default=0.0, repr=False)

    def access_token(self, http: httpx.Client, base_url: str) -> str | None:
        """The token to send now (fetched or refreshed for a backend client)."""
        if self.backend is None:
            return self.token
        backend = self.backend
        if self._current is not None and backend.clock() < self._expires_at - REFRESH_MARGIN_S:
            return self._current
        token_url = backend.token_url or discover_token_url(http, base_url)
        backend.token_url = token_url
        form = {
            "grant_type": "client_credentials",
            "scope": backend.scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": backend.assertion(token_url),
        }
        try:
            response = http.post(token_url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise BulkAuthError(f"the token endpoint {token_url} cannot be reached ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise BulkAuthError(
                f"the token endpoint {token_url} refused the client (HTTP {response.status_code}"
                f"{_oauth_error(response)})"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise BulkAuthError(f"the token endpoint {token_url} answered something that is not JSON") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise BulkAuthError(f"the token endpoint {token_url} answered without an access_token")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 300.0
        self._current = token
        self._expires_at = backend.clock() + lifetime
        return token


def auth_from_options(
    token: str | None,
    client_id: str | None = None,
    private_key: Path | None = None,
    *,
    kid: str | None = None,
    scope: str = "system/*.rs",
    token_url: str | None = None,
) -> BulkAuth | None:
    """The authorization the command-line options ask for (``--token`` / ``FHIR_BEARER_TOKEN``, or
    ``--client-id`` with ``--private-key``), None for none. Both kinds at once, or half of the backend pair,
    is refused."""
    if (client_id is None) != (private_key is None):
        raise BulkAuthError("SMART Backend Services needs both a client id and its private key")
    if client_id is not None and private_key is not None:
        if token:
            raise BulkAuthError("give a bearer token or a backend client, not both")
        return BulkAuth(
            backend=BackendServices.from_key_file(client_id, private_key, kid=kid, scope=scope, token_url=token_url)
        )
    return BulkAuth(token=token) if token else None


def _oauth_error(response: httpx.Response) -> str:
    """``: invalid_client (the description)`` from an OAuth error answer, or nothing."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return ""
    description = body.get("error_description")
    text = body["error"] + (f" ({str(description)[:200]})" if isinstance(description, str) else "")
    return f": {text}"


def discover_token_url(http: httpx.Client, base_url: str) -> str:
    """The ``token_endpoint`` of ``<base>/.well-known/smart-configuration``."""
    url = f"{base_url.rstrip('/')}/.well-known/smart-configuration"
    try:
        response = http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise BulkAuthError(f"{url} cannot be reached ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise BulkAuthError(f"{url} answered HTTP {response.status_code}: give the token endpoint explicitly")
    try:
        body = response.json()
    except ValueError as exc:
        raise BulkAuthError(f"{url} is not JSON") from exc
    endpoint = body.get("token_endpoint") if isinstance(body, dict) else None
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        raise BulkAuthError(f"{url} names no token_endpoint")
    return endpoint


__all__ = [
    "BACKEND_ALGORITHMS",
    "BackendServices",
    "BulkAuth",
    "BulkAuthError",
    "auth_from_options",
    "discover_token_url",
]
