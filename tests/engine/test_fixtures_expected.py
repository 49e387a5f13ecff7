"""Every synthetic patient of fixtures/ against the assessment its expected file states.

The expected files are written by fixtures/build_fixtures.py from the rules of docs/criteria.md,
independently of the engine. A failure lists every criterion whose status differs (with the engine's
reason where it gives one) and the verdict.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cds.portfolio import load_trials

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
PATIENTS_DIR = FIXTURES / "patients"
EXPECTED_DIR = FIXTURES / "expected"
EXPECTED_FILES = sorted(EXPECTED_DIR.glob("*.json"))
TRIAL_ID = "npc-liver-mets-ldrt"
STATUSES = {"met", "not_met", "unknown"}
VERDICTS = {"likely_eligible", "needs_review", "not_eligible"}
JUDGEMENT = {
    "inc_measurable_lesion",
    "exc_major_vessel_invasion",
    "exc_substance_or_condition",
    "exc_investigator_judgement",
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def _reason(criterion: Any) -> str:
    for attr in ("reason", "explanation", "rationale", "summary"):
        text = getattr(criterion, attr, None)
        if text:
            return str(text)
    return ""


@pytest.fixture(scope="module")
def trial() -> Any:
    return load_trials()[TRIAL_ID]


def test_fixture_set_is_consistent() -> None:
    """Runs without the engine: each expected file is complete and matches a bundle."""
    assert len(EXPECTED_FILES) >= 30
    ids: set[str] | None = None
    for path in EXPECTED_FILES:
        exp = _load(path)
        assert (PATIENTS_DIR / path.name).is_file(), f"no bundle for {path.name}"
        assert set(exp["criteria"].values()) <= STATUSES, path.name
        assert exp["verdict"] in VERDICTS, path.name
        if ids is None:
            ids = set(exp["criteria"])
            assert len(ids) == 38
        assert set(exp["criteria"]) == ids, f"{path.name}: criterion ids differ"
        for j in JUDGEMENT:
            assert exp["criteria"][j] == "unknown", f"{path.name}: {j} should be unknown"
        bundle = _load(PATIENTS_DIR / path.name)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
        patients = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
        assert [f"Patient/{p['id']}" for p in patients] == [exp["patient"]], path.name


@pytest.mark.parametrize("expected_path", EXPECTED_FILES, ids=[p.stem for p in EXPECTED_FILES])
def test_bundle_is_valid_fhir(expected_path: Path) -> None:
    bundle_mod = pytest.importorskip("fhir.resources.R4B.bundle")
    bundle_mod.Bundle.model_validate(_load(PATIENTS_DIR / expected_path.name))


@pytest.mark.parametrize("expected_path", EXPECTED_FILES, ids=[p.stem for p in EXPECTED_FILES])
def test_fixture_assessment(expected_path: Path, trial: Any) -> None:
    from cds.engine import evaluate
    from cds.record import PatientRecord

    expected = _load(expected_path)
    bundle = _load(PATIENTS_DIR / expected_path.name)
    now = datetime.fromisoformat(expected["now"].replace("Z", "+00:00"))

    record = PatientRecord.from_bundle(bundle)
    assessment = evaluate(trial, record, now)

    actual = {c.id: _value(c.status) for c in assessment.criteria}
    reasons = {c.id: _reason(c) for c in assessment.criteria}
    want: dict[str, str] = expected["criteria"]

    lines: list[str] = []
    for cid, status in want.items():
        got = actual.get(cid, "<missing>")
        if got != status:
            why = f"  -- engine: {reasons[cid]}" if reasons.get(cid) else ""
            lines.append(f"  {cid}: expected {status}, got {got}{why}")
    for cid in sorted(set(actual) - set(want)):
        lines.append(f"  {cid}: not expected, got {actual[cid]}")
    verdict = _value(assessment.verdict)
    if verdict != expected["verdict"]:
        lines.append(f"  verdict: expected {expected['verdict']}, got {verdict}")

    if lines:
        header = f"{expected_path.stem} ({expected['patient']}): {len(lines)} difference(s)\n"
        pytest.fail(header + "\n".join(lines) + f"\n  fixture tests: {expected['notes']}", pytrace=False)
