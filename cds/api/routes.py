"""The HTTP endpoints: discovery, the service, feedback, health, trial pages and demo mode."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cds.api import pages
from cds.api.errors import ApiError, Issue, outcome_response
from cds.api.models import (
    FeedbackItem,
    FeedbackRequest,
    HookRequest,
    openapi_body,
    parse,
    read_hook_call,
    read_json_object,
)
from cds.api.services import AppState, ServedPortfolio, ServiceDefinition
from cds.demo import demo_request
from cds.fhir import DataUnavailable, FhirServerNotAllowed, PrefetchError
from cds.logging_setup import get_logger
from cds.store import FeedbackEntry
from hooks.base import HookCall

log = get_logger("trial-cds.api")


class CardsResponse(JSONResponse):
    """The cards as compact UTF-8 JSON, as JSONResponse writes them, with orjson (the answer is on the
    clinician's wait)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def state(request: Request) -> AppState:
    st: AppState = request.app.state.cds
    return st


def now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", None)
    moment: datetime = clock() if clock is not None else datetime.now(UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def base_url(request: Request) -> str:
    configured = state(request).settings.public_base_url
    return (configured or str(request.base_url)).rstrip("/")


def _service(request: Request, service_id: str, served: ServedPortfolio | None = None) -> ServiceDefinition:
    service = (served or state(request).served).services.get(service_id)
    if service is None:
        raise ApiError.single(404, "not-found", "No CDS service with this id on this server")
    return service


# ---------------------------------------------------------------------------------------------------
# CDS Hooks: discovery, service, feedback (behind client authentication when it is on).

cds_router = APIRouter()


@cds_router.get("/cds-services")
async def discovery(request: Request) -> JSONResponse:
    return JSONResponse({"services": [s.discovery() for s in state(request).services.values()]})


@cds_router.post("/cds-services/{service_id}", openapi_extra=openapi_body(HookRequest))
async def call_service(service_id: str, request: Request) -> JSONResponse:
    """Decode the call (the client was authenticated by the router's dependency), let the service's hook
    answer it (hooks/), encode the cards; the hook's errors become their HTTP statuses."""
    started = time.perf_counter()
    st = state(request)
    served = st.served  # read once: a reload (SIGHUP) during this call does not mix two portfolios
    service = _service(request, service_id, served)
    hook = service.hook
    hook_request, context = await read_hook_call(request, st.settings, hook.name, hook.context_model)
    bound = log.bind(service=service.id, hook=hook.name, hook_instance=hook_request.hookInstance)
    authorization = hook_request.fhirAuthorization
    call = HookCall(
        service_id=service.id,
        templates=service.templates,
        context=context,
        raw_context=hook_request.context,
        prefetch=hook_request.prefetch,
        fhir_server=hook_request.fhirServer,
        access_token=authorization.access_token.get_secret_value() if authorization is not None else None,
        now=now(request),
        base_url=base_url(request),
        settings=st.settings,
        trials=served.open_trials,
        evaluate=served.evaluate,
        store=st.store,
        http=st.http,
    )
    try:
        answer = await hook.answer(call)
    except FhirServerNotAllowed as exc:
        bound.info("cds_service.fhir_server_refused")
        raise ApiError.single(400, "forbidden", f"fhirServer: {exc}", "fhirServer") from None
    except DataUnavailable as exc:
        bound.info("cds_service.data_unavailable", issues=len(exc.issues))
        issues = [Issue("incomplete", f"Needed data is unavailable: {i}") for i in exc.issues]
        raise ApiError(412, issues) from None
    except PrefetchError as exc:
        raise ApiError.single(400, "invalid", f"prefetch: {exc}", "prefetch") from None
    bound.info("cds_service.answered", **answer.log, duration_ms=round((time.perf_counter() - started) * 1000, 1))
    return CardsResponse({"cards": answer.cards})


def _feedback_entry(item: FeedbackItem, service_id: str) -> FeedbackEntry:
    override = item.overrideReason
    reason = override.reason if override is not None else None
    return FeedbackEntry(
        card_uuid=item.card.removeprefix("urn:uuid:"),
        service_id=service_id,
        outcome=item.outcome,
        outcome_timestamp=item.outcomeTimestamp,
        accepted_suggestions=tuple(s.id for s in item.acceptedSuggestions or ()),
        override_system=reason.system if reason else None,
        override_code=reason.code if reason else None,
        override_display=reason.display if reason else None,
        has_user_comment=bool(override and override.userComment),
    )


@cds_router.post("/cds-services/{service_id}/feedback", openapi_extra=openapi_body(FeedbackRequest))
async def feedback(service_id: str, request: Request) -> Response:
    st = state(request)
    service = _service(request, service_id)
    body = parse(FeedbackRequest, await read_json_object(request, st.settings))
    entries = [_feedback_entry(item, service.id) for item in body.feedback]
    inserted = await run_in_threadpool(st.store.record_feedback, entries)
    log.info(
        "feedback.received",
        service=service.id,
        items=len(entries),
        stored=inserted,
        duplicates=len(entries) - inserted,
        outcomes=dict(Counter(e.outcome for e in entries)),
    )
    return Response(status_code=200)


# ---------------------------------------------------------------------------------------------------
# Health and trial pages (open).

open_router = APIRouter()


@open_router.get("/health")
async def health() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@open_router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    st = state(request)
    database = await run_in_threadpool(st.store.ping)
    if not st.trials or not database:
        issues = []
        if not st.trials:
            issues.append(Issue("not-found", "No trials are loaded"))
        if not database:
            issues.append(Issue("transient", "The database is not reachable"))
        return outcome_response(503, issues)
    return JSONResponse({"status": "ready", "trials": len(st.trials), "database": "ok"})


@open_router.get("/trials", response_model=None)
async def trials_page(request: Request) -> Response:
    """The portfolio: every trial with its title and the link to its page (JSON on ``Accept:
    application/json``, else HTML), as the trial pages themselves."""
    listing = pages.describe_portfolio(state(request).trials, base_url(request))
    if pages.wants_json(request.headers.get("accept", "")):
        return JSONResponse(listing)
    return HTMLResponse(pages.portfolio_html(listing, base_url(request)))


@open_router.get("/trials/{trial_id}", response_model=None)
async def trial_page(trial_id: str, request: Request) -> Response:
    served = state(request).served
    trial = served.trials.get(trial_id)
    if trial is None:
        raise ApiError.single(404, "not-found", "No trial with this id on this server")
    description = pages.describe_trial(trial, served.library)
    if pages.wants_json(request.headers.get("accept", "")):
        return JSONResponse(description)
    return HTMLResponse(pages.trial_html(description, base_url(request)))


# ---------------------------------------------------------------------------------------------------
# Demo mode (synthetic patients only; mounted only when settings.demo is on).

demo_router = APIRouter()


def _demo_patients(request: Request) -> dict[str, Any]:
    st = state(request)
    if st.demo is None:
        raise ApiError.single(404, "not-found", "Demo mode is off")
    return dict(st.demo.patients(now(request).date()))


@demo_router.get("/", include_in_schema=False)
async def demo_home(request: Request) -> RedirectResponse:
    # Relative, so that it holds behind a proxy that mounts the service under a path; the query kept
    # (/?patient=ID opens that patient).
    query = request.url.query
    return RedirectResponse(f"demo?{query}" if query else "demo", status_code=307)


@demo_router.get("/demo")
async def demo_page() -> HTMLResponse:
    """The demo EHR; ``/demo?patient=ID`` opens it on that patient's chart (the page reads the parameter)."""
    return HTMLResponse(pages.demo_html())


@demo_router.get("/demo/patients")
async def demo_patients(request: Request) -> JSONResponse:
    patients = _demo_patients(request)
    return JSONResponse({"patients": [{"id": p.id, "description": p.description} for p in patients.values()]})


@demo_router.get("/demo/patients/{patient_id}/request")
async def demo_patient_request(patient_id: str, request: Request) -> JSONResponse:
    patient = _demo_patients(request).get(patient_id)
    if patient is None:
        raise ApiError.single(404, "not-found", "No demo patient with this id")
    service = next(iter(state(request).services.values()))
    return JSONResponse(demo_request(patient, service.hook, service.resource_types))
