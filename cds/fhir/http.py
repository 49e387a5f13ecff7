"""The one factory of httpx clients that talk to FHIR servers: redirects are never followed (a redirect
could carry the access token elsewhere), and every request has a timeout."""

from __future__ import annotations

import httpx

FHIR_JSON = "application/fhir+json"


def async_client(timeout_s: float) -> httpx.AsyncClient:
    """For the service's fetches (shared by all requests while the app runs, or one per request)."""
    return httpx.AsyncClient(follow_redirects=False, timeout=httpx.Timeout(timeout_s))


def client(timeout_s: float) -> httpx.Client:
    """For the command-line tools (``trial-cds check-fhir``, ``trial-cds load``)."""
    return httpx.Client(follow_redirects=False, timeout=httpx.Timeout(timeout_s))


def headers(token: str | None, **more: str) -> dict[str, str]:
    """``Accept: application/fhir+json``, the bearer token when there is one, and ``more``."""
    out = {"Accept": FHIR_JSON, **more}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out
