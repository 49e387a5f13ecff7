"""Running the service with uvicorn."""

from __future__ import annotations

from typing import Any

import orjson
import uvicorn

from cds.api.app import create_app
from cds.api.errors import Issue, operation_outcome
from cds.api.startup import check_can_serve
from cds.settings import Settings

__all__ = ["create_app", "http_protocol", "run"]

#: Room for the request line on top of the header cap in h11's own bound on an unparsed request head.
_REQUEST_LINE_ALLOWANCE = 8 * 1024


def run(host: str, port: int, *, demo: bool) -> None:
    """Serve on ``host:port``; ``demo`` turns demo mode on (synthetic patients, no auth, open CORS).

    Raises ``SettingsError`` (before anything listens) for a configuration that cannot work: no clients
    file while authentication is on, an invalid clients file, or ``*`` CORS outside demo mode."""
    settings = Settings()
    if demo:
        settings = settings.model_copy(update={"demo": True})
    check_can_serve(settings)
    app = create_app(settings)
    if demo:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(
            f"\n  trial-cds demo: open http://{shown}:{port}/demo to try a patient-view card.\n"
            "  WARNING: demo mode has NO authentication and serves synthetic patients only.\n",
            flush=True,
        )
    # log_config=None: uvicorn's own loggers keep the JSON handler cds.logging_setup gave them.
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        http=http_protocol(settings.max_header_bytes),
        h11_max_incomplete_event_size=settings.max_header_bytes + _REQUEST_LINE_ALLOWANCE,
    )


def http_protocol(max_header_bytes: int) -> Any:
    """uvicorn's httptools protocol, bounded: it stops reading a request whose headers exceed
    ``max_header_bytes`` and answers 431, instead of holding every header in memory until the app's
    check (httptools has no limit of its own). Without httptools, h11 (bounded by
    ``h11_max_incomplete_event_size``)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "h11"

    too_large = _too_large_response(max_header_bytes)

    class HeaderCappedHttpToolsProtocol(HttpToolsProtocol):
        _header_bytes = 0
        _headers_too_large = False

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._headers_too_large = False

        def on_header(self, name: bytes, value: bytes) -> None:
            # The same count as cds.api.errors.header_bytes, so both answer the same requests with 431.
            self._header_bytes += len(name) + len(value) + 4
            if self._header_bytes > max_header_bytes:
                self._headers_too_large = True
                raise ValueError("request headers too large")  # stops the parser: uvicorn answers below
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if not self._headers_too_large:
                super().send_400_response(msg)
                return
            self.transport.write(too_large)
            self.transport.close()

    return HeaderCappedHttpToolsProtocol


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
