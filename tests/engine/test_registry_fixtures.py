"""The bundled registry trials against their fixtures: ``fixtures/registry/<trial-id>/``.

Each trial folder holds ``patients/<name>.json`` (a FHIR R4 collection Bundle with one Patient) and
``expected/<name>.json`` (``patient``, ``now``, ``verdict``, ``criteria`` — every criterion id of the trial
with ``met``, ``not_met`` or ``unknown`` — and ``notes``), written by ``fixtures/build_<trial_id>.py`` from
the registry text (``docs/trials/``), never from the engine. Every criterion is shown met, not met and
unknown by some fixture, except judgement criteria, which are always unknown.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cds.engine import evaluate
from cds.portfolio import load_trials
from cds.record import PatientRecord
from cds.trials import Trial

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "fixtures" / "registry"
TRIAL_DIRS = sorted(p for p in REGISTRY.glob("*") if p.is_dir()) if REGISTRY.is_dir() else []
CASES = [(d.name, path) for d in TRIAL_DIRS for path in sorted((d / "expected").glob("*.json"))]
STATUSES = {"met", "not_met", "unknown"}
VERDICTS = {"likely_eligible", "needs_review", "not_eligible"}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _trial(trial_id: str) -> Trial:
    return load_trials()[trial_id]


@pytest.mark.parametrize("trial_dir", TRIAL_DIRS, ids=[d.name for d in TRIAL_DIRS])
def test_registry_trial_is_bundled(trial_dir: Path) -> None:
    assert trial_dir.name in load_trials(), f"{trial_dir.name} has fixtures but no trial file"


@pytest.mark.parametrize("trial_dir", TRIAL_DIRS, ids=[d.name for d in TRIAL_DIRS])
def test_every_criterion_is_shown_met_not_met_and_unknown(trial_dir: Path) -> None:
    trial = _trial(trial_dir.name)
    seen: dict[str, set[str]] = {c.id: set() for c in trial.criteria}
    for path in sorted((trial_dir / "expected").glob("*.json")):
        for cid, status in _load(path)["criteria"].items():
            seen.setdefault(cid, set()).add(status)
    missing = []
    for c in trial.criteria:
        want = {"unknown"} if c.judgement else STATUSES
        if seen[c.id] != want:
            missing.append(f"{c.id}: fixtures show {sorted(seen[c.id])}, want {sorted(want)}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize(("trial_id", "expected_path"), CASES, ids=[f"{t}/{p.stem}" for t, p in CASES])
def test_fixture_is_consistent(trial_id: str, expected_path: Path) -> None:
    trial = _trial(trial_id)
    expected = _load(expected_path)
    assert set(expected["criteria"]) == {c.id for c in trial.criteria}, "criterion ids differ from the trial's"
    assert set(expected["criteria"].values()) <= STATUSES
    assert expected["verdict"] in VERDICTS
    bundle = _load(expected_path.parent.parent / "patients" / expected_path.name)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    patients = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert [f"Patient/{p['id']}" for p in patients] == [expected["patient"]]


@pytest.mark.parametrize(("trial_id", "expected_path"), CASES, ids=[f"{t}/{p.stem}" for t, p in CASES])
def test_fixture_assessment(trial_id: str, expected_path: Path) -> None:
    expected = _load(expected_path)
    bundle = _load(expected_path.parent.parent / "patients" / expected_path.name)
    now = datetime.fromisoformat(expected["now"].replace("Z", "+00:00"))
    assessment = evaluate(_trial(trial_id), PatientRecord.from_bundle(bundle), now)

    actual = {c.id: str(getattr(c.status, "value", c.status)) for c in assessment.criteria}
    reasons = {c.id: c.reason for c in assessment.criteria}
    lines = [
        f"  {cid}: expected {status}, got {actual.get(cid, '<missing>')} -- engine: {reasons.get(cid, '')}"
        for cid, status in expected["criteria"].items()
        if actual.get(cid) != status
    ]
    verdict = str(getattr(assessment.verdict, "value", assessment.verdict))
    if verdict != expected["verdict"]:
        lines.append(f"  verdict: expected {expected['verdict']}, got {verdict}")
    if lines:
        pytest.fail(
            f"{trial_id}/{expected_path.stem}:\n" + "\n".join(lines) + f"\n  notes: {expected['notes']}", pytrace=False
        )
