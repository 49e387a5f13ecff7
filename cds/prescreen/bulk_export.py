"""Copy a FHIR server's patients to NDJSON files, one per resource type (``<out_dir>/<Type>.ndjson``), the
layout ``trial-cds prescreen --ndjson`` reads.

Where the server offers it, by FHIR Bulk Data Access (v2) ``$export``: a kick-off (``Prefer:
respond-async``) at system level (``[base]/$export``) or Patient level (``[base]/Patient/$export``), polling
of the status URL the server gives (``Content-Location``) that honours ``Retry-After`` (seconds or an HTTP
date; a bounded back-off when the server gives none), the output files downloaded streamed (with the access
token when the manifest says ``requiresAccessToken``; several files of one type are concatenated), and the
job deleted at the end. ``since`` becomes ``_since`` (an incremental run), ``types`` ``_type``. The
manifest's ``deleted`` files (transaction Bundles of DELETE entries: what was deleted since ``_since``) are
read into :attr:`ExportResult.deleted`.

Where the server does not support ``$export`` (its CapabilityStatement declares no ``export`` operation, or
the kick-off answers 404, 405 or 501), by paged search: ``Patient`` and then each type, ``_count`` per
page, following the ``next`` links, into the same files. A search cannot see deletions
(``ExportResult.deleted`` is None): cds.prescreen.history asks the server's ``_history`` for them.

Files are written with owner-only permissions (they hold PHI) and appear under their final names only when
complete. Nothing here logs a token or patient content; errors name the server's answer (HTTP status,
OperationOutcome text).
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlencode, urlsplit

import httpx

from cds.fhir import http as fhir_http
from cds.prescreen.backend_auth import BackendServices, BulkAuth, BulkAuthError
from cds.prescreen.deletions import Deletions, deleted_in_bundle

NDJSON = "application/fhir+ndjson"
#: The resource types copied when ``types`` is not given: those the bundled trials read
#: (``hooks.base.resource_types``; a test keeps the two the same). A caller with its own trials passes
#: ``sorted(resource_types(portfolio.open_trials))``. A bulk export without ``_type`` would copy every type,
#: Claims and all.
DEFAULT_TYPES: tuple[str, ...] = (
    "Patient",
    "Condition",
    "Observation",
    "Procedure",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "AllergyIntolerance",
    "Immunization",
)
#: Kick-off answers that mean "no $export here": fall back to paged search.
NOT_SUPPORTED = frozenset({404, 405, 501})
#: Waits between status polls when the server gives no Retry-After: doubling from the first to the last.
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
#: A transient polling failure (5xx, or 429) is retried this many times in a row before giving up.
TRANSIENT_RETRIES = 5


class BulkExportError(Exception):
    """The export failed; the message names the server's answer and holds no token or patient content."""


@dataclass(frozen=True)
class ExportProgress:
    """One step of an export, for a progress display: ``stage`` is "kick-off", "waiting" (``detail`` is the
    server's ``X-Progress``), "downloading" or "searching" (``done`` of ``total`` files or types)."""

    stage: str
    detail: str = ""
    done: int = 0
    total: int = 0


@dataclass
class ExportResult:
    """What was written: ``<Type>`` → its NDJSON file and the number of resources in it."""

    out_dir: Path
    method: Literal["bulk", "search"]
    files: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    #: The server's ``transactionTime`` (bulk) or the time the search began (search): the ``since`` of the
    #: next incremental run.
    transaction_time: str | None = None
    #: OperationOutcome issues of severity warning or information the server reported in its error files.
    warnings: list[str] = field(default_factory=list)
    #: What the manifest's ``deleted`` files say was deleted since ``_since``; None when the manifest has no
    #: ``deleted`` key (the spec lets a server leave it out — HAPI does, always) or the copy was a search:
    #: then the deletions are not known, which is not the same as none.
    deleted: Deletions | None = None


ProgressCallback = Callable[[ExportProgress], None]


