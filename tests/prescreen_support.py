"""What the pre-screen tests share: NDJSON written as `$export` writes it, from resources or Bundles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from cds.prescreen.screening import CandidateRow

ROOT = Path(__file__).resolve().parents[1]
PATIENT_BUNDLES = sorted((ROOT / "fixtures" / "patients").glob("*.json"))
NOW = "2026-11-01T12:00:00Z"


def write_ndjson(folder: Path, resources: Iterable[Mapping[str, Any]]) -> Path:
    """One ``<Type>.ndjson`` file per resource type in ``folder``, as a Bulk Data export writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[bytes]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(orjson.dumps(r))
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return folder


def exported(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Bundle's resources as a FHIR server exports them: references by fullUrl (``urn:uuid:…``,
    absolute URLs) rewritten to the relative ``Patient/<id>`` a server stores."""
    entries = bundle.get("entry") or []
    urls = {
        e["fullUrl"]: f"Patient/{e['resource']['id']}"
        for e in entries
        if e.get("fullUrl") and e["resource"].get("resourceType") == "Patient"
    }

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (urls.get(v, v) if k == "reference" and isinstance(v, str) else rewrite(v)) for k, v in value.items()
            }
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    return [rewrite(e["resource"]) for e in entries]


def row(
    patient: str, verdict: str = "needs_review", confirm: int = 1, latest: str = "", trial: str = "t1"
) -> CandidateRow:
    """A row as the engine would make it, with only what a test is about set."""
    return CandidateRow(
        trial_id=trial,
        patient_id=patient,
        verdict=verdict,
        criteria_met=3,
        criteria_ruling_out=1 if verdict == "not_eligible" else 0,
        criteria_unknown=confirm,
        criteria_total=5,
        to_confirm=tuple(f"c{i}" for i in range(confirm)),
        excluded_by=("c9",) if verdict == "not_eligible" else (),
        latest_data=latest,
        screen_json=orjson.dumps({"patient": f"Patient/{patient}"}).decode(),
    )
