"""The `--fhir URL` source of `trial-cds prescreen`: the server's resources exported (Bulk Data `$export`,
or paged search where the server has none) into NDJSON files in the work folder — a local mirror — which
the run then reads as it reads `--ndjson`. Only the resource types the chosen trials read are asked for.

With ``since`` the export holds only what changed (``_since``); a patient is screened on the whole record,
so the changes are merged into the mirror of the earlier run (a changed resource replaces its old version
by type and id), never screened on their own."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import orjson

from cds.prescreen.backend_auth import BulkAuth
from cds.prescreen.bulk_export import ExportProgress, ExportResult, export_to_ndjson
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


def _resource_id(line: bytes) -> str | None:
    try:
        value = orjson.loads(line).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def merge_changes(changes: Path, mirror: Path) -> int:
    """Each ``<Type>.ndjson`` of ``changes`` merged into the mirror's file of that type: the mirror's lines
    whose id changed are dropped, the changed lines appended (streamed; only the changed ids are held).
    Returns the number of resources merged."""
    merged = 0
    for changed in sorted(changes.glob("*.ndjson")):
        target = mirror / changed.name
        ids = {rid for line in changed.read_bytes().splitlines() if (rid := _resource_id(line)) is not None}
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as out:
            partial.chmod(0o600)
            if target.exists():
                with target.open("rb") as old:
                    for line in old:
                        if line.strip() and _resource_id(line) not in ids:
                            out.write(line if line.endswith(b"\n") else line + b"\n")
            with changed.open("rb") as new:
                for line in new:
                    if line.strip():
                        out.write(line if line.endswith(b"\n") else line + b"\n")
                        merged += 1
        partial.replace(target)
        changed.unlink()
    return merged


def export_population(
    base_url: str, into: Path, auth: BulkAuth | None, since: datetime | None, trials: Mapping[str, Trial]
) -> ExportResult:
    """The population of ``base_url`` as NDJSON files in ``into`` (made owner-only: they hold PHI); with
    ``since``, the changes merged into the mirror a full export left there."""
    if since is not None and not any(into.glob("*.ndjson")):
        raise MirrorError(f"--since updates the export of an earlier run, and {into} holds none: run without it first")
    into.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = into / ".changes" if since is not None else into
    if since is None:
        for stale in into.glob("*.ndjson"):  # a type this run does not ask for must not be read
            stale.unlink()
    result = export_to_ndjson(
        base_url,
        target,
        auth,
        since,
        types=types_read(trials),
        progress=_report,
        max_retry_after_s=MAX_RETRY_AFTER_S,
    )
    if since is not None:
        say(f"export: {merge_changes(target, into)} changed resources merged into the earlier export")
    total = sum(result.counts.values())
    say(
        f"export: {total} resources in {len(result.files)} files ({'$export' if result.method == 'bulk' else 'search'})"
    )
    for warning in result.warnings:
        say(f"export: the server warns: {warning}")
    return result
