"""structlog JSON logs without PHI or secrets.

Log what the service did (hook, hookInstance, service id, counts, verdicts, durations), never whom it did it
for. :func:`drop_sensitive` is the last line of defence: it drops keys whose names look like PHI or
credentials and redacts values that look like tokens.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from functools import lru_cache
from typing import Any

import orjson
import structlog

SENSITIVE_KEY = re.compile(
    r"(token|secret|password|passwd|authori[sz]ation|cookie|jwt|bearer|credential|api[_-]?key"
    r"|birth|dob|ssn|mrn|address|phone|email|telecom|given|family|surname|identifier"
    r"|comment|note|narrative|^text$|^name$|^patient$|patient_?id|^subject$|^body$|^detail$|^prefetch$)",
    re.IGNORECASE,
)
TOKEN_VALUE = re.compile(r"(eyJ[\w-]{5,}\.[\w-]{5,}\.?[\w-]*|\bbearer\s+\S+)", re.IGNORECASE)
REDACTED = "[redacted]"


_KEEP = frozenset({"event", "level", "timestamp", "logger"})


def drop_sensitive(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop PHI/credential-looking keys (at any depth) and redact token-like values."""
    for key in list(event_dict):
        if key not in _KEEP and _sensitive(str(key)):
            del event_dict[key]
        else:
            event_dict[key] = _clean(event_dict[key])
    return event_dict


@lru_cache(maxsize=4096)
def _sensitive(key: str) -> bool:
    """Whether a key's name looks like PHI or a credential (log keys are few and repeat on every line)."""
    return SENSITIVE_KEY.search(key) is not None


def _clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if not _sensitive(str(k))}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return TOKEN_VALUE.sub(REDACTED, value)
    return value


def _json_line(value: Any, **_: Any) -> str:
    """The event as one JSON line, keys sorted: orjson (a few times faster on the request path), the
    standard library where orjson refuses a value (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=repr).decode()
    except TypeError:
        return json.dumps(value, sort_keys=True, default=repr)


_configured = False
_URL_LOGGERS = ("httpx", "httpcore", "hpack")
#: The server's standard-library loggers, whose lines go through the same JSON rendering as the service's.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class JSONLinesHandler(logging.Handler):
    """Standard-library log records (uvicorn's, and any library's that reaches the root logger) rendered
    by the structlog chain: one JSON line each, with the same PHI and token filter. Only the record's
    message and the type of an exception are kept: a traceback can quote request data."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                fields["error_type"] = record.exc_info[0].__name__
            method = logging.getLevelName(record.levelno).lower()
            logger = structlog.get_logger(record.name)
            getattr(logger, method if method in _LEVEL_METHODS else "info")(record.getMessage(), **fields)
        except Exception:
            self.handleError(record)


_LEVEL_METHODS = frozenset({"debug", "info", "warning", "error", "critical"})


def configure_logging(level: str = "INFO", *, stream: Any = None) -> None:
    """JSON lines on stderr (or ``stream``); safe to call more than once."""
    global _configured
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            drop_sensitive,
            structlog.processors.JSONRenderer(serializer=_json_line),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # The stream is looked up at each logger creation, so a replaced sys.stderr (tests) is followed.
        logger_factory=lambda *_args: structlog.PrintLogger(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that log every request URL at INFO/DEBUG through the standard library (httpx: "HTTP
    # Request: GET https://ehr/fhir/Observation?patient=123"): FHIR URLs carry patient ids, so these
    # loggers stay at WARNING or above, whatever the service's level and the host's logging setup.
    for name in _URL_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    # uvicorn's loggers: every line JSON (uvicorn.run gets log_config=None, so it adds no handler of its own).
    handler = JSONLinesHandler()
    for name in _SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers = [handler] if name == "uvicorn" else []
        server_logger.propagate = name != "uvicorn"
        server_logger.setLevel(numeric)
    root = logging.getLogger()
    if not any(isinstance(h, JSONLinesHandler) for h in root.handlers) and not root.handlers:
        # No host logging set up: other libraries' warnings would be plain text from logging.lastResort.
        root.addHandler(handler)
    _configured = True


def get_logger(name: str = "trial-cds") -> Any:
    return structlog.get_logger(name)
