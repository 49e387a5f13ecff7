"""The population check: no patient is ruled out on an entry older than its rule's horizon. Run on the
engine's own assessments (which must pass) and on assessments forged as the engine once made them."""

import json
from pathlib import Path
from typing import Any

from engine_support import NOW, TRIAL_ID
from fhir_builders import SNOMED, bundle, condition, med_request, med_statement, patient
from population_checks import stale_exclusions

from cds.assessment import Assessment, Status
from cds.engine import evaluate
from cds.portfolio import default_trials
from cds.record import PatientRecord

IV = ("47625008", "Intravenous route")
TRIAL = default_trials()[TRIAL_ID]


def record_of(*resources: dict[str, Any], pat: dict[str, Any] | None = None) -> PatientRecord:
    return PatientRecord.from_bundle(bundle(pat or patient(), *resources))


def forged(assessment: Assessment, criterion_id: str, status: Status, evidence: list[str]) -> Assessment:
    """The assessment with one criterion decided as an engine that trusts statuses would decide it."""
    criteria = [
        c.model_copy(update={"status": status, "evidence": evidence}) if c.id == criterion_id else c
        for c in assessment.criteria
    ]
    return assessment.model_copy(update={"criteria": criteria})


def test_the_engine_rules_no_one_out_on_a_docetaxel_order_from_2000() -> None:
    record = record_of(med_request("docetaxel", code="72962", authored="2000-03-10", route=(SNOMED, *IV)))
    assert stale_exclusions(record, TRIAL, evaluate(TRIAL, record, NOW)) == []


def test_an_exclusion_decided_by_a_docetaxel_order_from_2000_is_found() -> None:
    order = med_request("docetaxel", code="72962", authored="2000-03-10", route=(SNOMED, *IV))
    record = record_of(order)
    trusting = forged(
        evaluate(TRIAL, record, NOW), "exc_recent_anticancer_therapy", Status.MET, [f"MedicationRequest/{order['id']}"]
    )
    found = stale_exclusions(record, TRIAL, trusting)
    assert [(f.criterion, f.resource, f.horizon) for f in found] == [
        ("exc_recent_anticancer_therapy", f"MedicationRequest/{order['id']}", "6 months")
    ]


def test_a_failed_inclusion_on_a_pregnancy_recorded_in_1959_is_found() -> None:
    pregnancy = condition("Z33.1", "Pregnant state, incidental", onset="1959-06-01")
    record = record_of(pregnancy, pat=patient(gender="female", birth_date="1960-02-01"))
    trusting = forged(
        evaluate(TRIAL, record, NOW), "inc_sex_not_pregnant", Status.NOT_MET, [f"Condition/{pregnancy['id']}"]
    )
    found = stale_exclusions(record, TRIAL, trusting)
    assert [(f.criterion, f.horizon) for f in found] == [("inc_sex_not_pregnant", "10 months")]


def test_a_current_order_is_not_stale() -> None:
    order = med_request("docetaxel", code="72962", authored="2026-10-22", route=(SNOMED, *IV))
    record = record_of(order)
    assessment = evaluate(TRIAL, record, NOW)
    assert next(c for c in assessment.criteria if c.id == "exc_recent_anticancer_therapy").status == "met"
    assert stale_exclusions(record, TRIAL, assessment) == []


def test_a_prior_checkpoint_inhibitor_years_ago_is_history_not_stale() -> None:
    old = med_statement("1547545", "pembrolizumab", status="completed", start="2015-01-05", end="2015-06-01")
    record = record_of(old)
    assessment = evaluate(TRIAL, record, NOW)
    assert next(c for c in assessment.criteria if c.id == "exc_prior_checkpoint_inhibitor").status == "met"
    assert stale_exclusions(record, TRIAL, assessment) == []


def test_a_lifelong_condition_may_rule_out_however_old() -> None:
    hbv = condition("B18.1", "Chronic viral hepatitis B without delta-agent", onset="2005-01-01")
    record = record_of(hbv)
    assessment = evaluate(TRIAL, record, NOW)
    assert next(c for c in assessment.criteria if c.id == "exc_hepatitis").status == "met"
    assert stale_exclusions(record, TRIAL, assessment) == []


def test_an_acute_condition_left_active_that_rules_out_is_found() -> None:
    ards = condition("J80", "Acute respiratory distress syndrome", onset="2005-02-11")
    record = record_of(ards)
    trusting = forged(evaluate(TRIAL, record, NOW), "exc_lung_disease", Status.MET, [f"Condition/{ards['id']}"])
    assert [f.criterion for f in stale_exclusions(record, TRIAL, trusting)] == ["exc_lung_disease"]


def test_no_fixture_patient_is_ruled_out_on_a_stale_entry() -> None:
    fixtures = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "patients").glob("*.json"))
    assert fixtures
    for path in fixtures:
        record = PatientRecord.from_bundle(json.loads(path.read_text(encoding="utf-8")))
        assert stale_exclusions(record, TRIAL, evaluate(TRIAL, record, NOW)) == [], path.name
