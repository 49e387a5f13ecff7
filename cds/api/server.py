"""Running the service with uvicorn."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from cds.api.app import create_app
from cds.settings import Settings

__all__ = ["create_app", "demo_app", "run", "service_app"]


def service_app() -> FastAPI:
    """The service as configured by the environment: the factory each uvicorn worker process calls."""
    return create_app(Settings())


def demo_app() -> FastAPI:
    """The service in demo mode: the factory of ``serve --demo`` (demo mode is never read from the
    environment, so each worker is told by the factory it is started with)."""
    return create_app(Settings().model_copy(update={"demo": True}))


def run(host: str, port: int, *, demo: bool, workers: int = 1) -> None:
    """Serve on ``host:port``; ``demo`` turns demo mode on (synthetic patients, no auth, open CORS).
    ``workers`` > 1 runs that many processes (uvicorn's supervisor) on the one database of the settings,
    which holds what they must share: the feedback and the tokens already used (replay cache)."""
    if demo:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(
            f"\n  trial-cds demo: open http://{shown}:{port}/demo to try a patient-view card.\n"
            "  WARNING: demo mode has NO authentication and serves synthetic patients only.\n",
            flush=True,
        )
    # Worker processes build their own app: uvicorn needs an import string, here of a factory.
    factory = "cds.api.server:demo_app" if demo else "cds.api.server:service_app"
    uvicorn.run(
        factory if workers > 1 else (demo_app() if demo else service_app()),
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )
