"""Resources a FHIR server deleted since an incremental run's ``since``, by type and id, as a server tells
them: the DELETE entries of Bundles — the transaction Bundles of a Bulk Data manifest's ``deleted`` files
(each entry ``{"request": {"method": "DELETE", "url": "Type/id"}}``), or the entries of a ``_history``
Bundle whose ``request.method`` is DELETE (HAPI writes ``Type/id/_history/n`` there)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

#: Where the deletions were read: the export manifest's ``deleted`` files, or the server's ``_history``.
DeletionSource = Literal["manifest", "history"]


@dataclass
class Deletions:
    """``by_type[Type]`` holds the ids deleted on the server; ``unseen`` the types whose deletions the server
    could not tell (a history interaction it does not offer for them) — never empty silently."""

    source: DeletionSource
    by_type: dict[str, set[str]] = field(default_factory=dict)
    unseen: list[str] = field(default_factory=list)
    #: Why a part of them is unseen, as the server answered (no patient content).
    notes: list[str] = field(default_factory=list)

    def add(self, rtype: str, rid: str) -> None:
        self.by_type.setdefault(rtype, set()).add(rid)

    def ids(self, rtype: str) -> set[str]:
        return self.by_type.get(rtype, set())

    def patients(self) -> set[str]:
        """The deleted Patients: every resource of theirs goes with them."""
        return self.ids("Patient")

    def still_present(self, rtype: str, present: set[str]) -> None:
        """Forget the deletions of ``rtype`` that ``present`` holds: deleted, then written again (the export
        of the changes has the resource as it is now)."""
        ids = self.by_type.get(rtype)
        if ids:
            ids -= present

    def count(self) -> int:
        return sum(len(ids) for ids in self.by_type.values())


def resource_address(url: str) -> tuple[str, str] | None:
    """(type, id) of a request URL: ``Type/id``, ``Type/id/_history/n``, or an absolute URL ending so;
    None for anything else (a conditional delete ``Type?…`` names no id)."""
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2:
        return None
    rtype, rid = parts[-2], parts[-1]
    if not rtype[:1].isupper() or not rtype.isalnum() or not rid or rid.startswith(("_", "$")):
        return None
    return rtype, rid


def entry_change(entry: Any) -> tuple[str, str, bool] | None:
    """(type, id, deleted) of one Bundle entry of a history or a deleted file: the request's method and URL,
    else (a history entry without request) the resource's own type and id; None when it names none."""
    if not isinstance(entry, Mapping):
        return None
    request = entry.get("request")
    if isinstance(request, Mapping) and isinstance(request.get("url"), str):
        address = resource_address(request["url"])
        if address is not None:
            return address[0], address[1], str(request.get("method", "")).upper() == "DELETE"
    resource = entry.get("resource")
    if isinstance(resource, Mapping):
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(rtype, str) and isinstance(rid, str) and rid:
            return rtype, rid, False
    return None


def deleted_in_bundle(bundle: Any) -> Iterator[tuple[str, str]]:
    """(type, id) of each DELETE entry of a Bundle (a line of a manifest's ``deleted`` file)."""
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        return
    for entry in bundle.get("entry") or []:
        change = entry_change(entry)
        if change is not None and change[2]:
            yield change[0], change[1]
