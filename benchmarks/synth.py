"""Synthetic patients of a chosen size, made deterministically from a fixture bundle.

A fixture patient (``fixtures/patients/*.json``, written for the evaluation date 2026-11-01) is grown to
``size`` resources the way an oncology record grows: the same lab panel drawn weekly for years before
the fixture's results (values jittered around the fixture's own), vital signs, more diagnoses and
medications of the past. Every added resource is older than the fixture's own, so the assessment of the
grown patient equals the fixture's (``check_same_verdict``), while the engine reads every resource.

``shift_days`` moves every date by whole days, so a patient written for 2026-11-01 can be evaluated by
the service on the day of the run (its clock is the real one): ``shift_days = (today - 2026-11-01)``.
Same fixture, size and shift → byte-identical output.
"""

from __future__ import annotations

import copy
import random
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
from fhir_builders import SNOMED, condition, lab, med_statement, subject, vital_sign

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "patients"
DEFAULT_FIXTURE = "01-base-male-eligible.json"
ANCHOR = date(2026, 11, 1)  # the fixtures' evaluation date

# Conditions and medications of the past: common comorbidities, none in a trial value set.
PAST_CONDITIONS = [
    (SNOMED, "55822004", "Hyperlipidemia"),
    (SNOMED, "235595009", "Gastroesophageal reflux disease"),
    (SNOMED, "396275006", "Osteoarthritis"),
    (SNOMED, "61582004", "Allergic rhinitis"),
    (SNOMED, "193462001", "Insomnia"),
    (SNOMED, "40055000", "Chronic sinusitis"),
    (SNOMED, "68566005", "Urinary tract infection"),
    (SNOMED, "195662009", "Acute viral pharyngitis"),
    (SNOMED, "444814009", "Viral sinusitis"),
    (SNOMED, "10509002", "Acute bronchitis"),
]
PAST_MEDICATIONS = [
    ("83367", "atorvastatin"),
    ("7646", "omeprazole"),
    ("161", "acetaminophen"),
    ("5640", "ibuprofen"),
    ("10582", "levothyroxine"),
    ("6918", "metoprolol"),
    ("29046", "lisinopril"),
    ("36567", "simvastatin"),
]
VITALS = [
    ("8867-4", "Heart rate", 72.0, "/min"),
    ("8480-6", "Systolic blood pressure", 128.0, "mm[Hg]"),
    ("8462-4", "Diastolic blood pressure", 80.0, "mm[Hg]"),
    ("29463-7", "Body weight", 68.0, "kg"),
    ("8310-5", "Body temperature", 36.8, "Cel"),
    ("9279-1", "Respiratory rate", 16.0, "/min"),
    ("59408-5", "Oxygen saturation", 97.0, "%"),
]

# The lab-dense patient's tests: CBC, coagulation, chemistry and liver, each a LOINC code the trial's lab
# rules read (fhir_mappings/valuesets), with the fixture's own result as the mean.
LAB_DENSE_CODES = (
    "751-8",  # neutrophils
    "777-3",  # platelets
    "718-7",  # haemoglobin
    "6301-6",  # INR
    "5902-2",  # prothrombin time
    "3173-2",  # aPTT
    "2160-0",  # creatinine
    "2823-3",  # potassium
    "2951-2",  # sodium
    "17861-6",  # calcium
    "1975-2",  # bilirubin
    "1920-8",  # AST
    "1742-6",  # ALT
)
LAB_DENSE_DAYS = 730  # the results are spread over two years before the fixture's own

_DATE = re.compile(rb'"(\d{4})-(\d{2})-(\d{2})')


def load_fixture(name: str = DEFAULT_FIXTURE) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return data


def _days_before(text: str, days: int) -> str:
    """An ISO date or dateTime ``days`` earlier, same time of day."""
    day = date.fromisoformat(text[:10]) - timedelta(days=days)
    return day.isoformat() + text[10:]


