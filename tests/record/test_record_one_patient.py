"""One record, one patient: only the context patient's resources count, and what was left out is said.
A Bundle without a Patient, or a prefetch of several, is an input error, not a verdict."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from api_support import make_client, patients, seed_trial_only
from engine_support import NOW, TRIAL_ID, assess_all
from fhir_builders import condition, lab, patient
from typer.testing import CliRunner

from cds.assessment import Status
from cds.cli import app
from cds.demo import demo_request
from cds.engine import evaluate
from cds.fhir.decoding import decode_resource
from cds.portfolio import default_trials
from cds.record import NoPatient, PatientRecord, SeveralPatients
from hooks import HOOKS

runner = CliRunner()
SEED_TRIAL = "npc-liver-mets-ldrt"  # several trials are bundled: screen names the one
NPC = ("C11.9", "Malignant neoplasm of nasopharynx, unspecified")


def about(resource: dict[str, Any], reference: str, field: str = "subject") -> dict[str, Any]:
    return {**resource, field: {"reference": reference}}


def synthea_bundle(*people: tuple[dict[str, Any], list[dict[str, Any]]]) -> dict[str, Any]:
    """A transaction Bundle as Synthea writes it: every entry under a urn:uuid fullUrl, references by it."""
    entries: list[dict[str, Any]] = []
    for person, resources in people:
        url = f"urn:uuid:{uuid.uuid4()}"
        entries.append({"fullUrl": url, "resource": person})
        entries.extend({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": about(r, url)} for r in resources)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def write(tmp_path: Path, bundle: dict[str, Any], name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return path


def test_each_patient_of_a_synthea_bundle_gets_only_their_own_resources() -> None:
    ann = patient("female", "1970-01-01", pid="ann")
    bob = patient("male", "1960-01-01", pid="bob")
    bundle = synthea_bundle(
        (ann, [condition(*NPC)]),
        (bob, [condition("E11.9", "Type 2 diabetes"), lab("751-8", "ANC", 3, "10*9/L", "2026-10-20")]),
    )
    records = PatientRecord.each_from_bundle(bundle)
    assert [r.patient_ref for r in records] == ["Patient/ann", "Patient/bob"]
    assert [c.code.codings[0].code for c in records[0].conditions] == ["C11.9"]
    assert [c.code.codings[0].code for c in records[1].conditions] == ["E11.9"]
    assert (records[0].about_other_patients, records[1].about_other_patients) == (2, 1)


def test_a_record_says_how_many_resources_about_another_patient_it_left_out() -> None:
    a = assess_all([condition(*NPC), about(condition(*NPC), "Patient/someone-else")])
    assert a.notes == ["1 resource about another patient left out: the data held more than this patient's record"]


def test_absolute_and_versioned_references_to_the_patient_count() -> None:
    record = PatientRecord.from_resources(
        [
            patient(),
            about(condition(*NPC), "https://fhir.example.org/r4/Patient/pt-1"),
            about(condition("E11.9", "Type 2 diabetes"), "Patient/pt-1/_history/3"),
            about(condition("I10", "Hypertension"), "https://fhir.example.org/r4/Patient/pt-2"),
        ]
    )
    assert sorted(c.code.codings[0].code for c in record.conditions) == ["C11.9", "E11.9"]
    assert record.about_other_patients == 1


def test_resources_without_a_subject_stay() -> None:
    medication = {
        "resourceType": "Medication",
        "id": "med-1",
        "code": {
            "coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "2555", "display": "cisplatin"}
            ]
        },
    }
    statement = {
        "resourceType": "MedicationStatement",
        "id": "ms-1",
        "status": "active",
        "medicationReference": {"reference": "Medication/med-1"},
        "effectiveDateTime": "2026-10-20",
    }
    bundle = synthea_bundle((patient(), [statement]))
    bundle["entry"].append({"fullUrl": "urn:uuid:med", "resource": medication})
    (record,) = PatientRecord.each_from_bundle(bundle)
    assert [m.medication.codings[0].code for m in record.medications] == ["2555"]
    assert record.about_other_patients == 0


def test_a_bundle_without_a_patient_is_an_input_error() -> None:
    with pytest.raises(NoPatient, match="no Patient resource in the Bundle"):
        PatientRecord.each_from_bundle(
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": condition(*NPC)}]}
        )


def test_several_patients_without_a_patient_named_are_not_merged() -> None:
    resources = [patient(pid="ann"), patient(pid="bob"), condition(*NPC), about(condition(*NPC), "urn:uuid:x")]
    record = PatientRecord.from_resources(resources)
    assert record.patient is None
    assert record.conditions == []
    assert record.about_other_patients == 2


def test_a_bundle_of_several_patients_one_without_an_id_is_an_input_error() -> None:
    nameless = {k: v for k, v in patient().items() if k != "id"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient()}, {"resource": nameless}],
    }
    with pytest.raises(SeveralPatients):
        PatientRecord.each_from_bundle(bundle)


def test_screen_prints_one_json_line_per_patient_of_a_bundle(tmp_path: Path) -> None:
    bundle = synthea_bundle((patient(pid="ann"), [condition(*NPC)]), (patient(pid="bob"), []))
    result = runner.invoke(
        app,
        ["screen", str(write(tmp_path, bundle)), "--trial", SEED_TRIAL, "--now", NOW.isoformat(), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["patient"] for line in lines] == ["Patient/ann", "Patient/bob"]
    assert "1 resource about another patient left out" in result.stderr


def test_screen_text_has_one_block_per_patient(tmp_path: Path) -> None:
    bundle = synthea_bundle((patient(pid="ann"), []), (patient(pid="bob"), []))
    result = runner.invoke(
        app, ["screen", str(write(tmp_path, bundle)), "--trial", SEED_TRIAL, "--now", NOW.isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert "Patient/ann (bundle.json) —" in result.stdout
    assert "Patient/bob (bundle.json) —" in result.stdout


def test_screen_of_a_bundle_without_a_patient_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": condition(*NPC)}]}
    result = runner.invoke(
        app, ["screen", str(write(tmp_path, bundle)), "--trial", SEED_TRIAL, "--now", NOW.isoformat()]
    )
    assert result.exit_code == 1
    assert "no Patient resource in the Bundle" in result.stderr
    assert result.stdout == ""


def test_a_birth_date_after_the_evaluation_date_makes_age_unknown() -> None:
    a = assess_all([], with_patient=patient(birth_date="2027-03-01"))
    age = next(c for c in a.criteria if c.id == "inc_age")
    assert age.status is Status.UNKNOWN
    assert age.reason == "the recorded date of birth is after the evaluation date (2026-11-01)"
    assert "-" not in age.reason.split("(")[0]  # no negative age


# ---------------------------------------------------------------------------------------------------
# The service


def request_body(client: Any) -> dict[str, Any]:
    service = client.app.state.cds.services["trial-eligibility"]
    body = demo_request(patients()["npc-01"], HOOKS["patient-view"], service.resource_types)
    body["hookInstance"] = str(uuid.uuid4())
    return body


def test_a_prefetch_with_several_patients_is_answered_400(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    body = request_body(client)
    other = patient(pid="someone-else")
    body["prefetch"]["condition"]["entry"].append({"resource": other})
    response = client.post("/cds-services/trial-eligibility", json=body)
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "2 different Patient resources" in outcome["issue"][0]["diagnostics"]


def test_a_prefetched_patient_other_than_the_context_patient_is_answered_400(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    body = request_body(client)
    body["prefetch"]["patient"] = patient(pid="someone-else")
    response = client.post("/cds-services/trial-eligibility", json=body)
    assert response.status_code == 400, response.text
    assert "not the patient in context" in response.json()["issue"][0]["diagnostics"]


def test_no_patient_to_be_had_is_answered_412(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    body = request_body(client)
    body["prefetch"]["patient"] = None
    response = client.post("/cds-services/trial-eligibility", json=body)
    assert response.status_code == 412, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_the_card_notes_resources_about_another_patient(tmp_path: Path) -> None:
    client = make_client(tmp_path, show_not_eligible=True, trials_dir=seed_trial_only(tmp_path))
    body = request_body(client)
    body["prefetch"]["condition"]["entry"].append({"resource": about(condition(*NPC), "Patient/someone-else")})
    response = client.post("/cds-services/trial-eligibility", json=body)
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert "**Note:** 1 resource about another patient left out" in card["detail"]
    assert card["extension"]["org.trial-cds.assessment"]["notes"]


# ---------------------------------------------------------------------------------------------------
# Content of an earlier FHIR version: a warning, not an error (see docs/criteria.md)


def medication_order() -> dict[str, Any]:
    return {
        "resourceType": "MedicationOrder",  # DSTU2; R4 has MedicationRequest
        "id": "mo-1",
        "status": "active",
        "patient": {"reference": "Patient/pt-1"},
        "medicationCodeableConcept": {"text": "cisplatin"},
    }


def test_dstu2_resources_are_named_in_a_note() -> None:
    a = assess_all(
        [medication_order(), {**medication_order(), "id": "mo-2"}, {"resourceType": "ProcedureRequest", "id": "pr-1"}]
    )
    assert a.notes == [
        "content of an earlier FHIR version (STU3/DSTU2) not read (MedicationOrder × 2, ProcedureRequest): "
        "criteria about what it holds may be decided without it"
    ]


def test_a_stu3_profile_on_the_patient_is_named_in_a_note() -> None:
    stu3 = {**patient(), "meta": {"profile": ["http://hl7.org/fhir/STU3/StructureDefinition/Patient"]}}
    assert any("earlier FHIR version" in n for n in assess_all([], with_patient=stu3).notes)
    r4 = {**patient(), "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]}}
    assert assess_all([], with_patient=r4).notes == []


def test_screen_warns_on_stderr_about_earlier_fhir_content(tmp_path: Path) -> None:
    bundle = synthea_bundle((patient(), [medication_order()]))
    result = runner.invoke(
        app,
        ["screen", str(write(tmp_path, bundle)), "--trial", SEED_TRIAL, "--now", NOW.isoformat(), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "MedicationOrder" in result.stderr
    assert json.loads(result.stdout)["notes"]


def test_the_engine_sees_the_same_record_through_lean_decoding(tmp_path: Path) -> None:
    """The CLI decodes lean (fullUrl kept on each entry): Synthea references resolve as with plain JSON."""
    bundle = synthea_bundle((patient(pid="ann"), [condition(*NPC)]), (patient(pid="bob"), [condition(*NPC)]))
    lean = decode_resource(json.dumps(bundle).encode())
    assert lean is not None
    plain = [evaluate(default_trials()[TRIAL_ID], r, NOW).screen_json() for r in PatientRecord.each_from_bundle(bundle)]
    leaned = [evaluate(default_trials()[TRIAL_ID], r, NOW).screen_json() for r in PatientRecord.each_from_bundle(lean)]
    assert plain == leaned
    assert all(
        line["notes"] == ["1 resource about another patient left out: the data held more than this patient's record"]
        for line in plain
    )


def test_a_resource_stating_fhir_version_3_is_named_in_a_note() -> None:
    capability = {"resourceType": "CapabilityStatement", "id": "cs", "status": "active", "fhirVersion": "3.0.2"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient()}, {"resource": capability}],
    }
    for data in (bundle, decode_resource(json.dumps(bundle).encode())):
        assert data is not None
        (record,) = PatientRecord.each_from_bundle(data)
        assert record.earlier_fhir == ["CapabilityStatement/cs"]
