"""Async FHIR R4 client: the only place that talks to an EHR's FHIR server.

One :class:`FhirClient` serves one CDS Hooks request. It runs all queries of that request in parallel
under one shared deadline (``settings.time_budget_s``), follows Bundle ``next`` links as opaque URLs
(HAPI's ``_getpages``, ``_offset``, page tokens: all the same to us) up to ``settings.max_pages``
pages (also the pages after a first page that a CDS client prefetched: :class:`Continuation`), never
follows redirects, never sends the access token to another origin than the
allow-listed base URL, and never logs the token, URLs or resource content (URLs carry patient ids).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import orjson
import structlog

from cds.fhir.http import FHIR_JSON, async_client
from cds.settings import DEFAULT_PORTS, BaseUrlError, Settings, is_loopback_host
from cds.settings import normalise_base_url as normalise_settings_url

log = structlog.get_logger(__name__)

#: Statuses worth one more try (when the wait fits in the remaining budget).
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: At most this many retries of one request (so at most three attempts).
MAX_RETRIES = 2
#: Wait before a retry when the server gives no usable Retry-After.
BACKOFF_S = 0.1
#: One retry after a connection error (connect refused, reset, protocol error).
MAX_TRANSPORT_RETRIES = 1

_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


class FhirServerNotAllowed(ValueError):
    """The request's ``fhirServer`` is not an allow-listed, acceptable base URL."""


# --------------------------------------------------------------------------------------------------
# Base URL checks
# --------------------------------------------------------------------------------------------------


def normalise_base_url(url: str) -> str:
    """:func:`cds.settings.normalise_base_url` for a request's fhirServer: raises
    :class:`FhirServerNotAllowed` for anything that is not a base URL."""
    try:
        return normalise_settings_url(url)
    except BaseUrlError as exc:
        raise FhirServerNotAllowed(f"fhirServer {exc.reason}") from None


#: What demo mode allows beyond the allow-list (said at start-up).
DEMO_FHIR_SERVERS = (
    "Demo mode: FHIR servers on loopback addresses (127.0.0.0/8 and ::1, http or https) are allowed "
    "without being in the allow-list (TRIAL_CDS_FHIR_ALLOWLIST); any other fhirServer must be listed."
)