def grow(bundle: dict[str, Any], size: int, *, seed: int = 6) -> dict[str, Any]:
    """A collection Bundle of exactly ``size`` resources (at least the fixture's own)."""
    rng = random.Random(seed)
    base = [copy.deepcopy(e["resource"]) for e in bundle["entry"]]
    patient = next(r for r in base if r["resourceType"] == "Patient")
    pid = patient["id"]
    labs = [
        r
        for r in base
        if r["resourceType"] == "Observation"
        and isinstance(r.get("valueQuantity"), dict)
        and r.get("effectiveDateTime")
    ]
    latest = max(r["effectiveDateTime"] for r in labs) if labs else "2026-10-26T07:45:00Z"
    extra = max(0, size - len(base))
    n_conditions = extra * 6 // 100
    n_medications = extra * 6 // 100
    n_vitals = extra * 20 // 100 if labs else extra - n_conditions - n_medications
    n_labs = extra - n_conditions - n_medications - n_vitals
    added: list[dict[str, Any]] = []

    # The lab panel, weekly before the fixture's results (the newest copy is 35 days before them, so
    # outside every measurement window of the trial: the fixture's own results stay the deciding ones).
    for i in range(n_labs):
        template = labs[i % len(labs)]
        week = 5 + i // len(labs)
        obs = copy.deepcopy(template)
        obs["id"] = f"{template['id']}-h{week}"
        obs["effectiveDateTime"] = _days_before(template["effectiveDateTime"], 7 * week)
        value = template["valueQuantity"]["value"]
        jittered = round(value * rng.uniform(0.85, 1.15), 2)
        obs["valueQuantity"]["value"] = int(jittered) if isinstance(value, int) else jittered
        obs.pop("meta", None)
        added.append(obs)
    for i in range(n_vitals):
        code, display, mean, unit = VITALS[i % len(VITALS)]
        week = 5 + i // len(VITALS)
        value = round(mean * rng.uniform(0.9, 1.1), 1)
        when = _days_before(latest, 7 * week)
        added.append(vital_sign(code, display, value, unit, when, rid=f"{pid}-vital-{i}", pid=pid))
    for i in range(n_conditions):
        system, code, display = PAST_CONDITIONS[i % len(PAST_CONDITIONS)]
        onset = _days_before(latest[:10], 60 + 23 * i)
        added.append(
            condition(
                code,
                display,
                system=system,
                clinical="resolved",
                onset=onset,
                abatement=_days_before(onset, -14),
                rid=f"{pid}-past-cond-{i}",
                pid=pid,
            )
        )
    for i in range(n_medications):
        code, name = PAST_MEDICATIONS[i % len(PAST_MEDICATIONS)]
        start = _days_before(latest[:10], 90 + 31 * i)
        added.append(
            med_statement(
                code,
                name,
                status="completed",
                start=start,
                end=_days_before(start, -30),
                dosage_text="as directed",
                route_text="oral",
                rid=f"{pid}-past-med-{i}",
                pid=pid,
            )
        )
    resources = base + added
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources[:size]]}


def lab_dense(bundle: dict[str, Any], size: int, *, seed: int = 13) -> dict[str, Any]:
    """A collection Bundle of ``size`` resources whose added resources are all lab results the trial reads:
    the 13 tests of :data:`LAB_DENSE_CODES` in turn, spread evenly over the two years before the fixture's
    results (so many fall inside the measurement windows), values jittered around the fixture's own. Unlike
    :func:`grow`, whose additions are mostly older than every window, every criterion about a lab reads
    dozens of results here. The fixture's own results stay the newest of each test, so its assessment holds."""
    rng = random.Random(seed)
    base = [copy.deepcopy(e["resource"]) for e in bundle["entry"]]
    pid = next(r for r in base if r["resourceType"] == "Patient")["id"]
    own = {
        r["code"]["coding"][0]["code"]: r
        for r in base
        if r["resourceType"] == "Observation" and isinstance(r.get("valueQuantity"), dict)
    }
    tests = [own[code] for code in LAB_DENSE_CODES]
    latest = max(r["effectiveDateTime"] for r in tests)
    extra = max(0, size - len(base))
    per_test = -(-extra // len(tests))  # results of each test, the newest one day before the fixture's
    added: list[dict[str, Any]] = []
    for i in range(extra):
        template, k = tests[i % len(tests)], i // len(tests)
        coding = template["code"]["coding"][0]
        value = template["valueQuantity"]["value"]
        jittered = round(value * rng.uniform(0.9, 1.1), 2)
        obs = lab(
            coding["code"],
            coding["display"],
            int(jittered) if isinstance(value, int) else jittered,
            template["valueQuantity"]["code"],
            _days_before(latest, 1 + k * (LAB_DENSE_DAYS - 1) // max(1, per_test - 1)),
        )
        obs["id"] = f"{pid}-lab-{i}"
        obs["subject"] = subject(pid)
        added.append(obs)
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in base + added]}


def shift(bundle: dict[str, Any], days: int) -> dict[str, Any]:
    """Every date (``"YYYY-MM-DD...``) of the bundle moved by ``days``."""
    if days == 0:
        return bundle
    raw = orjson.dumps(bundle)

    def move(m: re.Match[bytes]) -> bytes:
        day = date(int(m.group(1)), int(m.group(2)), int(m.group(3))) + timedelta(days=days)
        return b'"' + day.isoformat().encode()

    shifted: dict[str, Any] = orjson.loads(_DATE.sub(move, raw))
    return shifted


def patient(size: int, *, shift_days: int = 0, fixture: str = DEFAULT_FIXTURE) -> dict[str, Any]:
    return shift(grow(load_fixture(fixture), size), shift_days)


def lab_dense_patient(size: int = 1000, *, shift_days: int = 0, fixture: str = DEFAULT_FIXTURE) -> dict[str, Any]:
    return shift(lab_dense(load_fixture(fixture), size), shift_days)


def resources_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"]]


def by_type(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in resources_of(bundle):
        out.setdefault(r["resourceType"], []).append(r)
    return out
