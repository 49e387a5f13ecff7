"""The `--fhir URL` source of `trial-cds prescreen`: the server's resources exported (Bulk Data `$export`,
or paged search where the server has none) into NDJSON files in the work folder — a local mirror — which
the run then reads as it reads `--ndjson`. Only the resource types the chosen trials read are asked for.

With ``since`` the export holds only what changed (``_since``); a patient is screened on the whole record,
so the changes are merged into the mirror of the earlier run (a changed resource replaces its old version
by type and id), never screened on their own. What was deleted on the server since is removed from the
mirror — a deleted Patient with every resource of theirs — as the manifest's ``deleted`` files list it,
else as the server's ``_history`` tells it (cds.prescreen.history); a type whose deletions neither can
tell is named in a warning: only a full export drops them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import msgspec

from cds.prescreen.backend_auth import BulkAuth
from cds.prescreen.bulk_export import ExportProgress, ExportResult, export_to_ndjson
from cds.prescreen.deletions import Deletions
from cds.prescreen.history import deletions_since
from cds.prescreen.keys import key_fields, patient_key
from cds.prescreen.progress import say
from cds.trials import Trial

#: HAPI answers every poll with ``Retry-After: 120``; a small export is ready in seconds, so polls are
#: at most this far apart (the server's own figure when shorter).
MAX_RETRY_AFTER_S = 10.0


def types_read(trials: Mapping[str, Trial]) -> list[str]:
    """Every resource type the trials read, the Patient, and the Medications their orders name."""
    types = {"Patient", "Medication"}
    for trial in trials.values():
        types.update(trial.resource_types())
    return sorted(types)


def _report(step: ExportProgress) -> None:
    # Counts and stages only: the server's X-Progress text is its own, never patient content.
    if step.stage == "waiting":
        say(f"export: waiting for the server{f' ({step.detail})' if step.detail else ''}")
    elif step.total:
        say(f"export: {step.stage} {step.done} of {step.total}")
    else:
        say(f"export: {step.stage}")


class MirrorError(Exception):
    """An incremental export without the full export it would update."""


@dataclass(frozen=True)
class Merged:
    """What an incremental export changed in the mirror."""

    #: Changed resources written (each replacing its earlier version, if any).
    changed: int
    #: Resources of the mirror removed: deleted on the server, or belonging to a deleted Patient.
    removed: int
    #: Patients deleted on the server: none of their resources is left to screen.
    patients: int


def _line_keys(line: bytes) -> tuple[str | None, str | None]:
    """A line's resource id and the id of the Patient it belongs to (None for what cannot be told)."""
    try:
        _, fields = key_fields(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None, None
    rid = fields.get("id")
    return (rid if isinstance(rid, str) else None), patient_key(fields)


def _changed_ids(changed: Path | None) -> set[str]:
    if changed is None:
        return set()
    with changed.open("rb") as lines:
        return {rid for line in lines if line.strip() and (rid := _line_keys(line.strip())[0]) is not None}


def merge_changes(changes: Path, mirror: Path, deleted: Deletions | None = None) -> Merged:
    """Each ``<Type>.ndjson`` of ``changes`` merged into the mirror's file of that type — the mirror's lines
    whose id changed are dropped, the changed lines appended — and what ``deleted`` names removed: a deleted
    resource, and every resource of a deleted Patient (a resource deleted, then written again, is in
    ``changes`` and stays). One type at a time, streamed (only that type's changed ids are held); each file
    is written whole beside the old one and renamed over it, so a file is never half merged, and an
    interrupted merge is finished by running the same incremental export again."""
    changed_files = {p.name.removesuffix(".ndjson"): p for p in changes.glob("*.ndjson")}
    known = set(changed_files) | {p.name.removesuffix(".ndjson") for p in mirror.glob("*.ndjson")}
    # Patients first: whether a Patient was deleted, or deleted and written again, decides the others.
    order = sorted(known, key=lambda t: (t != "Patient", t))
    gone = Deletions("manifest") if deleted is None else deleted
    changed = removed = 0
    patients = gone.patients()
    for rtype in order:
        changed_file = changed_files.get(rtype)
        ids = _changed_ids(changed_file)
        gone.still_present(rtype, ids)
        patients = gone.patients()
        deleted_ids = gone.ids(rtype)
        if changed_file is None and not deleted_ids and not patients:
            continue
        target = mirror / f"{rtype}.ndjson"
        partial = target.with_name(target.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            if target.exists():
                with target.open("rb") as old:
                    for line in old:
                        line = line.strip()
                        if not line:
                            continue
                        rid, owner = _line_keys(line)
                        if rid in ids:
                            continue  # replaced by its changed version below
                        if rid in deleted_ids or (owner is not None and owner in patients):
                            removed += 1
                            continue
                        out.write(line + b"\n")
            if changed_file is not None:
                with changed_file.open("rb") as new:
                    for line in new:
                        line = line.strip()
                        if not line:
                            continue
                        if patients and _line_keys(line)[1] in patients:
                            continue  # a resource left on the server of a Patient deleted there
                        out.write(line + b"\n")
                        changed += 1
        partial.replace(target)
        if changed_file is not None:
            changed_file.unlink()
    return Merged(changed, removed, len(patients))


def export_population(
    base_url: str,
    into: Path,
    auth: BulkAuth | None,
    since: datetime | None,
    trials: Mapping[str, Trial],
    *,
    http: httpx.Client | None = None,
) -> ExportResult:
    """The population of ``base_url`` as NDJSON files in ``into`` (made owner-only: they hold PHI); with
    ``since``, the changes merged into the mirror a full export left there, and what the server deleted
    since removed from it — as the export's manifest lists it, else as the server's history tells it; what
    neither can tell is said, never passed over."""
    if since is not None and not any(into.glob("*.ndjson")):
        raise MirrorError(f"--since updates the export of an earlier run, and {into} holds none: run without it first")
    into.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = into / ".changes" if since is not None else into
    for stale in target.glob("*.ndjson"):  # a type this run does not ask for, or an interrupted run's changes
        stale.unlink()
    types = types_read(trials)
    result = export_to_ndjson(
        base_url,
        target,
        auth,
        since,
        types=types,
        progress=_report,
        max_retry_after_s=MAX_RETRY_AFTER_S,
        http=http,
    )
    if since is not None:
        if result.deleted is None:
            result.deleted = deletions_since(base_url, auth, since, types, http=http, progress=_report)
        merged = merge_changes(target, into, result.deleted)
        _report_merge(merged, result.deleted, since)
    total = sum(result.counts.values())
    say(
        f"export: {total} resources in {len(result.files)} files ({'$export' if result.method == 'bulk' else 'search'})"
    )
    for warning in result.warnings:
        say(f"export: the server warns: {warning}")
    return result


def _report_merge(merged: Merged, deleted: Deletions, since: datetime) -> None:
    where = "the export's deleted files" if deleted.source == "manifest" else "the server's _history"
    say(f"export: {merged.changed} changed resources merged into the earlier export")
    say(
        f"export: {merged.removed} resources removed, deleted on the server since {since.isoformat()} "
        f"(from {where}; {merged.patients} Patients deleted, with every resource of theirs)"
    )
    if deleted.unseen:
        why = f" ({'; '.join(deleted.notes)})" if deleted.notes else ""
        say(
            f"export: WARNING: deletions since {since.isoformat()} cannot be seen on this server for "
            f"{', '.join(deleted.unseen)}: its export lists none and it offers no history of them{why}. "
            "Resources deleted there stay in the mirror and are screened as before; "
            "run without --since (a full export) to drop them"
        )
