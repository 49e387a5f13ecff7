"""Authentication of CDS clients (EHRs) by the CDS Hooks 2.0 JWT ("Trusting CDS Clients").

Contract with the app
---------------------
* Wiring: when ``settings.auth == "jwt"``, put ``Depends(require_cds_client)`` on the discovery,
  service and feedback routes. The dependency returns a ``VerifiedClient(iss, sub, tenant, jti)``
  or raises ``AuthError`` (an ``HTTPException``: 401, ``WWW-Authenticate: Bearer``). Register
  ``app.add_exception_handler(AuthError, auth_exception_handler)`` to answer with one OperationOutcome
  that is the same for every reason; without it FastAPI answers ``{"detail": "Unauthorized"}`` - still
  nothing about the reason.
  The dependency verifies whenever it runs; it does not itself look at ``settings.auth``.
* Settings: read from ``request.app.state.settings`` (a ``cds.settings.Settings``) on every request:
  ``clients_file``, ``audience``, ``jwt_leeway_s``, ``jwks_timeout_s``, ``jwks_cache_s``,
  ``database_url``.
* State: the dependency keeps what it needs on ``request.app.state.cds_auth`` (an ``AuthState``),
  created lazily on the first request and rebuilt if ``app.state.settings`` is replaced by another
  object: the JWKS cache (per process), the replay store (a table in ``settings.database_url``,
  shared by every worker and replica), the clients-file cache (re-read when the file changes) and
  the "audience was derived" warning flag. Call ``close_auth_state(app)`` at shutdown to release the
  database engine (optional).
* Audience: ``settings.audience`` is this service's discovery URL as the EHR calls it, e.g.
  ``https://cds.example.org/cds-services``. A token's ``aud`` must be that URL or - as the CDS Hooks
  spec says a client sends when it calls a service - the URL of the endpoint being called under it
  (``…/cds-services/{id}``; for feedback also ``…/cds-services/{id}/feedback``), each with or without
  a trailing slash. If ``settings.audience`` is unset, it is derived from the request's base URL +
  ``/cds-services`` and a warning is logged once: set it in production, since behind a proxy the
  derived URL is usually not the one the EHR used (and it follows the ``Host`` header).
* Logging: every rejection is one structlog line, event ``cds_client_rejected``, logger
  ``cds.auth``, with ``reason``, the path and what the token claims, unverified (when it can be read):
  ``iss``, ``aud``, ``jku``, ``kid``, ``alg`` (and ``jti`` once verified). The token itself is never logged.
"""

from __future__ import annotations

import re

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import State

from cds.auth.clients import ClientConfig, ClientRegistry, ClientsFile, ClientsFileError, load_clients
from cds.auth.errors import UNAUTHORIZED_OUTCOME, WWW_AUTHENTICATE, AuthError
from cds.auth.jwks import JWKSCache
from cds.auth.replay import ReplayStore
from cds.auth.verify import ALLOWED_ALGORITHMS, VerifiedClient, received_fields, verify_token
from cds.settings import Settings

__all__ = [
    "ALLOWED_ALGORITHMS",
    "AuthError",
    "AuthState",
    "ClientConfig",
    "ClientRegistry",
    "ClientsFileError",
    "VerifiedClient",
    "auth_exception_handler",
    "close_auth_state",
    "load_clients",
    "require_cds_client",
]

_log = structlog.get_logger("cds.auth")
_DISCOVERY_SEGMENT = "/cds-services"
_ENDPOINT_PATH = re.compile(r"/cds-services(/[^?#]*)?$")


class AuthState:
    """Per-app caches of the auth dependency (kept on ``app.state.cds_auth``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients = ClientsFile(settings.clients_file)
        self.jwks = JWKSCache(timeout_s=settings.jwks_timeout_s, cache_s=settings.jwks_cache_s)
        self.replay = ReplayStore(settings.database_url)
        self.warned_derived_audience = False

    def close(self) -> None:
        self.replay.dispose()


def _state(app_state: State) -> AuthState:
    settings = getattr(app_state, "settings", None)
    if not isinstance(settings, Settings):
        raise AuthError("no_settings_on_app_state")
    state = getattr(app_state, "cds_auth", None)
    if not isinstance(state, AuthState) or state.settings is not settings:
        if isinstance(state, AuthState):
            state.close()
        state = AuthState(settings)
        app_state.cds_auth = state
    return state


def close_auth_state(app: FastAPI) -> None:
    state = getattr(app.state, "cds_auth", None)
    if isinstance(state, AuthState):
        state.close()
        del app.state.cds_auth


def _bearer_token(request: Request) -> str:
    values = request.headers.getlist("authorization")
    if len(values) != 1:
        raise AuthError("missing_token" if not values else "multiple_authorization_headers")
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("not_bearer_token")
    return token


def _audiences(request: Request, state: AuthState) -> set[str]:
    configured = state.settings.audience
    if configured:
        base = configured.strip().rstrip("/")
    else:
        base = str(request.base_url).rstrip("/") + _DISCOVERY_SEGMENT
        if not state.warned_derived_audience:
            state.warned_derived_audience = True
            _log.warning(
                "cds_auth_audience_derived",
                audience=base,
                hint="set TRIAL_CDS_AUDIENCE to the discovery URL the EHR calls",
            )
    urls = [base]
    match = _ENDPOINT_PATH.search(request.url.path)
    suffix = (match.group(1) or "").rstrip("/") if match else ""
    if suffix:
        urls.append(base + suffix)
        if suffix.endswith("/feedback"):
            urls.append(base + suffix.removesuffix("/feedback"))
    return {form for url in urls for form in (url, url + "/")}


async def require_cds_client(request: Request) -> VerifiedClient:
    """FastAPI dependency: the verified CDS client of this request, or a 401 (see the module doc)."""
    token = ""
    try:
        state = _state(request.app.state)
        token = _bearer_token(request)
        try:
            clients = state.clients.registry()
        except ClientsFileError as error:
            _log.error("cds_auth_clients_file_invalid", error=str(error))
            raise AuthError("clients_file_invalid") from error
        client = await verify_token(
            token,
            clients=clients,
            jwks=state.jwks,
            replay=state.replay,
            audiences=_audiences(request, state),
            leeway=state.settings.jwt_leeway_s,
        )
    except AuthError as error:
        log = _log.error if error.reason in _SERVER_SIDE_REASONS else _log.warning
        log("cds_client_rejected", path=request.url.path, **(received_fields(token) | error.log_fields()))
        raise
    _log.debug("cds_client_verified", iss=client.iss, tenant=client.tenant, path=request.url.path)
    return client


# Rejections caused by this service's configuration or dependencies rather than by the caller.
_SERVER_SIDE_REASONS = frozenset(
    {"no_settings_on_app_state", "clients_file_invalid", "replay_store_unavailable", "jwks_unavailable"}
)


async def auth_exception_handler(request: Request, exc: Exception) -> Response:
    """Exception handler for ``AuthError``: 401, ``WWW-Authenticate: Bearer``, the one OperationOutcome."""
    return JSONResponse(UNAUTHORIZED_OUTCOME, status_code=401, headers=dict(WWW_AUTHENTICATE))
