"""Running the service with uvicorn."""

from __future__ import annotations

import uvicorn

from cds.api.app import create_app
from cds.settings import Settings

__all__ = ["create_app", "run"]


def run(host: str, port: int, *, demo: bool) -> None:
    """Serve on ``host:port``; ``demo`` turns demo mode on (synthetic patients, no auth, open CORS)."""
    settings = Settings()
    if demo:
        settings = settings.model_copy(update={"demo": True})
    app = create_app(settings)
    if demo:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(
            f"\n  trial-cds demo: open http://{shown}:{port}/demo to try a patient-view card.\n"
            "  WARNING: demo mode has NO authentication and serves synthetic patients only.\n",
            flush=True,
        )
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, proxy_headers=True)
