"""Running the service with uvicorn."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI

from cds.api.app import create_app
from cds.api.errors import Issue, operation_outcome
from cds.api.startup import check_can_serve
from cds.settings import Settings

__all__ = ["HeaderCappedHttpToolsProtocol", "create_app", "demo_app", "http_protocol", "run", "service_app"]

#: Room for the request line on top of the header cap in h11's own bound on an unparsed request head.
_REQUEST_LINE_ALLOWANCE = 8 * 1024


def service_app() -> FastAPI:
    """The service as configured by the environment: the factory each uvicorn worker process calls."""
    return create_app(Settings())


def demo_app() -> FastAPI:
    """The service in demo mode: the factory of ``serve --demo`` (demo mode is never read from the
    environment, so each worker is told by the factory it is started with)."""
    return create_app(Settings().model_copy(update={"demo": True}))


def run(host: str, port: int, *, demo: bool, workers: int = 1, trials_dir: Path | None = None) -> None:
    """Serve on ``host:port``; ``demo`` turns demo mode on (synthetic patients, no auth, open CORS).
    ``workers`` > 1 runs that many processes (uvicorn's supervisor) on the one database of the settings,
    which holds what they must share: the feedback and the tokens already used (replay cache).

    Raises ``SettingsError`` (before anything listens) for a configuration that cannot work: no clients
    file while authentication is on, an invalid clients file, or ``*`` CORS outside demo mode."""
    settings = Settings()
    if demo:
        settings = settings.model_copy(update={"demo": True})
    if trials_dir is not None:  # --trials-dir, over TRIAL_CDS_TRIALS_DIR
        settings = settings.model_copy(update={"trials_dir": trials_dir})
        # Worker processes build their own app from the environment: the same folder for each.
        os.environ["TRIAL_CDS_TRIALS_DIR"] = str(trials_dir)
    check_can_serve(settings)
    if demo:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(
            f"\n  trial-cds demo: open http://{shown}:{port}/demo to try a patient-view card.\n"
            "  WARNING: demo mode has NO authentication and serves synthetic patients only.\n",
            flush=True,
        )
    # Worker processes build their own app: uvicorn needs an import string, here of a factory. Their
    # uvicorn loggers keep the JSON handler cds.logging_setup gives them (log_config=None).
    factory = "cds.api.server:demo_app" if demo else "cds.api.server:service_app"
    uvicorn.run(
        factory if workers > 1 else create_app(settings),
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        http=http_protocol(),
        h11_max_incomplete_event_size=settings.max_header_bytes + _REQUEST_LINE_ALLOWANCE,
    )


def http_protocol() -> Any:
    """uvicorn's httptools protocol, bounded (``HeaderCappedHttpToolsProtocol``); without httptools, h11
    (bounded by ``h11_max_incomplete_event_size``). The cap reaches the protocol through uvicorn's config
    (``h11_max_incomplete_event_size``, the cap plus the request-line allowance) rather than through this
    function, so that worker processes, which are handed the config, apply the same cap."""
    return HeaderCappedHttpToolsProtocol if HeaderCappedHttpToolsProtocol is not None else "h11"


def _cap_from(config: Any) -> int:
    size = getattr(config, "h11_max_incomplete_event_size", None)
    default: int = Settings.model_fields["max_header_bytes"].default
    return size - _REQUEST_LINE_ALLOWANCE if isinstance(size, int) else default


@lru_cache(maxsize=8)
def _too_large_response(max_header_bytes: int) -> bytes:
    body = orjson.dumps(
        operation_outcome(
            [Issue("too-long", f"The request headers exceed {max_header_bytes} bytes, the most this service accepts")]
        )
    )
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is optional in uvicorn; h11 is then used
    HeaderCappedHttpToolsProtocol: Any = None
else:

    class HeaderCappedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[no-redef]
        """uvicorn's httptools protocol that stops reading a request whose headers exceed the cap and
        answers 431, instead of holding every header in memory until the app's own check (httptools has
        no limit of its own)."""

        def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(config, *args, **kwargs)
            self._max_header_bytes = _cap_from(config)
            self._header_bytes = 0
            self._headers_too_large = False

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._headers_too_large = False

        def on_header(self, name: bytes, value: bytes) -> None:
            # The same count as cds.api.errors.header_bytes, so both answer the same requests with 431.
            self._header_bytes += len(name) + len(value) + 4
            if self._header_bytes > self._max_header_bytes:
                self._headers_too_large = True
                raise ValueError("request headers too large")  # stops the parser; uvicorn answers below
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if not self._headers_too_large:
                super().send_400_response(msg)
                return
            self.transport.write(_too_large_response(self._max_header_bytes))
            self.transport.close()
