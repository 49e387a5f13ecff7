"""The dead are never candidates: verdict not eligible with the reason, no card, no order warning."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from api_support import NOW as DEMO_NOW
from api_support import make_client, patients
from engine_support import NOW
from fhir_builders import patient
from typer.testing import CliRunner

from cds.assessment import Assessment, Verdict
from cds.cards import cards_for
from cds.cli import app
from cds.demo import demo_request
from cds.engine import evaluate
from cds.orders import order_impacts
from cds.portfolio import default_trials
from cds.record import PatientRecord
from hooks import HOOKS

runner = CliRunner()
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def dead(**deceased: Any) -> dict[str, Any]:
    return {**patient(), **deceased}


def likely_eligible(**deceased: Any) -> Assessment:
    """npc-01, a likely eligible patient, with ``deceased`` added to the Patient resource."""
    resources = [{**r, **deceased} if r["resourceType"] == "Patient" else r for r in patients()["npc-01"].resources]
    return evaluate(default_trials()["npc-liver-mets-ldrt"], PatientRecord.from_resources(resources), DEMO_NOW)


def test_a_death_date_makes_a_likely_eligible_patient_not_eligible_with_the_date() -> None:
    assert likely_eligible().verdict is Verdict.LIKELY_ELIGIBLE
    a = likely_eligible(deceasedDateTime="2026-06-30T14:05:00Z")
    assert a.verdict is Verdict.NOT_ELIGIBLE
    assert a.verdict_reason == "deceased on 2026-06-30"


def test_deceased_true_without_a_date_says_recorded_as_deceased() -> None:
    a = likely_eligible(deceasedBoolean=True)
    assert a.verdict is Verdict.NOT_ELIGIBLE
    assert a.verdict_reason == "recorded as deceased"


def test_a_partial_death_date_is_given_as_written() -> None:
    assert likely_eligible(deceasedDateTime="2001").verdict_reason == "deceased on 2001"


def test_deceased_false_changes_nothing() -> None:
    a = likely_eligible(deceasedBoolean=False)
    assert a.verdict_reason is None
    assert a.verdict is Verdict.LIKELY_ELIGIBLE


def test_the_criteria_of_the_dead_are_still_reported_as_the_record_has_them() -> None:
    alive = likely_eligible()
    a = likely_eligible(deceasedDateTime="2026-06-30")
    assert [(c.id, c.status) for c in a.criteria] == [(c.id, c.status) for c in alive.criteria]


def test_screen_json_says_why_only_when_there_is_a_reason() -> None:
    a = likely_eligible(deceasedDateTime="2026-06-30")
    assert a.screen_json()["verdict_reason"] == "deceased on 2026-06-30"
    assert "verdict_reason" not in likely_eligible().screen_json()


def test_no_patient_view_card_for_the_dead_even_when_not_eligible_cards_are_shown() -> None:
    trial = default_trials()["npc-liver-mets-ldrt"]
    a = likely_eligible(deceasedDateTime="2026-06-30")
    alive_but_out = a.model_copy(update={"verdict_reason": None})
    shown = cards_for([(trial, a)], base_url="https://cds.example.org", patient_id="pt-1", show_not_eligible=True)
    assert shown == []
    assert cards_for(
        [(trial, alive_but_out)], base_url="https://cds.example.org", patient_id="pt-1", show_not_eligible=True
    )


def pembrolizumab_order() -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": "draft-pembro",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "1547545", "display": "pembrolizumab"}],
            "text": "Pembrolizumab",
        },
        "subject": {"reference": "Patient/npc-01"},
    }


def test_no_order_warning_for_the_dead() -> None:
    resources = list(patients()["npc-01"].resources)
    died = [{**r, "deceasedDateTime": "2026-10-20"} if r["resourceType"] == "Patient" else r for r in resources]
    trials = list(default_trials().values())
    orders = [pembrolizumab_order()]
    _, warned = order_impacts(trials, resources, orders, patient_id="npc-01", now=DEMO_NOW, evaluate=evaluate)
    _, none = order_impacts(trials, died, orders, patient_id="npc-01", now=DEMO_NOW, evaluate=evaluate)
    assert warned, "the living patient is warned about: the comparison means something"
    assert none == []


def test_the_service_returns_no_card_for_a_dead_patient(tmp_path: Path) -> None:
    client = make_client(tmp_path, show_not_eligible=True)
    service = client.app.state.cds.services["trial-eligibility"]  # type: ignore[attr-defined]
    body = demo_request(patients()["npc-01"], HOOKS["patient-view"], service.resource_types)
    body["hookInstance"] = str(uuid.uuid4())
    body["prefetch"]["patient"]["deceasedDateTime"] = "2026-10-20"
    response = client.post("/cds-services/trial-eligibility", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}


def test_screen_prints_the_verdict_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "dead.json"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": dead(deceasedDateTime="2026-06-30")}],
    }
    path.write_text(json.dumps(bundle))
    when = NOW.isoformat()
    text = runner.invoke(app, ["screen", str(path), "--trial", "npc-liver-mets-ldrt", "--now", when])
    assert text.exit_code == 0, text.output
    assert "NOT ELIGIBLE" in text.stdout
    assert "deceased on 30 Jun 2026" in text.stdout
    line = json.loads(
        runner.invoke(
            app, ["screen", str(path), "--trial", "npc-liver-mets-ldrt", "--now", when, "--format", "json"]
        ).stdout
    )
    assert (line["verdict"], line["verdict_reason"]) == ("not_eligible", "deceased on 2026-06-30")
