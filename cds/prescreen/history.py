"""What a FHIR server deleted since an instant, asked of its history (the ``_history`` interaction with
``_since``): for an incremental run whose copy cannot tell deletions — a Bulk Data manifest without a
``deleted`` key (HAPI's never has one), or a paged ``_lastUpdated`` search, which sees only what exists.

Type-level history (``[base]/<Type>/_history``) for each type the CapabilityStatement declares
``history-type`` for; system-level (``[base]/_history``, its entries of the other types) where it declares
``history-system``; a type left without either is ``unseen``: its deletions cannot be known from here. A
history lists the newest version of a resource first, so a resource deleted and written again since is
not deleted. Only the DELETE entries' type and id are kept; nothing is logged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from cds.fhir import http as fhir_http
from cds.prescreen.backend_auth import BulkAuth
from cds.prescreen.bulk_export import (
    BulkExportError,
    ExportProgress,
    ServerSession,
    bundle_page,
    fhir_instant,
    next_link,
    outcome_text,
    shown_url,
    url_origin,
)
from cds.prescreen.deletions import Deletions, entry_change

#: Answers to a history request that mean "not offered here" (its types' deletions are unseen), not a failure.
REFUSED = frozenset({400, 403, 404, 405, 501})


def history_levels(statement: Any, types: Sequence[str]) -> tuple[list[str], bool]:
    """The types of ``types`` the CapabilityStatement declares ``history-type`` for, and whether it declares
    ``history-system``."""
    by_type: set[str] = set()
    system = False
    for rest in statement.get("rest") or [] if isinstance(statement, Mapping) else []:
        if not isinstance(rest, Mapping):
            continue
        system = system or _declares(rest, "history-system")
        for resource in rest.get("resource") or []:
            if isinstance(resource, Mapping) and _declares(resource, "history-type"):
                by_type.add(str(resource.get("type")))
    return [t for t in types if t in by_type], system


def _declares(part: Mapping[str, Any], code: str) -> bool:
    return any(isinstance(i, Mapping) and i.get("code") == code for i in part.get("interaction") or [])


def deletions_since(
    base_url: str,
    auth: BulkAuth | None,
    since: datetime,
    types: Sequence[str],
    *,
    http: httpx.Client | None = None,
    progress: Callable[[ExportProgress], None] | None = None,
    page_size: int = 100,
    timeout_s: float = 120.0,
) -> Deletions:
    """The resources of ``types`` deleted on the server after ``since`` (a naive datetime is UTC), from its
    history; the types whose history it does not offer are ``unseen``. Raises BulkExportError when a
    history it offers fails."""
    client = http or fhir_http.client(timeout_s)
    reader = _Reader(
        ServerSession(base_url.rstrip("/"), auth or BulkAuth(), client, progress or (lambda _: None), time.sleep)
    )
    try:
        return reader.deletions(since, list(types), page_size)
    finally:
        if http is None:
            client.close()


class _Reader:
    def __init__(self, session: ServerSession) -> None:
        self.session = session
        self.base, self.progress = session.base, session.progress

    def deletions(self, since: datetime, types: list[str], page_size: int) -> Deletions:
        found = Deletions("history")
        statement = self._statement()
        by_type, system = history_levels(statement, types) if statement is not None else ([], False)
        rest = [t for t in types if t not in by_type]
        params = urlencode({"_since": fhir_instant(since), "_count": str(page_size)})
        levels: list[tuple[str, list[str]]] = [(f"{self.base}/{t}/_history?{params}", [t]) for t in by_type]
        if rest and system:
            levels.append((f"{self.base}/_history?{params}", rest))
        elif rest:
            found.unseen.extend(rest)
        for index, (url, wanted) in enumerate(levels):
            self.progress(ExportProgress("reading the history", ", ".join(wanted), index, len(levels)))
            self._read(url, set(wanted), found)
        if levels:
            self.progress(ExportProgress("reading the history", "", len(levels), len(levels)))
        return found

    def _statement(self) -> Any:
        response = self._get(f"{self.base}/metadata")
        if response.status_code != 200:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def _read(self, url: str, wanted: set[str], found: Deletions) -> None:
        """The DELETE entries of one history, newest first: a resource's first entry is its state now."""
        seen: set[tuple[str, str]] = set()
        try:
            for entry in self._entries(url):
                change = entry_change(entry)
                if change is None or change[0] not in wanted or (change[0], change[1]) in seen:
                    continue
                seen.add((change[0], change[1]))
                if change[2]:
                    found.add(change[0], change[1])
        except _Refused as refused:
            found.unseen.extend(t for t in sorted(wanted) if t not in found.unseen)
            found.notes.append(str(refused))

    def _entries(self, url: str) -> Iterator[Any]:
        first = True
        next_url: str | None = url
        while next_url is not None:
            if url_origin(next_url) != url_origin(self.base):
                raise BulkExportError(f"a next link of the history leaves the server ({shown_url(next_url)}): refused")
            response = self._get(next_url)
            if response.status_code != 200:
                text = outcome_text(response)
                what = f"the history {shown_url(next_url)}: HTTP {response.status_code}" + (f": {text}" if text else "")
                if first and response.status_code in REFUSED:
                    raise _Refused(what)
                raise BulkExportError(f"the reading of {what}")
            first = False
            bundle = bundle_page(response, f"the history {shown_url(next_url)}")
            yield from bundle.get("entry") or []
            next_url = next_link(bundle)

    def _get(self, url: str) -> httpx.Response:
        return self.session.get(url, with_token=True)


class _Refused(Exception):
    """The server does not answer this history (it is not offered, or not to this client)."""
