"""order-select and order-sign: warn before an order closes a trial to a candidate (issue 8).

Real R4 draft orders (RxNorm- and CVX-coded MedicationRequests, SNOMED-coded ServiceRequests) against the
fixture patients, evaluated at 2026-11-01T12:00Z through the app's clock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from api_support import NOW, is_operation_outcome, make_client, make_settings, seed_trial_only, spec_client
from fastapi.testclient import TestClient
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds.api import create_app
from cds.assessment import Status
from cds.cards import ASSESSMENT_EXTENSION, find_empty
from cds.demo import ANCHOR_DATE, DemoPatient, demo_request, load_demo_patients
from cds.engine import evaluate
from cds.order_cards import ORDER_EXTENSION, summary
from cds.orders import (
    HYPOTHETICAL_ID_PREFIX,
    Duration,
    duration_for,
    hypothetical_resource,
    order_impacts,
)
from cds.portfolio import load_trials
from cds.record import PatientRecord
from cds.trials import Trial, Window
from hooks import HOOKS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patients"
SELECT = "/cds-services/trial-eligibility-order-select"
SIGN = "/cds-services/trial-eligibility-order-sign"
TRIAL = "npc-liver-mets-ldrt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ORAL = {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]}
IV = {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]}


# ---------------------------------------------------------------------------------------------------
# Draft orders as an EHR sends them.


def dosage(dose_mg: float, *, per_day: int | None = None, every_weeks: int | None = None, route: Any = ORAL) -> Any:
    repeat = {"frequency": per_day, "period": 1, "periodUnit": "d"} if per_day else None
    if every_weeks:
        repeat = {"frequency": 1, "period": every_weeks, "periodUnit": "wk"}
    return {
        "sequence": 1,
        "text": f"{dose_mg:g} mg",
        "timing": {"repeat": repeat},
        "route": route,
        "doseAndRate": [
            {
                "type": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/dose-rate-type", "code": "ordered"}]
                },
                "doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"},
            }
        ],
    }


def medication_request(
    rid: str, code: str, display: str, text: str, dosages: list[Any], *, patient: str = "npc-01", system: str = RXNORM
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": system, "code": code, "display": display}], "text": text},
        "subject": {"reference": f"Patient/{patient}"},
        "encounter": {"reference": "Encounter/enc-1"},
        "requester": {"reference": "Practitioner/dr-1"},
        "dosageInstruction": dosages,
        "dispenseRequest": {"validityPeriod": {"start": "2026-11-08"}, "numberOfRepeatsAllowed": 0},
    }


def pembrolizumab(rid: str = "draft-pembro", patient: str = "npc-01") -> dict[str, Any]:
    return medication_request(
        rid, "1547545", "pembrolizumab", "Pembrolizumab", [dosage(200, every_weeks=3, route=IV)], patient=patient
    )


def acetaminophen(rid: str = "draft-apap") -> dict[str, Any]:
    return medication_request(
        rid, "161", "acetaminophen", "Acetaminophen 500 mg oral tablet", [dosage(1000, per_day=4)]
    )


def prednisone_5mg_daily(rid: str = "draft-pred") -> dict[str, Any]:
    return medication_request(rid, "8640", "prednisone", "Prednisone 5 mg oral tablet", [dosage(5, per_day=1)])


def dexamethasone_4mg_bid(rid: str = "draft-dex") -> dict[str, Any]:
    return medication_request(rid, "3264", "dexamethasone", "Dexamethasone 4 mg oral tablet", [dosage(4, per_day=2)])


def vaccine(rid: str, cvx: str, display: str) -> dict[str, Any]:
    order = medication_request(rid, cvx, display, display, [], system=CVX)
    order["dosageInstruction"] = [{"text": "0.5 mL once", "route": {"text": "subcutaneous"}}]
    return order


def service_request(rid: str, code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": "387713003", "display": "Surgical procedure"}]}],
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "subject": {"reference": "Patient/npc-01"},
        "occurrenceDateTime": "2026-11-10",
    }


def bundle(*orders: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": o} for o in orders],
    }


def fixture_patients() -> dict[str, DemoPatient]:
    return load_demo_patients(ANCHOR_DATE, FIXTURES)  # dates as written: evaluation on 2026-11-01


def order_request(
    client: TestClient,
    hook: str,
    orders: list[dict[str, Any]],
    *,
    patient: str = "npc-01",
    selections: list[str] | None = None,
) -> dict[str, Any]:
    service = client.app.state.cds.services[f"trial-eligibility-{hook}"]  # type: ignore[attr-defined]
    body = demo_request(fixture_patients()[patient], HOOKS[hook], service.resource_types, user_id="Practitioner/dr-1")
    body["context"]["draftOrders"] = bundle(*orders)
    if hook == "order-select":
        body["context"]["selections"] = (
            selections if selections is not None else [f"{o['resourceType']}/{o['id']}" for o in orders]
        )
    return body


def cards(client: TestClient, hook: str, orders: list[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    response = client.post(SIGN if hook == "order-sign" else SELECT, json=order_request(client, hook, orders, **kwargs))
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["cards"]
    found: list[dict[str, Any]] = body["cards"]
    for card in found:
        assert_warning_card(card)
    return found


def assert_warning_card(card: dict[str, Any]) -> None:
    """The CDS Hooks 2.0 card rules, and what an order warning must carry."""
    assert find_empty(card) == []
    uuid.UUID(card["uuid"])
    assert 0 < len(card["summary"]) < 140
    assert card["indicator"] == "warning"
    assert card["source"]["label"] and card["detail"]
    assert card["links"][0] == {
        "label": "Trial criteria",
        "url": f"http://testserver/trials/{TRIAL}",
        "type": "absolute",
        "autolaunchable": False,
    }
    assert {r["code"] for r in card["overrideReasons"]} >= {"order-needed-now", "other"}
    for reason in card["overrideReasons"]:
        assert reason["system"] and reason["code"] and reason["display"]
    (suggestion,) = card["suggestions"]
    assert card["selectionBehavior"] == "at-most-one"
    assert suggestion["label"] == "Refer to the NPC-LDRT team before ordering"
    uuid.UUID(suggestion["uuid"])
    (action,) = suggestion["actions"]
    assert action["type"] == "create" and action["description"]
    ServiceRequest.model_validate(action["resource"])
    assert action["resource"]["subject"]["reference"].startswith("Patient/")


def criteria_of(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in card["extension"][ORDER_EXTENSION]["criteria"]}


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    return make_client(tmp_path)


# ---------------------------------------------------------------------------------------------------
# Discovery.


def test_discovery_offers_both_order_hooks_with_the_same_prefetch(client: TestClient) -> None:
    services = {s["id"]: s for s in client.get("/cds-services").json()["services"]}
    screen = services["trial-eligibility"]
    for hook in ("order-select", "order-sign"):
        service = services[f"trial-eligibility-{hook}"]
        assert service["hook"] == hook
        assert service["title"] and "NPC-LDRT" in service["description"]
        assert service["prefetch"] == screen["prefetch"]
        assert service["usageRequirements"] == screen["usageRequirements"]
        assert find_empty(service) == []


# ---------------------------------------------------------------------------------------------------
# The "done when".


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_pembrolizumab_for_a_likely_eligible_patient_warns(client: TestClient, hook: str) -> None:
    patient = fixture_patients()["npc-01"]
    record = PatientRecord.from_resources(patient.resources, patient_id="npc-01")
    assert evaluate(load_trials()[TRIAL], record, NOW).verdict.value == "likely_eligible"

    (card,) = cards(client, hook, [pembrolizumab()])
    assert card["summary"] == (
        "Pembrolizumab would exclude this patient from NPC-LDRT (prior checkpoint inhibitor: permanently; +1 more)"
    )
    changes = criteria_of(card)
    assert changes["exc_prior_checkpoint_inhibitor"]["excludedFor"] == {"permanent": True}
    assert changes["exc_recent_anticancer_therapy"]["excludedFor"] == {
        "window": {"days": 28},
        "countsFrom": "last-dose",
    }
    assert all(c["statusNow"] == "not_met" and c["statusWithOrder"] == "met" for c in changes.values())
    extension = card["extension"][ORDER_EXTENSION]
    assert extension["order"] == "MedicationRequest/draft-pembro"
    assert extension["verdict"] == "likely_eligible"
    assert card["extension"][ASSESSMENT_EXTENSION]["verdict"] == "likely_eligible"  # the record as it is
    detail = card["detail"]
    assert "Any previous immune checkpoint inhibitor (PD-1, PD-L1, CTLA-4)" in detail
    assert "permanently" in detail and "until 28 days after the last dose" in detail
    assert "**likely eligible**" in detail
    assert "Low-dose radiotherapy plus chemoimmunotherapy" in detail
    referral = card["suggestions"][0]["actions"][0]["resource"]
    assert referral["subject"] == {"reference": "Patient/npc-01"}
    assert referral["requester"] == {"reference": "Practitioner/dr-1"}


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_paracetamol_changes_nothing(client: TestClient, hook: str) -> None:
    assert cards(client, hook, [acetaminophen()]) == []


def test_warning_cards_are_recorded_for_feedback(client: TestClient) -> None:
    (card,) = cards(client, "order-sign", [pembrolizumab()])
    reason = card["overrideReasons"][0]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": reason},
                "outcomeTimestamp": "2026-11-01T12:05:00Z",
            }
        ]
    }
    assert client.post(f"{SIGN}/feedback", json=feedback).status_code == 200
    store = client.app.state.cds.store  # type: ignore[attr-defined]
    assert store.feedback_count() == 1


# ---------------------------------------------------------------------------------------------------
# Dose thresholds, vaccines, procedures.


def test_prednisone_5mg_daily_is_below_the_threshold(client: TestClient) -> None:
    assert cards(client, "order-sign", [prednisone_5mg_daily()]) == []


def test_dexamethasone_4mg_twice_daily_is_above_the_threshold(client: TestClient) -> None:
    (card,) = cards(client, "order-sign", [dexamethasone_4mg_bid()])
    assert list(criteria_of(card)) == ["exc_immunosuppression"]
    assert card["summary"] == (
        "Dexamethasone 4 mg oral tablet would exclude this patient from NPC-LDRT "
        "(immunosuppression: until 2 weeks after last dose)"
    )
    assert "53.3 mg/day prednisone-equivalent" in card["detail"]  # 8 mg/day dexamethasone × 5 / 0.75
    assert "until 2 weeks after the last dose" in card["detail"]


def test_steroid_orders_in_one_session_each_get_their_own_answer(client: TestClient) -> None:
    found = cards(client, "order-sign", [prednisone_5mg_daily(), acetaminophen(), dexamethasone_4mg_bid()])
    assert [c["extension"][ORDER_EXTENSION]["order"] for c in found] == ["MedicationRequest/draft-dex"]


def test_live_vaccine_order_warns_for_four_weeks(client: TestClient) -> None:
    (card,) = cards(client, "order-select", [vaccine("draft-mmr", "03", "measles, mumps and rubella virus vaccine")])
    assert list(criteria_of(card)) == ["exc_live_vaccine"]
    assert criteria_of(card)["exc_live_vaccine"]["excludedFor"] == {
        "window": {"days": 28},
        "countsFrom": "order-date",
    }
    assert "(live vaccine: for 28 days)" in card["summary"]
    assert "Live vaccine within 4 weeks" in card["detail"]


def test_inactivated_vaccine_order_changes_nothing(client: TestClient) -> None:
    flu = vaccine("draft-flu", "150", "influenza, injectable, quadrivalent, preservative free")
    assert cards(client, "order-select", [flu]) == []


def test_surgery_order_warns_for_28_days(client: TestClient) -> None:
    (card,) = cards(client, "order-sign", [service_request("draft-surgery", "71273005", "Partial hepatectomy")])
    assert list(criteria_of(card)) == ["exc_major_surgery"]
    assert card["summary"].endswith("(major surgery: for 28 days)")


def test_non_surgical_service_request_changes_nothing(client: TestClient) -> None:
    ct = service_request("draft-ct", "169070004", "CT of thorax")
    ct["category"] = [{"coding": [{"system": SNOMED, "code": "363679005", "display": "Imaging"}]}]
    assert cards(client, "order-sign", [ct]) == []


# ---------------------------------------------------------------------------------------------------
# Whose verdict counts.


def test_no_card_for_a_patient_already_not_eligible(tmp_path: Path) -> None:
    # The seed trial alone: npc-12 may be a candidate for another bundled trial, which would warn.
    client = make_client(tmp_path, trials_dir=seed_trial_only(tmp_path))
    patient = fixture_patients()["npc-12"]
    record = PatientRecord.from_resources(patient.resources, patient_id="npc-12")
    assert evaluate(load_trials()[TRIAL], record, NOW).verdict.value == "not_eligible"
    assert cards(client, "order-sign", [pembrolizumab(patient="npc-12")], patient="npc-12") == []


def test_a_patient_who_needs_review_is_warned_too(client: TestClient) -> None:
    patient = fixture_patients()["npc-03"]
    record = PatientRecord.from_resources(patient.resources, patient_id="npc-03")
    assert evaluate(load_trials()[TRIAL], record, NOW).verdict.value == "needs_review"
    (card,) = cards(client, "order-sign", [pembrolizumab(patient="npc-03")], patient="npc-03")
    assert card["extension"][ORDER_EXTENSION]["verdict"] == "needs_review"
    assert "**needs review**" in card["detail"]


# ---------------------------------------------------------------------------------------------------
# order-select looks at the selected orders only.


def test_order_select_ignores_orders_not_selected(client: TestClient) -> None:
    orders = [pembrolizumab(), acetaminophen()]
    assert cards(client, "order-select", orders, selections=["MedicationRequest/draft-apap"]) == []
    (card,) = cards(client, "order-select", orders, selections=["MedicationRequest/draft-pembro"])
    assert card["extension"][ORDER_EXTENSION]["order"] == "MedicationRequest/draft-pembro"


def test_order_sign_looks_at_every_order(client: TestClient) -> None:
    found = cards(client, "order-sign", [acetaminophen(), pembrolizumab(), dexamethasone_4mg_bid()])
    assert [c["extension"][ORDER_EXTENSION]["order"] for c in found] == [
        "MedicationRequest/draft-pembro",
        "MedicationRequest/draft-dex",
    ]


def test_medication_reference_to_a_medication_in_draft_orders(client: TestClient) -> None:
    order = pembrolizumab()
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "Medication/med-pembro"}
    medication = {
        "resourceType": "Medication",
        "id": "med-pembro",
        "code": {"coding": [{"system": RXNORM, "code": "1547545", "display": "pembrolizumab"}]},
    }
    body = order_request(client, "order-sign", [order])
    body["context"]["draftOrders"]["entry"].append({"resource": medication})
    response = client.post(SIGN, json=body)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert card["summary"].startswith("Pembrolizumab would exclude")


def test_do_not_perform_orders_are_not_evaluated(client: TestClient) -> None:
    order = service_request("draft-no-surgery", "71273005", "Partial hepatectomy")
    order["doNotPerform"] = True
    assert cards(client, "order-sign", [order]) == []


# ---------------------------------------------------------------------------------------------------
# Requests that do not follow the hook definitions: 400 OperationOutcome.


def bad(client: TestClient, path: str, body: dict[str, Any], expression: str | None = None) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert is_operation_outcome(outcome)
    if expression is not None:
        assert any(expression in i.get("expression", []) for i in outcome["issue"]), outcome


def test_draft_orders_must_be_a_bundle(client: TestClient) -> None:
    body = order_request(client, "order-sign", [pembrolizumab()])
    body["context"]["draftOrders"] = [pembrolizumab()]
    bad(client, SIGN, body, "context.draftOrders")
    body["context"]["draftOrders"] = {"resourceType": "Parameters"}
    bad(client, SIGN, body, "context.draftOrders.resourceType")
    body["context"].pop("draftOrders")
    bad(client, SIGN, body, "context.draftOrders")


def test_bundle_entries_must_hold_resources(client: TestClient) -> None:
    body = order_request(client, "order-sign", [pembrolizumab()])
    body["context"]["draftOrders"]["entry"].append({"fullUrl": "urn:uuid:0b6e1a2c-7a55-4c4a-9f0e-64b0b0f0c001"})
    bad(client, SIGN, body, "context.draftOrders.entry[1].resource")
    body["context"]["draftOrders"]["entry"][1] = {"resource": {"id": "no-type"}}
    bad(client, SIGN, body, "context.draftOrders.entry[1].resource")
    body["context"]["draftOrders"]["entry"] = "not a list"
    bad(client, SIGN, body, "context.draftOrders.entry")


def test_selections_are_required_and_must_name_draft_orders(client: TestClient) -> None:
    body = order_request(client, "order-select", [pembrolizumab()])
    body["context"]["selections"] = ["MedicationRequest/not-in-the-bundle"]
    bad(client, SELECT, body)
    body["context"]["selections"] = ["draft-pembro"]  # not ResourceType/id
    bad(client, SELECT, body, "context.selections[0]")
    body["context"]["selections"] = []
    bad(client, SELECT, body, "context.selections")
    body["context"].pop("selections")
    bad(client, SELECT, body, "context.selections")


def test_orders_for_another_patient_are_refused(client: TestClient) -> None:
    body = order_request(client, "order-sign", [pembrolizumab(patient="someone-else")])
    bad(client, SIGN, body)


def test_order_sign_user_must_be_a_practitioner(client: TestClient) -> None:
    body = order_request(client, "order-sign", [pembrolizumab()])
    body["context"]["userId"] = "Patient/npc-01"
    bad(client, SIGN, body, "context.userId")


def test_the_hook_must_match_the_service(client: TestClient) -> None:
    body = order_request(client, "order-sign", [pembrolizumab()])
    bad(client, SELECT, body, "hook")


def test_missing_data_without_a_fhir_server_is_412(client: TestClient) -> None:
    body = order_request(client, "order-sign", [pembrolizumab()])
    body.pop("prefetch")
    response = client.post(SIGN, json=body)
    assert response.status_code == 412 and is_operation_outcome(response.json())


def test_an_empty_draft_orders_bundle_gives_no_cards(client: TestClient) -> None:
    assert cards(client, "order-sign", []) == []


# ---------------------------------------------------------------------------------------------------
# The pure part: hypothetical resources and durations.


def test_a_drug_order_becomes_an_active_request_from_now() -> None:
    resource = hypothetical_resource(dexamethasone_4mg_bid(), patient_id="npc-01", now=NOW, number=1)
    assert resource is not None
    assert resource["resourceType"] == "MedicationRequest"
    assert resource["id"] == f"{HYPOTHETICAL_ID_PREFIX}1"
    assert resource["status"] == "active" and resource["authoredOn"] == NOW.isoformat()
    assert resource["subject"] == {"reference": "Patient/npc-01"}
    assert resource["dosageInstruction"] == dexamethasone_4mg_bid()["dosageInstruction"]
    assert "dispenseRequest" not in resource  # a future validity period must not postpone the exposure


def test_a_cvx_coded_order_becomes_an_immunization() -> None:
    order = vaccine("draft-mmr", "03", "measles, mumps and rubella virus vaccine")
    resource = hypothetical_resource(order, patient_id="npc-01", now=NOW, number=2)
    assert resource == {
        "resourceType": "Immunization",
        "id": f"{HYPOTHETICAL_ID_PREFIX}2",
        "status": "completed",
        "vaccineCode": order["medicationCodeableConcept"],
        "patient": {"reference": "Patient/npc-01"},
        "occurrenceDateTime": NOW.isoformat(),
    }


def test_a_service_request_becomes_a_procedure() -> None:
    order = service_request("draft-surgery", "71273005", "Partial hepatectomy")
    resource = hypothetical_resource(order, patient_id="npc-01", now=NOW, number=3)
    assert resource is not None
    assert resource["resourceType"] == "Procedure" and resource["status"] == "completed"
    assert resource["code"] == order["code"] and resource["category"] == order["category"][0]
    assert resource["performedDateTime"] == NOW.isoformat()


@pytest.mark.parametrize(
    "order",
    [
        {"resourceType": "NutritionOrder", "id": "n1", "status": "draft", "intent": "order"},
        {"resourceType": "MedicationRequest", "id": "m1", "status": "draft", "intent": "order"},
        {**acetaminophen(), "status": "entered-in-error"},
    ],
)
def test_orders_that_cannot_be_read_give_nothing(order: dict[str, Any]) -> None:
    assert hypothetical_resource(order, patient_id="npc-01", now=NOW, number=1) is None


@pytest.mark.parametrize(
    ("criterion", "resource_type", "expected"),
    [
        ("exc_prior_checkpoint_inhibitor", "MedicationRequest", "permanently"),
        ("exc_recent_anticancer_therapy", "MedicationRequest", "until 28 days after the last dose"),
        ("exc_immunosuppression", "MedicationRequest", "until 2 weeks after the last dose"),
        ("exc_live_vaccine", "Immunization", "for 28 days"),
        ("exc_major_surgery", "Procedure", "for 28 days"),
        ("exc_transplant", "Procedure", "permanently"),
    ],
)
def test_duration_comes_from_the_criterion_windows(criterion: str, resource_type: str, expected: str) -> None:
    trial = load_trials()[TRIAL]
    assert duration_for(trial.criterion(criterion), resource_type).text() == expected


def test_duration_reads_months_and_orders_by_length() -> None:
    assert Duration(Window(months=6)).text() == "for 6 months"
    assert Duration(Window(months=1)).days > Duration(Window(days=28)).days
    assert Duration(None).days > Duration(Window(months=120)).days


# ---------------------------------------------------------------------------------------------------
# The rule is data: a new trial gets order warnings without new code.

NEW_TRIAL: dict[str, Any] = {
    "id": "abx-washout-demo",
    "title": "A made-up trial with an antibiotic washout",
    "short_name": "ABX-WASHOUT",
    "description": "Test trial: adults without systemic antibiotics for a week.",
    "source": "tests/cards/test_order_hooks.py",
    "criteria": [
        {"id": "inc_adult", "kind": "inclusion", "text": "Aged 18 or over", "rule": {"type": "age", "min": 18}},
        {
            "id": "exc_recent_antibiotic",
            "kind": "exclusion",
            "text": "Systemic antibiotic within 7 days",
            "rule": {
                "type": "medication",
                "label": "systemic anti-infective",
                "valuesets": ["med-anti-infectives-systemic"],
                "window": {"days": 7},
                "systemic_only": True,
            },
        },
    ],
}


def test_a_new_trial_gets_order_warnings_from_its_data(tmp_path: Path) -> None:
    trial = Trial.model_validate(NEW_TRIAL)
    app = create_app(make_settings(tmp_path), trials={trial.id: trial}, clock=lambda: NOW)
    client = spec_client(app)
    amoxicillin = medication_request(
        "draft-amox", "723", "amoxicillin", "Amoxicillin 500 mg oral capsule", [dosage(500, per_day=3)]
    )
    body = order_request(client, "order-sign", [amoxicillin, acetaminophen()])
    response = client.post(SIGN, json=body)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert card["summary"] == (
        "Amoxicillin 500 mg oral capsule would exclude this patient from ABX-WASHOUT "
        "(recent antibiotic: until 7 days after last dose)"
    )
    assert card["links"][0]["url"] == "http://testserver/trials/abx-washout-demo"


def test_order_impacts_is_pure_and_diffs_each_order(tmp_path: Path) -> None:
    trial = load_trials()[TRIAL]
    patient = fixture_patients()["npc-01"]
    baseline, impacts = order_impacts(
        [trial],
        list(patient.resources),
        [acetaminophen(), pembrolizumab()],
        patient_id="npc-01",
        now=NOW,
        evaluate=evaluate,
    )
    ((t, before),) = baseline
    assert t is trial and before.verdict.value == "likely_eligible"
    (impact,) = impacts
    assert impact.order_ref == "MedicationRequest/draft-pembro"
    assert impact.after.verdict.value == "not_eligible"
    assert [c.criterion.id for c in impact.changes] == [
        "exc_prior_checkpoint_inhibitor",
        "exc_recent_anticancer_therapy",
    ]
    assert all(c.before is Status.NOT_MET for c in impact.changes)
    assert any(
        ref.startswith(f"MedicationRequest/{HYPOTHETICAL_ID_PREFIX}") for ref in impact.changes[0].criterion.evidence
    )


def test_summary_stays_under_140_characters_with_a_long_order_name() -> None:
    trial = load_trials()[TRIAL]
    patient = fixture_patients()["npc-01"]
    order = pembrolizumab()
    order["medicationCodeableConcept"]["text"] = "Pembrolizumab " + "very long product description " * 10
    _, (impact,) = order_impacts(
        [trial],
        list(patient.resources),
        [order],
        patient_id="npc-01",
        now=datetime(2026, 11, 1, tzinfo=UTC),
        evaluate=evaluate,
    )
    text = summary(impact)
    assert len(text) < 140 and text.endswith("(prior checkpoint inhibitor: permanently; +1 more)")