def export_to_ndjson(
    base_url: str,
    out_dir: Path,
    auth: BulkAuth | None,
    since: datetime | None,
    types: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    *,
    level: Literal["auto", "system", "patient", "search"] = "auto",
    http: httpx.Client | None = None,
    max_wait_s: float = 6 * 3600.0,
    max_retry_after_s: float | None = None,
    page_size: int = 100,
    timeout_s: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ExportResult:
    """Copy the server's resources of ``types`` (default :data:`DEFAULT_TYPES`) changed after ``since``
    (every one when None; a naive datetime is taken as UTC) to ``out_dir/<Type>.ndjson``.

    ``level`` "auto" uses the system-level ``$export`` when the CapabilityStatement declares it, else the
    Patient-level one, else paged search; "search" always pages (a server whose ``$export`` is broken).
    ``max_retry_after_s`` caps a server's ``Retry-After`` (None: honour
    it; HAPI asks for 120 s); ``max_wait_s`` bounds the whole wait for the export. Raises
    :class:`BulkExportError` (or ``BulkAuthError``) with the server's answer.
    """
    wanted = _check_types(types if types is not None else DEFAULT_TYPES)
    session = ServerSession(
        base_url.rstrip("/"), auth or BulkAuth(), http or fhir_http.client(timeout_s), progress or (lambda _: None),
        sleep,
    )
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        chosen = _choose_level(session, level)
        if chosen is not None:
            kicked = _kick_off(session, chosen, wanted, since)
            if kicked is not None:
                return _run_bulk(session, kicked, out_dir, max_wait_s, max_retry_after_s)
        return _run_search(session, out_dir, wanted, since, page_size)
    finally:
        if http is None:
            session.http.close()


# --------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------


@dataclass
class ServerSession:
    """One FHIR server as this module and the history reader (``cds.prescreen.history``) ask it: its base
    URL, its auth, and GETs whose failures are BulkExportErrors naming the URL without its query."""

    base: str
    auth: BulkAuth
    http: httpx.Client
    progress: ProgressCallback
    sleep: Callable[[float], None]

    def may_carry_token(self, url: str) -> bool:
        """The token goes to the server's own origin only (status URLs, next links), never elsewhere."""
        return url_origin(url) == url_origin(self.base)

    def headers(self, url: str, *, with_token: bool, **more: str) -> dict[str, str]:
        token = self.auth.access_token(self.http, self.base) if with_token else None
        return fhir_http.headers(token, **more)

    def get(self, url: str, *, with_token: bool | None = None, **more: str) -> httpx.Response:
        send_token = self.may_carry_token(url) if with_token is None else with_token
        try:
            return self.http.get(url, headers=self.headers(url, with_token=send_token, **more))
        except httpx.TimeoutException as exc:
            raise BulkExportError(f"{shown_url(url)}: no answer in time ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise BulkExportError(f"{shown_url(url)}: the server cannot be reached ({type(exc).__name__})") from exc


def url_origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def shown_url(url: str) -> str:
    """A URL for an error message: without its query (which may name patients or carry a signature)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _check_types(types: Sequence[str]) -> list[str]:
    out: list[str] = []
    for t in types:
        if not t or not t[0].isupper() or not t.isalnum():
            raise BulkExportError(f"{t!r} is not a FHIR resource type")
        if t not in out:
            out.append(t)
    return out


def fhir_instant(since: datetime) -> str:
    aware = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def outcome_text(response: httpx.Response) -> str:
    """The diagnostics of an OperationOutcome answer, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip()
    return _issues_text(body) if isinstance(body, Mapping) else str(body)[:300]


def _issues_text(outcome: Mapping[str, Any], severities: frozenset[str] | None = None) -> str:
    texts = [
        str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code"))
        for i in outcome.get("issue") or []
        if isinstance(i, Mapping) and (severities is None or i.get("severity") in severities)
    ]
    return "; ".join(texts)[:1000]


def _failure(what: str, response: httpx.Response) -> BulkExportError:
    text = outcome_text(response)
    hint = " (server unavailable, or out of memory?)" if response.status_code in (502, 503, 504) else ""
    return BulkExportError(f"{what}: HTTP {response.status_code}{hint}" + (f": {text}" if text else ""))


# --------------------------------------------------------------------------------------------------
# $export
# --------------------------------------------------------------------------------------------------


def _choose_level(session: ServerSession, level: str) -> str | None:
    """The kick-off URL's path ("$export" or "Patient/$export"), or None for paged search."""
    if level == "system":
        return "$export"
    if level == "patient":
        return "Patient/$export"
    if level == "search":
        return None
    response = session.get(f"{session.base}/metadata")
    if response.status_code != 200:
        return "$export"  # no CapabilityStatement to go by: try the kick-off (404/405/501 → search)
    try:
        statement = response.json()
    except ValueError:
        return "$export"
    system_ops, patient_ops = _export_operations(statement)
    if system_ops:
        return "$export"
    if patient_ops:
        return "Patient/$export"
    return None


def _export_operations(statement: Any) -> tuple[bool, bool]:
    """Whether the CapabilityStatement declares a system-level and a Patient-level ``export`` operation."""

    def is_export(op: Any) -> bool:
        if not isinstance(op, Mapping):
            return False
        definition = str(op.get("definition") or "")
        return op.get("name") == "export" or definition.endswith(("/export", "/patient-export"))

    system = patient = False
    for rest in statement.get("rest") or [] if isinstance(statement, Mapping) else []:
        if not isinstance(rest, Mapping):
            continue
        system = system or any(is_export(op) for op in rest.get("operation") or [])
        for resource in rest.get("resource") or []:
            if isinstance(resource, Mapping) and resource.get("type") == "Patient":
                patient = patient or any(is_export(op) for op in resource.get("operation") or [])
    return system, patient


def _kick_off(session: ServerSession, path: str, types: Sequence[str], since: datetime | None) -> str | None:
    """Start the export; the status URL, or None when the server has no ``$export`` (search instead)."""
    params = {"_outputFormat": NDJSON, "_type": ",".join(types)}
    if since is not None:
        params["_since"] = fhir_instant(since)
    url = f"{session.base}/{path}?{urlencode(params)}"
    session.progress(ExportProgress("kick-off", path))
    response = session.get(url, with_token=True, Prefer="respond-async")
    if response.status_code in NOT_SUPPORTED:
        return None
    if response.status_code != 202:
        raise _failure(f"the server refused the export ({path})", response)
    location: str | None = response.headers.get("Content-Location")
    if not location:
        raise BulkExportError(f"the server accepted the export ({path}) but gave no Content-Location to poll")
    return location


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds from now: a number of seconds, or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _run_bulk(
    session: ServerSession, status_url: str, out_dir: Path, max_wait_s: float, max_retry_after_s: float | None
) -> ExportResult:
    if not session.may_carry_token(status_url):
        raise BulkExportError(f"the status URL {shown_url(status_url)} is not on the FHIR server: refused")
    try:
        manifest = _poll(session, status_url, max_wait_s, max_retry_after_s)
        result = _download(session, manifest, out_dir)
    finally:
        # After the download, or to cancel the job after a failure; a failed delete does not undo a good copy.
        not_deleted = _delete_job(session, status_url)
    if not_deleted:
        result.warnings.append(not_deleted)
    return result


def _poll(session: ServerSession, status_url: str, max_wait_s: float, cap_s: float | None) -> Mapping[str, Any]:
    waited = 0.0
    backoff = BACKOFF_FIRST_S
    transient = 0
    while True:
        response = session.get(status_url, with_token=True)
        if response.status_code == 200:
            try:
                manifest = response.json()
            except ValueError as exc:
                raise BulkExportError("the export finished, but its manifest is not JSON") from exc
            if not isinstance(manifest, Mapping) or not isinstance(manifest.get("output"), list):
                raise BulkExportError("the export finished, but its manifest has no output list")
            return manifest
        if response.status_code == 202:
            transient = 0
            session.progress(ExportProgress("waiting", response.headers.get("X-Progress", "")[:100]))
        elif response.status_code == 429 or (response.status_code >= 500 and _is_transient(response)):
            transient += 1
            if transient > TRANSIENT_RETRIES:
                raise _failure(f"the export's status failed {transient} times in a row", response)
        else:
            raise _failure("the export failed", response)
        wait = retry_after_s(response.headers.get("Retry-After"))
        if wait is None:
            wait, backoff = backoff, min(backoff * 2, BACKOFF_MAX_S)
        if cap_s is not None:
            wait = min(wait, cap_s)
        if waited + wait > max_wait_s:
            raise BulkExportError(f"the export did not finish within {max_wait_s:.0f} s (cancelled)")
        session.sleep(wait)
        waited += wait


def _is_transient(response: httpx.Response) -> bool:
    """A 5xx status answer whose OperationOutcome says ``transient`` (the spec's "try again later"); any
    other 5xx is the job's failure. A 503 without an OperationOutcome is taken as transient too."""
    try:
        body = response.json()
    except ValueError:
        return response.status_code == 503
    issues = body.get("issue") if isinstance(body, Mapping) else None
    return any(isinstance(i, Mapping) and i.get("code") == "transient" for i in issues or [])


def _download(session: ServerSession, manifest: Mapping[str, Any], out_dir: Path) -> ExportResult:
    requires_token = bool(manifest.get("requiresAccessToken"))
    outputs = [o for o in manifest.get("output") or [] if isinstance(o, Mapping)]
    errors = [o for o in manifest.get("error") or [] if isinstance(o, Mapping)]
    result = ExportResult(
        out_dir=out_dir,
        method="bulk",
        transaction_time=str(manifest["transactionTime"]) if manifest.get("transactionTime") else None,
    )
    problems = _read_error_files(session, errors, requires_token, result)
    if problems:
        raise BulkExportError(f"the server reported errors during the export: {problems}")
    by_type: dict[str, list[str]] = {}
    for output in outputs:
        rtype, url = output.get("type"), output.get("url")
        if not isinstance(rtype, str) or not isinstance(url, str):
            raise BulkExportError("the export's manifest has an output without type or url")
        _check_types([rtype])
        by_type.setdefault(rtype, []).append(url)
    done = 0
    with _NdjsonWriter(out_dir) as writer:
        for rtype, urls in by_type.items():
            for url in urls:
                session.progress(ExportProgress("downloading", rtype, done, len(outputs)))
                with _stream(session, url, requires_token) as lines:
                    writer.write_lines(rtype, lines)
                done += 1
        session.progress(ExportProgress("downloading", "", done, len(outputs)))
        if isinstance(manifest.get("deleted"), list):  # before the outputs get their final names
            result.deleted = _read_deleted_files(session, manifest["deleted"], requires_token)
        result.files, result.counts = writer.finish()
    return result


def _read_deleted_files(session: ServerSession, deleted: Sequence[Any], requires_token: bool) -> Deletions:
    """The DELETE entries of the manifest's ``deleted`` files (NDJSON, one transaction Bundle a line)."""
    found = Deletions("manifest")
    for item in deleted:
        url = item.get("url") if isinstance(item, Mapping) else None
        if not isinstance(url, str):
            raise BulkExportError("the export's manifest has a deleted file without url")
        session.progress(ExportProgress("downloading", "deleted"))
        with _stream(session, url, requires_token) as lines:
            for line in lines:
                try:
                    bundle = json.loads(line)
                except ValueError as exc:
                    raise BulkExportError(f"a line of the deleted file {shown_url(url)} is not JSON") from exc
                for rtype, rid in deleted_in_bundle(bundle):
                    found.add(rtype, rid)
    return found


def _read_error_files(
    session: ServerSession, errors: Sequence[Mapping[str, Any]], requires_token: bool, result: ExportResult
) -> str:
    """Read the manifest's error files (NDJSON of OperationOutcomes): warnings go to ``result.warnings``; the
    text of the issues of severity error or fatal is returned (empty when there are none)."""
    failures: list[str] = []
    for error in errors:
        url = error.get("url")
        if not isinstance(url, str):
            continue
        with _stream(session, url, requires_token) as lines:
            for line in lines:
                outcome = json.loads(line)
                if not isinstance(outcome, Mapping):
                    continue
                bad = _issues_text(outcome, frozenset({"error", "fatal"}))
                if bad:
                    failures.append(bad)
                minor = _issues_text(outcome, frozenset({"warning", "information"}))
                if minor:
                    result.warnings.append(minor)
    shown = "; ".join(failures[:5])
    return shown + (f" and {len(failures) - 5} more" if len(failures) > 5 else "")


@contextmanager
def _stream(session: ServerSession, url: str, requires_token: bool) -> Iterator[Iterator[bytes]]:
    """The non-empty lines of one output file, streamed."""
    if requires_token and not (session.may_carry_token(url) or url.startswith("https://")):
        raise BulkExportError(f"{shown_url(url)}: the token would go unencrypted to another host: refused")
    token = session.auth.access_token(session.http, session.base) if requires_token else None
    headers = fhir_http.headers(token, Accept=NDJSON)
    try:
        with session.http.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                raise _failure(f"the download of {shown_url(url)} failed", response)
            yield (line.encode("utf-8") for line in response.iter_lines() if line.strip())
    except httpx.HTTPError as exc:
        raise BulkExportError(f"the download of {shown_url(url)} failed ({type(exc).__name__})") from exc


def _delete_job(session: ServerSession, status_url: str) -> str | None:
    """Delete the job and its files on the server; why it could not be, or None."""
    try:
        response = session.http.delete(status_url, headers=session.headers(status_url, with_token=True))
    except (httpx.HTTPError, BulkAuthError) as exc:
        return f"the export's job could not be deleted on the server ({type(exc).__name__})"
    if response.status_code not in (200, 202, 204, 404, 410):
        return f"the export's job could not be deleted on the server: {_failure('DELETE', response)}"
    return None


# --------------------------------------------------------------------------------------------------
# Paged search
# --------------------------------------------------------------------------------------------------


def _run_search(
    session: ServerSession, out_dir: Path, types: Sequence[str], since: datetime | None, page_size: int
) -> ExportResult:
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    ordered = ["Patient", *[t for t in types if t != "Patient"]] if "Patient" in types else list(types)
    result = ExportResult(out_dir=out_dir, method="search", transaction_time=started)
    with _NdjsonWriter(out_dir) as writer:
        for index, rtype in enumerate(ordered):
            session.progress(ExportProgress("searching", rtype, index, len(ordered)))
            writer.write_lines(rtype, _search_pages(session, rtype, since, page_size))
        session.progress(ExportProgress("searching", "", len(ordered), len(ordered)))
        result.files, result.counts = writer.finish()
    return result


def bundle_page(response: httpx.Response, what: str) -> Mapping[str, Any]:
    """A page of a search or a history: the Bundle it answered, or a BulkExportError naming ``what``."""
    try:
        bundle = response.json()
    except ValueError as exc:
        raise BulkExportError(f"{what} answered something that is not JSON") from exc
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise BulkExportError(f"{what} answered something that is not a Bundle")
    return bundle


def next_link(bundle: Mapping[str, Any]) -> str | None:
    """The URL of a Bundle's next page, None on the last."""
    return next(
        (link["url"] for link in bundle.get("link") or [] if isinstance(link, Mapping)
         and link.get("relation") == "next" and isinstance(link.get("url"), str)),
        None,
    )


def _search_pages(session: ServerSession, rtype: str, since: datetime | None, page_size: int) -> Iterator[bytes]:
    """Every resource of ``rtype`` (``search.mode`` match), page after page, as NDJSON lines."""
    params = {"_count": str(page_size)}
    if since is not None:
        params["_lastUpdated"] = "gt" + fhir_instant(since)
    url: str | None = f"{session.base}/{rtype}?{urlencode(params)}"
    while url is not None:
        if not session.may_carry_token(url):
            raise BulkExportError(f"a next link of the {rtype} search leaves the server ({shown_url(url)}): refused")
        response = session.get(url)
        if response.status_code != 200:
            raise _failure(f"the search of {rtype} failed", response)
        bundle = bundle_page(response, f"the search of {rtype}")
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            mode = (entry.get("search") or {}).get("mode", "match") if isinstance(entry, Mapping) else None
            if isinstance(resource, Mapping) and resource.get("resourceType") == rtype and mode == "match":
                yield json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        url = next_link(bundle)


# --------------------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------------------


class _NdjsonWriter:
    """``<Type>.ndjson.partial`` files (owner-only), renamed to ``<Type>.ndjson`` by :meth:`finish`; removed
    when the export fails, so a file under its final name is always complete."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.files: dict[str, IO[bytes]] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> _NdjsonWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        for rtype, handle in self.files.items():
            handle.close()
            self._partial(rtype).unlink(missing_ok=True)

    def _partial(self, rtype: str) -> Path:
        return self.out_dir / f"{rtype}.ndjson.partial"

    def write_lines(self, rtype: str, lines: Iterator[bytes]) -> None:
        handle = self.files.get(rtype)
        if handle is None:
            fd = os.open(self._partial(rtype), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            handle = self.files[rtype] = os.fdopen(fd, "wb")
            self.counts[rtype] = 0
        for line in lines:
            handle.write(line.rstrip(b"\r\n") + b"\n")
            self.counts[rtype] += 1

    def finish(self) -> tuple[dict[str, Path], dict[str, int]]:
        paths: dict[str, Path] = {}
        for rtype, handle in self.files.items():
            handle.close()
            final = self.out_dir / f"{rtype}.ndjson"
            os.replace(self._partial(rtype), final)
            paths[rtype] = final
        self.files = {}
        return paths, dict(self.counts)


__all__ = [
    "DEFAULT_TYPES",
    "BackendServices",
    "BulkAuth",
    "BulkAuthError",
    "BulkExportError",
    "ExportProgress",
    "ExportResult",
    "export_to_ndjson",
    "outcome_text",
    "retry_after_s",
]
