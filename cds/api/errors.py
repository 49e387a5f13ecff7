"""Errors as FHIR OperationOutcome: every failure the service answers with, 4xx or (last resort) 500."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cds.logging_setup import get_logger

log = get_logger("trial-cds.api")

MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue. ``code`` is from http://hl7.org/fhir/issue-type."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def as_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = [self.expression]
        return out


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    items = [i.as_fhir() for i in issues]
    if not items:
        items = [Issue("exception", "The request failed").as_fhir()]
    return {"resourceType": "OperationOutcome", "issue": items}


class ApiError(Exception):
    """An error answered with ``status`` and an OperationOutcome."""

    def __init__(self, status: int, issues: Sequence[Issue], headers: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(i.diagnostics for i in issues))
        self.status = status
        self.issues = list(issues)
        self.headers = headers

    @classmethod
    def single(cls, status: int, code: str, diagnostics: str, expression: str | None = None) -> ApiError:
        return cls(status, [Issue(code, diagnostics, expression)])


def outcome_response(status: int, issues: Sequence[Issue], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(operation_outcome(issues), status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _expression(loc: Sequence[int | str], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


_REQUIRED = {"missing"}
_STRUCTURE = {"model_type", "model_attributes_type", "dict_type", "list_type", "json_invalid", "json_type"}


def validation_issues(errors: Iterable[Any], *, prefix: str = "") -> list[Issue]:
    """Pydantic errors → issues, with a FHIRPath-like expression (``context.patientId``). The offending
    input value is never echoed back (it may be PHI or a token)."""
    issues = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p not in {"body", "function-after", "function-before"}]
        expression = _expression(loc, prefix) or prefix or None
        kind = str(err.get("type", ""))
        code = "required" if kind in _REQUIRED else "structure" if kind in _STRUCTURE else "invalid"
        message = str(err.get("msg", "invalid value"))
        if kind in _REQUIRED:
            message = "is required"
        where = expression or "request body"
        issues.append(Issue(code, f"{where}: {message}", expression))
    return issues


_INTERNAL_ERROR = "Internal error; the request was not processed"


class CatchAllMiddleware:
    """Turns any exception that escapes a route into a 500 OperationOutcome, logging only its type.

    Starlette's own last-resort handler re-raises after answering, so the server would print the
    traceback, whose message may carry PHI; this middleware stops the exception here instead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            log_client_disconnect(scope.get("path"), scope.get("method"))
        except Exception as exc:
            log.error("unhandled_error", error_type=type(exc).__name__, path=scope.get("path"))
            if not started:
                await outcome_response(500, [Issue("exception", _INTERNAL_ERROR)])(scope, receive, send)


def header_bytes(scope: Scope) -> int:
    """The size of a request's header section as sent: names, values, and ": " and CRLF per line."""
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


class HeaderSizeLimitMiddleware:
    """431 with an OperationOutcome when the request headers together exceed ``max_bytes``: answered
    first, before authentication or any route reads them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = header_bytes(scope)
            if size > self.max_bytes:
                log.warning("request_headers_too_large", size=size, limit=self.max_bytes, path=scope.get("path"))
                issue = Issue(
                    "too-long",
                    f"The request headers are {size} bytes; this service accepts at most {self.max_bytes}",
                )
                await outcome_response(431, [issue], {"Connection": "close"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def log_client_disconnect(path: object, method: object) -> None:
    """The caller went away before its request was read: not a fault of the service (the EHR gave up,
    or timed out), so info rather than error."""
    log.info("client_disconnected", path=path, method=method)


#: The status recorded for a request whose caller left (nginx's convention); it is never delivered.
CLIENT_CLOSED_REQUEST = 499


def install(app: FastAPI) -> None:
    """Exception handlers that turn every error into an OperationOutcome."""

    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return outcome_response(exc.status, exc.issues, exc.headers)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {
            401: "login",
            403: "forbidden",
            404: "not-found",
            405: "not-supported",
            406: "not-supported",
            413: "too-long",
            415: "not-supported",
            429: "throttled",
        }.get(exc.status_code, "processing" if exc.status_code < 500 else "exception")
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail else "Request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such resource on this service"
        return outcome_response(exc.status_code, [Issue(code, detail)], dict(exc.headers or {}) or None)

    async def request_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError | ValidationError)
        return outcome_response(400, validation_issues(exc.errors()))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Only the type and the route: the message or traceback might carry PHI or a token.
        log.error("unhandled_error", error_type=type(exc).__name__, path=request.url.path, method=request.method)
        return outcome_response(500, [Issue("exception", _INTERNAL_ERROR)])

    async def client_disconnect(request: Request, _exc: Exception) -> Response:
        log_client_disconnect(request.url.path, request.method)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    app.add_exception_handler(ClientDisconnect, client_disconnect)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(ValidationError, request_validation)
    app.add_exception_handler(Exception, unexpected)
