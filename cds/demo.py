"""Demo mode data: synthetic patient Bundles from ``cds/demo_data/*.json``.

Their clinical dates are written for an evaluation date of 2026-11-01. At load time every FHIR date,
dateTime and instant is moved by (today − 2026-11-01) whole days, so a lab "4 days old" in the file is
4 days old today and the demo keeps telling the same story.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from hooks.base import HookDefinition, prefetch_key

DEMO_DIR = Path(__file__).parent / "demo_data"
ANCHOR_DATE = date(2026, 11, 1)

# FHIR date (full or year-month) and dateTime/instant with a full date. A bare year ("1960", but also codes
# such as RxNorm "2555") is never touched.
_DATE = re.compile(r"^(\d{4})-(\d{2})(-(\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?$")
# Keys whose strings are never dates even when they look like one.
_NOT_DATES = frozenset({"id", "code", "system", "reference", "url", "fullUrl", "display", "version", "div"})


def shift_date_text(value: str, delta: timedelta) -> str:
    """``value`` moved by ``delta`` if it is a FHIR date/dateTime/instant, keeping its precision and the
    time and offset as written; anything else unchanged."""
    m = _DATE.match(value)
    if not m:
        return value
    year, month = int(m.group(1)), int(m.group(2))
    try:
        if m.group(3) is None:  # year-month: move the middle of the month
            moved = date(year, month, 15) + delta
            return f"{moved.year:04d}-{moved.month:02d}"
        day = date(year, month, int(m.group(4)))
    except ValueError:
        return value
    return (day + delta).isoformat() + (m.group(5) or "")


def shift_dates(value: Any, delta: timedelta, key: str | None = None) -> Any:
    """A copy of a JSON value with every FHIR date moved by ``delta``."""
    if isinstance(value, Mapping):
        return {k: shift_dates(v, delta, k) for k, v in value.items()}
    if isinstance(value, list):
        return [shift_dates(v, delta, key) for v in value]
    if isinstance(value, str) and key not in _NOT_DATES:
        return shift_date_text(value, delta)
    return value


@dataclass(frozen=True)
class DemoPatient:
    id: str
    description: str
    file: str
    resources: tuple[dict[str, Any], ...]

    def resources_of(self, resource_type: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r.get("resourceType") == resource_type]


def _description(stem: str, patient: Mapping[str, Any], today: date) -> str:
    """A short line for the demo list: the scenario (from the file name) with sex and age, e.g.
    "Base male eligible (male, 52 y)"."""
    scenario = re.sub(r"^\d+[-_ ]*", "", stem).replace("-", " ").replace("_", " ").strip() or stem
    details = []
    if isinstance(patient.get("gender"), str):
        details.append(str(patient["gender"]))
    birth = patient.get("birthDate")
    if isinstance(birth, str) and len(birth) >= 10:
        try:
            born = date.fromisoformat(birth[:10])
        except ValueError:
            born = None
        if born is not None:
            age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
            details.append(f"{age} y")
    text = scenario[:1].upper() + scenario[1:]
    return f"{text} ({', '.join(details)})" if details else text


def load_demo_patients(today: date, directory: Path | None = None) -> dict[str, DemoPatient]:
    """Every demo Bundle in ``directory`` (default ``cds/demo_data``), dates shifted to ``today``, by
    Patient id. Files that are not Bundles with one Patient are skipped."""
    folder = directory or DEMO_DIR
    delta = today - ANCHOR_DATE
    patients: dict[str, DemoPatient] = {}
    if not folder.is_dir():
        return patients
    for path in sorted(folder.glob("*.json")):
        try:
            bundle = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            continue
        entries = bundle.get("entry")
        resources = [
            e["resource"]
            for e in (entries if isinstance(entries, list) else [])
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
        shifted = tuple(shift_dates(r, delta) for r in resources)
        found = [r for r in shifted if r.get("resourceType") == "Patient" and isinstance(r.get("id"), str)]
        if len(found) != 1:
            continue
        patient = found[0]
        patients[patient["id"]] = DemoPatient(
            id=patient["id"],
            description=_description(path.stem, patient, today),
            file=path.name,
            resources=shifted,
        )
    return patients


class DemoData:
    """The demo patients, reloaded when the day changes."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._day: date | None = None
        self._patients: dict[str, DemoPatient] = {}

    def patients(self, today: date) -> dict[str, DemoPatient]:
        if self._day != today:
            self._patients = load_demo_patients(today, self.directory)
            self._day = today
        return self._patients


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, _ref(r))}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def demo_request(
    patient: DemoPatient,
    hook: HookDefinition,
    resource_types: frozenset[str] | set[str],
    *,
    user_id: str = "Practitioner/demo-clinician",
) -> dict[str, Any]:
    """A complete, ready-to-POST hook request for the demo patient, with every prefetch key filled as a
    FHIR server would (a read → the resource, a search → a searchset Bundle, nothing found → null)."""
    templates = hook.prefetch_templates(resource_types)
    prefetch: dict[str, Any] = {}
    for resource_type in {"Patient", *resource_types}:
        key = prefetch_key(resource_type)
        if key not in templates:
            continue
        found = patient.resources_of(resource_type)
        if resource_type == "Patient":
            prefetch[key] = next((r for r in found if r.get("id") == patient.id), None)
        else:
            prefetch[key] = searchset(found) if found else None
    return {
        "hook": hook.name,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": user_id, "patientId": patient.id},
        "prefetch": dict(sorted(prefetch.items())),
    }
