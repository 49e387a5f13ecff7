"""CORS for browser-based CDS clients, with refusals a person can debug: a refused preflight is a 403
OperationOutcome and a warning log line naming the origin."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from cds.api.errors import Issue, outcome_response
from cds.logging_setup import get_logger

log = get_logger("trial-cds.api")

#: Longest value from a request header that goes into a log line.
_LOGGED_VALUE_LIMIT = 200


class OutcomeCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, except that a refused preflight is a 403 OperationOutcome saying what
    was refused and which setting allows it, with a warning log naming the origin (Starlette answers a
    plain-text 400 and logs nothing, which leaves a hospital guessing why its browser client fails)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode("utf-8", "replace").removeprefix("Disallowed CORS ")
        origin = request_headers["origin"]
        log.warning(
            "cors_preflight_refused",
            origin=_loggable(origin),
            refused=refused,
            requested_method=_loggable(request_headers["access-control-request-method"]),
            requested_headers=_loggable(request_headers.get("access-control-request-headers", "")),
            allowed_origins=list(self.allow_origins),
        )
        hint = (
            "add the origin to TRIAL_CDS_CORS_ORIGINS"
            if "origin" in refused
            else "this service allows the methods GET, POST, OPTIONS and the headers Authorization, Content-Type"
        )
        issue = Issue("forbidden", f"CORS preflight refused ({refused}) for origin {_loggable(origin)}: {hint}")
        return outcome_response(403, [issue])


def _loggable(value: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[:_LOGGED_VALUE_LIMIT])
    return cleaned + ("…" if len(value) > _LOGGED_VALUE_LIMIT else "")
