"""The FastAPI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

import cds
from cds.api import errors
from cds.api.activity import activity_router
from cds.api.cors import OutcomeCORSMiddleware
from cds.api.reload import install_sighup, log_overrides, remove_sighup
from cds.api.routes import cds_router, demo_router, open_router
from cds.api.services import AppState, Evaluator, served_portfolio
from cds.api.startup import check_cors, print_summary, startup_facts
from cds.demo import DemoData
from cds.fhir import http as fhir_http
from cds.fhir.client import DEMO_FHIR_SERVERS
from cds.logging_setup import configure_logging, get_logger
from cds.portfolio import Portfolio, load_portfolio
from cds.settings import Settings
from cds.store import FeedbackStore
from cds.valuesets import default_library
from hooks import HOOKS

log = get_logger("trial-cds.api")


def effective_settings(settings: Settings) -> Settings:
    """Demo mode: no client authentication and CORS open to any origin, whatever else is configured."""
    if settings.demo:
        return settings.model_copy(update={"auth": "none", "cors_origins": ["*"]})
    return settings


def _auth_dependencies(settings: Settings) -> list[Any]:
    if settings.auth == "none":
        return []
    from cds.auth import require_cds_client  # the CDS Hooks 2.0 JWT check (a teammate's module)

    return [Depends(require_cds_client)]


def _warm_up(trials: Mapping[str, Any], evaluate: Evaluator) -> None:
    """One evaluation per trial on an empty record, so the first real request does not pay for loading
    value sets and unit tables."""
    from cds.record import PatientRecord

    record = PatientRecord.from_resources([])
    for trial in trials.values():
        try:
            evaluate(trial, record, datetime.now(UTC))
        except Exception as exc:  # never fatal: the request path reports real errors
            log.warning("service.warm_up_failed", trial=trial.id, error_type=type(exc).__name__)


def create_app(
    settings: Settings | None = None,
    *,
    trials: dict[str, Any] | None = None,
    evaluate: Evaluator | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    """The service. ``trials`` and ``evaluate`` default to the trial files and the engine; ``clock``
    (also settable later as ``app.state.clock``) gives the evaluation time, ``datetime.now(UTC)`` by
    default. Raises ``SettingsError`` for a configuration that must not run (``*`` CORS outside demo)."""
    settings = settings or Settings()
    check_cors(settings)
    settings = effective_settings(settings)
    configure_logging(settings.log_level)
    portfolio: Portfolio | None = None
    if trials is None:
        portfolio = load_portfolio(settings.trials_dir)
        trials = portfolio.trials
    library = portfolio.library if portfolio is not None else default_library()
    store = FeedbackStore(settings.database_url)
    store.create_tables()
    served = served_portfolio(HOOKS, trials, library, evaluate)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        facts = startup_facts(settings, trials, cds.build())
        log.info("service.start", **facts)
        if portfolio is not None:
            log_overrides(portfolio)
        sighup = install_sighup(state)
        print_summary(facts)  # the same facts for a person reading the console
        if not settings.demo and settings.public_base_url is None:
            log.warning(
                "service.public_base_url_derived",
                why="card links are built from each request's Host header; behind a proxy they may be "
                "wrong, and a caller can choose them",
                hint="set TRIAL_CDS_PUBLIC_BASE_URL to the public URL of this service",
            )
        if settings.auth == "jwt" and settings.audience is None:
            log.warning(
                "service.audience_derived",
                why="the JWT audience is derived from each request's URL",
                hint="set TRIAL_CDS_AUDIENCE to the discovery URL the EHR calls",
            )
        if settings.demo:
            log.info("service.demo_fhir_servers", policy=DEMO_FHIR_SERVERS)
        if settings.auth == "none":
            log.warning(
                "service.auth_disabled",
                why="CDS client authentication is OFF: any caller can use this service. "
                "For demo and development only; production runs with TRIAL_CDS_AUTH=jwt.",
            )
        elif settings.clients_file is None:
            log.warning(
                "service.no_clients",
                why="TRIAL_CDS_CLIENTS_FILE is not set: every CDS call will be refused (401).",
            )
        await run_in_threadpool(_warm_up, served.open_trials, served.evaluate)
        # One HTTP client for every FHIR fetch (connection pool, TLS set-up once), not one per request.
        state.http = fhir_http.async_client(settings.time_budget_s)
        # Trials, value sets and unit tables live as long as the process: out of the cyclic garbage
        # collector's sight, so that a request's collections do not walk them again and again.
        gc.collect()
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(*cds.GC_THRESHOLDS)
        yield
        if sighup:
            remove_sighup()
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        http, state.http = state.http, None
        if http is not None:
            await http.aclose()
        if settings.auth == "jwt":
            from cds.auth import close_auth_state

            close_auth_state(_app)
        store.dispose()

    app = FastAPI(
        title="trial-cds",
        version=cds.__version__,
        description="CDS Hooks 2.0 service: clinical-trial eligibility screening",
        lifespan=lifespan,
        docs_url="/docs" if settings.demo else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.demo else None,
    )
    state = AppState(
        settings=settings,
        served=served,
        store=store,
        custom_evaluate=evaluate,
        demo=DemoData() if settings.demo else None,
    )
    app.state.cds = state
    app.state.settings = settings  # cds.auth reads it here
    app.state.clock = clock or (lambda: datetime.now(UTC))
    errors.install(app)
    if settings.auth == "jwt":
        from cds.auth import AuthError, auth_exception_handler

        # A failed client check is a 401 with one OperationOutcome for every reason: nothing to help a forger.
        app.add_exception_handler(AuthError, auth_exception_handler)
    app.include_router(cds_router, dependencies=_auth_dependencies(settings))
    # Coordinator data: no PHI, but internal, so behind the same client check as the CDS endpoints.
    app.include_router(activity_router, dependencies=_auth_dependencies(settings))
    app.include_router(open_router)
    if settings.demo:
        app.include_router(demo_router)
    app.add_middleware(errors.CatchAllMiddleware)
    # Before anything reads the headers (authentication included); inside CORS so a browser sees the 431.
    app.add_middleware(errors.HeaderSizeLimitMiddleware, max_bytes=settings.max_header_bytes)
    # Added last: outermost, so errors carry CORS headers too. Present even with no origin allowed, so that
    # a refused preflight is answered with an OperationOutcome and logged.
    app.add_middleware(
        OutcomeCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        allow_credentials=False,
        max_age=600,
    )
    return app
