"""The HTTP endpoints: discovery, the service, feedback, health, trial pages and demo mode."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from cds.api import pages
from cds.api.errors import ApiError, Issue, outcome_response
from cds.api.models import (
    FeedbackItem,
    FeedbackRequest,
    HookRequest,
    openapi_body,
    parse,
    read_hook_request,
    read_json_object,
)
from cds.api.services import AppState, ServiceDefinition
from cds.assessment import Assessment
from cds.cards import cards_for
from cds.demo import demo_request
from cds.fhir_client import FhirServerNotAllowed, check_fhir_server
from cds.logging_setup import get_logger
from cds.order_cards import order_warning_cards
from cds.orders import order_impacts
from cds.prefetch import DataUnavailable, FhirAccess, PrefetchError, gather
from cds.record import PatientRecord
from cds.store import FeedbackEntry, IssuedCard

log = get_logger("trial-cds.api")

#: Up to this many resources, a patient is judged on the event loop (~50 ms of work at most on one core
#: of the benchmark machine, docs/performance.md); above it, in the thread pool.
INLINE_MAX_RESOURCES = 10_000


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


def _service(request: Request, service_id: str) -> ServiceDefinition:
    service = state(request).services.get(service_id)
    if service is None:
        raise ApiError.single(404, "not-found", "No CDS service with this id on this server")
    return service


def _note_incomplete(cards: list[dict[str, Any]], key_sources: dict[str, str], problems: list[str]) -> None:
    """An honest card: when a key's data were read only in part (page loop, page limit, next link to another
    server, a prefetched Bundle with a next link), each card says so, as decisions may rest on missing data."""
    partial = sorted(key for key, source in key_sources.items() if source.endswith("-partial"))
    if not partial:
        return
    why = "; ".join(p for p in problems if p.split(":", 1)[0] in partial)
    note = (
        f"\n\n**Incomplete record:** not all of the patient's data could be read ({why}). "
        "Criteria decided from these data may change with the complete record."
    )
    for card in cards:
        card["detail"] = str(card.get("detail", "")).rstrip() + note


# ---------------------------------------------------------------------------------------------------
# CDS Hooks: discovery, service, feedback (behind client authentication when it is on).

cds_router = APIRouter()


@cds_router.get("/cds-services")
async def discovery(request: Request) -> JSONResponse:
    return JSONResponse({"services": [s.discovery() for s in state(request).services.values()]})


@cds_router.post("/cds-services/{service_id}", openapi_extra=openapi_body(HookRequest))
async def call_service(service_id: str, request: Request) -> JSONResponse:
    started = time.perf_counter()
    st = state(request)
    service = _service(request, service_id)
    hook_request = parse(HookRequest, await read_hook_request(request, st.settings))
    if issues := hook_request.conditional_issues():
        raise ApiError(400, issues)
    if hook_request.hook != service.hook.name:
        raise ApiError.single(400, "invalid", f"hook: this service answers the '{service.hook.name}' hook", "hook")
    context = parse(service.hook.context_model, hook_request.context, prefix="context")
    target = service.hook.target(context)
    bound = log.bind(service=service.id, hook=service.hook.name, hook_instance=hook_request.hookInstance)

    fhir_base: str | None = None
    if hook_request.fhirServer is not None:
        try:
            fhir_base = check_fhir_server(hook_request.fhirServer, st.settings)
        except FhirServerNotAllowed as exc:
            bound.info("cds_service.fhir_server_refused")
            raise ApiError.single(400, "forbidden", f"fhirServer: {exc}", "fhirServer") from None
    token = (
        hook_request.fhirAuthorization.access_token.get_secret_value()
        if hook_request.fhirAuthorization is not None
        else None
    )
    try:
        gathered = await gather(
            service.templates,
            context=hook_request.context,
            user_id=target.user_id,
            prefetch=hook_request.prefetch,
            fhir=FhirAccess(base_url=fhir_base, access_token=token),
            settings=st.settings,
            http=st.http,
        )
    except DataUnavailable as exc:
        bound.info("cds_service.data_unavailable", issues=len(exc.issues))
        issues = [Issue("incomplete", f"Needed data is unavailable: {i}") for i in exc.issues]
        raise ApiError(412, issues) from None
    except PrefetchError as exc:
        raise ApiError.single(400, "invalid", f"prefetch: {exc}", "prefetch") from None
    except FhirServerNotAllowed as exc:
        raise ApiError.single(400, "forbidden", f"fhirServer: {exc}", "fhirServer") from None

    moment = now(request)
    resources = [*gathered.resources, *target.extra_resources]
    public_url = base_url(request)

    def answer() -> tuple[list[tuple[Any, Assessment]], list[tuple[Any, Assessment, dict[str, Any]]]]:
        """Evaluation, cards and the record of the issued cards (stored before the answer leaves): CPU
        and database work, on the event loop or in one trip to the thread pool."""
        results: list[tuple[Any, Assessment]]
        chosen: list[tuple[Any, Assessment, dict[str, Any]]]
        if target.orders is None:  # screen the patient
            # The gathered resources are deduplicated (merge_resources); anything the hook adds is not.
            record = PatientRecord.from_resources(
                resources, patient_id=target.patient_id, deduplicated=not target.extra_resources
            )
            results = [(trial, st.evaluate(trial, record, moment)) for trial in st.trials.values()]
            chosen = cards_for(
                results,
                base_url=public_url,
                patient_id=target.patient_id,
                user_id=target.user_id,
                show_not_eligible=st.settings.show_not_eligible,
            )
        else:  # warn about what the draft orders would change
            results, impacts = order_impacts(
                list(st.trials.values()),
                resources,
                target.orders,
                patient_id=target.patient_id,
                now=moment,
                evaluate=st.evaluate,
            )
            chosen = order_warning_cards(
                impacts, base_url=public_url, patient_id=target.patient_id, user_id=target.user_id
            )
        _note_incomplete([c for _, _, c in chosen], gathered.key_sources, gathered.problems)
        if chosen:
            st.store.record_cards(
                [
                    IssuedCard(
                        card_uuid=c["uuid"],
                        service_id=service.id,
                        trial_id=t.id,
                        verdict=a.verdict.value,
                        issued_at=moment,
                    )
                    for t, a, c in chosen
                ]
            )
        return results, chosen

    if len(resources) <= INLINE_MAX_RESOURCES and st.store.local:
        # For a usual record the trip to the thread pool costs more than it spares: it wakes another
        # thread, which may run on the other core, away from the caches holding the resources just
        # decoded (~12 % of a 1,000-resource answer, docs/performance.md), and under the GIL the pool runs
        # no Python in parallel. So it is judged here, where its body was decoded. A large record, or a
        # store across the network, goes to the pool, so that the event loop is never held long.
        results, chosen = answer()
    else:
        results, chosen = await run_in_threadpool(answer)
    bound.info(
        "cds_service.answered",
        trials=len(results),
        cards=len(chosen),
        verdicts={t.id: a.verdict.value for t, a in results},
        resources=len(resources),
        fetched_keys=sum(1 for source in gathered.key_sources.values() if source.startswith("fetched")),
        http_requests=gathered.http_requests,
        problems=len(gathered.problems),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return CardsResponse({"cards": [c for _, _, c in chosen]})


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


@open_router.get("/trials/{trial_id}", response_model=None)
async def trial_page(trial_id: str, request: Request) -> Response:
    trial = state(request).trials.get(trial_id)
    if trial is None:
        raise ApiError.single(404, "not-found", "No trial with this id on this server")
    description = pages.describe_trial(trial)
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


@demo_router.get("/demo")
async def demo_page() -> HTMLResponse:
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