def is_loopback_address(host: str) -> bool:
    """127.0.0.0/8 or ::1 written as an address: a name (even ``localhost``) is never taken on trust."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_fhir_server(url: str, settings: Settings) -> str:
    """Normalise ``url`` and check it against ``settings.fhir_allowlist`` (exact base URL match after
    normalising case of scheme and host, default port and trailing slash). https is required; http only
    for loopback hosts (127.0.0.0/8, ::1, localhost). In demo mode, a FHIR server on a loopback address
    (the demo's own FHIR server, the reference sandbox's local one) needs no allow-list entry. Returns the
    normalised URL or raises :class:`FhirServerNotAllowed`."""
    normalised = normalise_base_url(url)
    parts = urlsplit(normalised)
    if parts.scheme != "https" and not is_loopback_host(parts.hostname or ""):
        raise FhirServerNotAllowed("fhirServer must use https (http is allowed only for loopback hosts)")
    if settings.demo and is_loopback_address(parts.hostname or ""):
        return normalised
    if normalised not in settings.fhir_allowlist:  # normalised when the settings were loaded
        raise FhirServerNotAllowed(f"fhirServer {normalised} is not in the allow-list of this service")
    return normalised


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port


# --------------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryKind:
    """What a relative FHIR URL asks for: a ``read`` (``Patient/123``, ``Patient/123/_history/2``) that
    returns one resource, or a ``search`` (anything else) that returns a Bundle."""

    read: bool
    resource_type: str | None


def classify_query(query: str) -> QueryKind:
    path, _, _ = query.partition("?")
    segments = [s for s in path.strip("/").split("/") if s]
    resource_type = segments[0] if segments and _RESOURCE_TYPE.fullmatch(segments[0]) else None
    if "?" not in query and resource_type is not None:
        is_instance = len(segments) == 2 and not segments[1].startswith(("$", "_"))
        is_version = len(segments) == 4 and segments[2] == "_history"
        if is_instance or is_version:
            return QueryKind(read=True, resource_type=resource_type)
    return QueryKind(read=False, resource_type=resource_type)


def has_count(query: str) -> bool:
    _, _, qs = query.partition("?")
    return any(name == "_count" for name, _ in parse_qsl(qs, keep_blank_values=True))


def with_count(query: str, page_size: int) -> str:
    """``query`` with ``_count=page_size`` added when it has no ``_count`` of its own."""
    if has_count(query):
        return query
    if "?" not in query:
        return f"{query}?_count={page_size}"
    sep = "" if query.endswith(("?", "&")) else "&"
    return f"{query}{sep}_count={page_size}"


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class QueryResult:
    """The outcome of one query (one prefetch key)."""

    key: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    requests: int = 0
    #: Paging stopped early (page limit, page loop, next link to another server): data are incomplete.
    partial: bool = False
    #: A read answered 404/410: the resource does not exist (not an error).
    not_found: bool = False
    problems: list[str] = field(default_factory=list)
    #: Why the query failed (no PHI, no token); None when it succeeded.
    error: str | None = None
    outcomes_dropped: int = 0


@dataclass(frozen=True)
class Continuation:
    """The rest of a search whose first page came another way (a CDS client's prefetched Bundle): its
    ``next`` link and what the pages read so far hold, so that the paging bounds count them too."""

    next_url: str
    pages_read: int = 1
    resources_read: int = 0


class _QueryFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe_status(status: int) -> str:
    if status in (401, 403):
        return f"the FHIR server refused access (HTTP {status})"
    if 300 <= status < 400:
        return f"the FHIR server answered with a redirect (HTTP {status}), which is not followed"
    if status == 429:
        return "the FHIR server is rate limiting (HTTP 429)"
    if status >= 500:
        return f"the FHIR server failed (HTTP {status})"
    return f"the FHIR server answered HTTP {status}"


# --------------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------------


class FhirClient:
    """Fetches the data of one CDS Hooks request from one allow-listed FHIR server.

    ``http``: a shared :class:`httpx.AsyncClient` (not closed here); without it a client is created
    for each :meth:`search_all` call. Redirects are never followed, whatever the client's setting.
    """

    def __init__(
        self,
        base_url: str,
        settings: Settings,
        *,
        access_token: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._base = check_fhir_server(base_url, settings)
        self._base_origin = _origin(self._base)
        self._settings = settings
        self._token = access_token or None
        self._http = http

    @property
    def base_url(self) -> str:
        return self._base

    async def search_all(
        self,
        queries: Mapping[str, str],
        *,
        deadline: float | None = None,
        continuations: Mapping[str, Continuation] | None = None,
    ) -> dict[str, QueryResult]:
        """Run every query (key → relative URL, e.g. ``Observation?patient=123`` or ``Patient/123``) and
        read the remaining pages of every continuation (key → :class:`Continuation`: only the pages after
        the first are in its result) in parallel under one deadline (``loop.time()`` based; default now +
        ``settings.time_budget_s``). Never raises for a failed query: each result carries its ``error``."""
        jobs: dict[str, str | Continuation] = {**queries, **(continuations or {})}
        if not jobs:
            return {}
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self._settings.time_budget_s
        if self._http is not None:
            return await self._run_all(self._http, jobs, deadline)
        async with async_client(self._settings.time_budget_s) as http:
            return await self._run_all(http, jobs, deadline)

    async def _run_all(
        self, http: httpx.AsyncClient, jobs: Mapping[str, str | Continuation], deadline: float
    ) -> dict[str, QueryResult]:
        tasks = {key: asyncio.create_task(self._run_query(http, key, job, deadline)) for key, job in jobs.items()}
        try:
            await asyncio.gather(*tasks.values())
        finally:
            for task in tasks.values():
                task.cancel()
        return {key: task.result() for key, task in tasks.items()}

    async def _run_query(
        self, http: httpx.AsyncClient, key: str, job: str | Continuation, deadline: float
    ) -> QueryResult:
        result = QueryResult(key=key)
        kind = classify_query(job) if isinstance(job, str) else QueryKind(read=False, resource_type=None)
        started = time.perf_counter()
        log.info(
            "fhir.query.start",
            key=key,
            read=kind.read,
            resource_type=kind.resource_type,
            continued=isinstance(job, Continuation),
        )
        try:
            async with asyncio.timeout_at(deadline):
                if isinstance(job, Continuation):
                    await self._continue(http, key, job, result, deadline)
                elif kind.read:
                    await self._read(http, key, job, kind, result, deadline)
                else:
                    await self._search(http, key, job, result, deadline)
        except TimeoutError:
            result.error = f"the time budget of {self._settings.time_budget_s:g} s was exceeded"
        except _QueryFailed as exc:
            result.error = exc.reason
        if result.error is not None:
            result.resources = []
            outcome = "failed"
        else:
            outcome = "partial" if result.partial else "ok"
        log.info(
            "fhir.query.end",
            key=key,
            outcome=outcome,
            pages=result.pages,
            resources=len(result.resources),
            requests=result.requests,
            not_found=result.not_found,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return result

    # -- reads and searches ------------------------------------------------------------------------

    def _absolute(self, query: str) -> str:
        return f"{self._base}/{query.lstrip('/')}"

    async def _read(
        self,
        http: httpx.AsyncClient,
        key: str,
        query: str,
        kind: QueryKind,
        result: QueryResult,
        deadline: float,
    ) -> None:
        body = await self._get(http, key, self._absolute(query), result, deadline, missing_ok=True)
        if body is None:
            result.not_found = True
            return
        result.pages = 1
        rtype = body["resourceType"]
        if rtype != kind.resource_type:
            raise _QueryFailed(self._unexpected(rtype, f"a {kind.resource_type} resource"))
        result.resources.append(body)

    async def _search(
        self,
        http: httpx.AsyncClient,
        key: str,
        query: str,
        result: QueryResult,
        deadline: float,
    ) -> None:
        # A template's own _count is a limit ("the most recent one"): read one page, do not page on.
        url = self._absolute(with_count(query, self._settings.page_size))
        await self._pages(http, key, url, result, deadline, follow_next=not has_count(query), seen={url})

    async def _continue(
        self, http: httpx.AsyncClient, key: str, job: Continuation, result: QueryResult, deadline: float
    ) -> None:
        """The pages after a first page read elsewhere, under the same bounds as a search of our own: the
        pages and resources already read count towards ``max_pages`` and ``max_resources_per_key``."""
        url = urljoin(self._base + "/", job.next_url)
        if self._stop_paging(url, set(), job.pages_read, result):
            return
        await self._pages(
            http,
            key,
            url,
            result,
            deadline,
            follow_next=True,
            seen={url},
            pages_before=job.pages_read,
            resources_before=job.resources_read,
        )

    async def _pages(
        self,
        http: httpx.AsyncClient,
        key: str,
        url: str,
        result: QueryResult,
        deadline: float,
        *,
        follow_next: bool,
        seen: set[str],
        pages_before: int = 0,
        resources_before: int = 0,
    ) -> None:
        """Read the searchset page at ``url`` and, when ``follow_next``, the pages its next links lead to."""
        limit = self._settings.max_resources_per_key
        while True:
            body = await self._get(http, key, url, result, deadline, missing_ok=False)
            if body is None:  # pragma: no cover - only reads may be missing
                raise _QueryFailed("the FHIR server answered with no Bundle")
            if body["resourceType"] != "Bundle":
                raise _QueryFailed(self._unexpected(body["resourceType"], "a Bundle"))
            result.pages += 1
            for resource in self._bundle_resources(body, result):
                result.resources.append(resource)
                if resources_before + len(result.resources) > limit:
                    raise _QueryFailed(f"more than {limit} resources; the search was stopped")
            next_url = self._next_link(body)
            if next_url is None or not follow_next:
                return
            next_url = urljoin(self._base + "/", next_url)
            if self._stop_paging(next_url, seen, pages_before + result.pages, result):
                return
            seen.add(next_url)
            url = next_url

    def _stop_paging(self, next_url: str, seen: set[str], pages: int, result: QueryResult) -> bool:
        """Whether paging must stop before ``next_url`` (marking the result partial, with the reason)."""
        if _origin(next_url) != self._base_origin:
            problem = "paging stopped: the next link points to another server"
        elif next_url in seen:
            problem = f"paging stopped: page loop detected after {pages} pages"
        elif pages >= self._settings.max_pages:
            problem = f"page limit reached after {pages} pages"
        else:
            return False
        result.partial = True
        result.problems.append(problem)
        return True

    @staticmethod
    def _unexpected(rtype: str, expected: str) -> str:
        if rtype == "OperationOutcome":
            return f"the FHIR server answered with an OperationOutcome instead of {expected}"
        return f"the FHIR server answered with a {rtype} instead of {expected}"

    @staticmethod
    def _bundle_resources(bundle: dict[str, Any], result: QueryResult) -> list[dict[str, Any]]:
        entries = bundle.get("entry", [])
        if entries is None:
            return []
        if not isinstance(entries, list):
            raise _QueryFailed("the FHIR server answered with a malformed Bundle")
        resources: list[dict[str, Any]] = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise _QueryFailed("the FHIR server answered with a malformed Bundle entry")
            resource = entry.get("resource")
            if resource is None:
                continue
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                raise _QueryFailed("the FHIR server answered with a Bundle entry that is not a resource")
            if resource["resourceType"] == "OperationOutcome":
                result.outcomes_dropped += 1
                continue
            resources.append(resource)
        return resources

    @staticmethod
    def _next_link(bundle: dict[str, Any]) -> str | None:
        links = bundle.get("link")
        if not isinstance(links, list):
            return None
        for link in links:
            if isinstance(link, dict) and link.get("relation") == "next":
                url = link.get("url")
                if isinstance(url, str) and url.strip():
                    return url.strip()
        return None

    # -- one GET, with retries ---------------------------------------------------------------------

    async def _get(
        self,
        http: httpx.AsyncClient,
        key: str,
        url: str,
        result: QueryResult,
        deadline: float,
        *,
        missing_ok: bool,
    ) -> dict[str, Any] | None:
        """GET ``url``; the parsed FHIR resource, or None for 404/410 when ``missing_ok``."""
        if _origin(url) != self._base_origin:  # never send the token anywhere else
            raise _QueryFailed("a request to another server than fhirServer was refused")
        loop = asyncio.get_running_loop()
        headers = {"Accept": FHIR_JSON}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        retries = 0
        transport_retries = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            started = time.perf_counter()
            retry_after: str | None = None
            raw: bytes | None = None
            status = 0
            try:
                async with http.stream(
                    "GET", url, headers=headers, timeout=httpx.Timeout(remaining), follow_redirects=False
                ) as response:
                    result.requests += 1
                    status = response.status_code
                    if status == 200:
                        raw = await self._read_body(response)
                    else:
                        retry_after = response.headers.get("Retry-After")
            except httpx.TimeoutException as exc:
                raise _QueryFailed(f"the time budget of {self._settings.time_budget_s:g} s was exceeded") from exc
            except httpx.TransportError as exc:
                log.info("fhir.request.error", key=key, error=type(exc).__name__)
                wait = BACKOFF_S
                if transport_retries < MAX_TRANSPORT_RETRIES and loop.time() + wait < deadline:
                    transport_retries += 1
                    await asyncio.sleep(wait)
                    continue
                raise _QueryFailed(f"the FHIR server could not be reached ({type(exc).__name__})") from exc
            log.info(
                "fhir.request",
                key=key,
                status=status,
                attempt=retries + transport_retries + 1,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            if raw is not None:
                return self._parse(raw)
            if status in (404, 410) and missing_ok:
                return None
            if status in RETRYABLE_STATUSES and retries < MAX_RETRIES:
                wait_s = parse_retry_after(retry_after)
                if wait_s is None:
                    wait_s = BACKOFF_S * (2**retries)
                if loop.time() + wait_s < deadline:
                    retries += 1
                    await asyncio.sleep(wait_s)
                    continue
            raise _QueryFailed(_describe_status(status))

    async def _read_body(self, response: httpx.Response) -> bytes:
        limit = self._settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise _QueryFailed(f"the FHIR server's response is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _parse(raw: bytes) -> dict[str, Any]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _QueryFailed("the FHIR server's response is not JSON") from exc
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            raise _QueryFailed("the FHIR server's response is not a FHIR resource")
        return body
