"""One patient's resources → one row per trial, as `trial-cds screen` answers: from resources as mappings
(the interface other engines call) and from Bundle entries as JSON text (the spilled partitions) alike."""

from __future__ import annotations

from datetime import UTC, datetime

import fhir_builders as fb
import orjson
from prescreen_support import PATIENT_BUNDLES

from cds.engine import evaluate
from cds.portfolio import load_portfolio
from cds.prescreen.screening import screen_entries, screen_patient
from cds.prescreen.shared import SharedResources
from cds.record import PatientRecord

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
PORTFOLIO = load_portfolio()
TRIALS = list(PORTFOLIO.open_trials.values())


def test_a_row_carries_the_screen_line_and_what_it_counts() -> None:
    bundle = orjson.loads(PATIENT_BUNDLES[0].read_bytes())
    [row] = screen_patient([e["resource"] for e in bundle["entry"]], SharedResources(), TRIALS, PORTFOLIO.library, NOW)
    assessment = evaluate(TRIALS[0], PatientRecord.each_from_bundle(bundle)[0], NOW, PORTFOLIO.library)
    assert row.screen_json == orjson.dumps(assessment.screen_json()).decode()
    assert row.verdict == assessment.verdict.value
    assert row.criteria_total == len(assessment.criteria)
    assert row.criteria_met + row.criteria_ruling_out + row.criteria_unknown == row.criteria_total
    assert row.to_confirm == tuple(c.id for c in assessment.criteria if c.status.value == "unknown")


def test_mappings_and_json_entries_give_the_same_rows() -> None:
    for path in PATIENT_BUNDLES[:10]:
        resources = [e["resource"] for e in orjson.loads(path.read_bytes())["entry"]]
        entries = [orjson.dumps({"resource": r}) for r in resources]
        from_mappings = screen_patient(resources, SharedResources(), TRIALS, PORTFOLIO.library, NOW)
        from_entries = screen_entries(entries, [], SharedResources(), TRIALS, PORTFOLIO.library, NOW)
        assert from_mappings == from_entries, path.name


def test_a_shared_medication_named_by_reference_is_read_into_the_record() -> None:
    medication = {"resourceType": "Medication", "id": "med-1", "code": fb.codeable([(fb.RXNORM, "2555", "cisplatin")])}
    use = {
        "resourceType": "MedicationStatement",
        "id": "ms-1",
        "status": "active",
        "subject": fb.subject("p-1"),
        "medicationReference": {"reference": "Medication/med-1"},
        "effectiveDateTime": "2026-10-25",
    }
    resources = [fb.patient(pid="p-1"), use]
    shared = SharedResources.from_resources([medication])
    [with_it] = screen_patient(resources, shared, TRIALS, PORTFOLIO.library, NOW)
    [without] = screen_patient(resources, SharedResources(), TRIALS, PORTFOLIO.library, NOW)
    assert "cisplatin" in with_it.screen_json
    assert "cisplatin" not in without.screen_json


def test_resources_without_their_patient_give_no_row() -> None:
    obs = fb.vital_sign("8867-4", "Heart rate", 70, "/min", "2026-10-01", pid="p-1")
    assert screen_patient([obs], SharedResources(), TRIALS, PORTFOLIO.library, NOW) == []
