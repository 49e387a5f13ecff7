"""One copy of each resource: the same resource under several prefetch keys, pages or Bundle entries counts
once. Used by the prefetch step (``cds.fhir.prefetch``) and by the record (``cds.record``), which reads
Bundles from disk too. Compiled in the production build (setup.py): it runs over every resource of a
request."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cds.fhir.decoding import LeanResource, UnreadableField


def last_updated(resource: Mapping[str, Any]) -> datetime | None:
    """``meta.lastUpdated`` as an aware moment (a value without an offset read as UTC); None when absent
    or unreadable. Compared as moments, not as text: ``…T10:00:00+02:00`` is earlier than
    ``…T09:00:00Z``."""
    try:
        meta = resource.get("meta")
    except UnreadableField:
        return None
    value = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def unique_resources(groups: Iterable[Iterable[Any]]) -> list[Mapping[str, Any]]:
    """The resources of ``groups``, one per (resourceType, id), each at the position of its first copy;
    of the copies, the one with the latest ``meta.lastUpdated`` (else the first). Resources without an id
    are all kept. Left out: OperationOutcomes (a server's or client's message, never the patient's data)
    and anything that is not a JSON object."""
    merged: list[Mapping[str, Any]] = []
    index: dict[tuple[str, str], int] = {}
    for group in groups:
        for resource in group:
            if type(resource) is LeanResource:  # the decoded fields, not the Mapping reads (most resources)
                rtype, rid = resource.resourceType, resource.id
            elif isinstance(resource, Mapping):
                rtype, rid = resource.get("resourceType"), resource.get("id")
            else:
                continue
            if rtype == "OperationOutcome":
                continue
            if not isinstance(rtype, str) or not isinstance(rid, str) or not rid:
                merged.append(resource)
                continue
            ident = (rtype, rid)
            position = index.setdefault(ident, len(merged))
            if position == len(merged):
                merged.append(resource)
                continue
            kept = merged[position]
            new_time, kept_time = last_updated(resource), last_updated(kept)
            if new_time is not None and kept_time is not None and new_time > kept_time:
                merged[position] = resource
    return merged
