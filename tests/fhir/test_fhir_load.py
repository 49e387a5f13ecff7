"""cds.fhir.load: any Bundle → one transaction of PUT Type/id (idempotent), references resolved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fhir_builders import patient, vital_sign
from typer.testing import CliRunner

from cds.cli import app
from cds.fhir.load import FhirLoadError, load_files, owner, patient_ids, prefix_ids, to_transaction

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "patients"


def test_collection_bundle_with_urn_uuid_full_urls() -> None:
    bundle = json.loads((FIXTURES / "03-female-no-pregnancy-test.json").read_text())
    tx = to_transaction(bundle)
    assert tx["type"] == "transaction"
    assert len(tx["entry"]) == len(bundle["entry"])
    for entry in tx["entry"]:
        r = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
        assert "fullUrl" not in entry
    text = json.dumps(tx)
    assert "urn:uuid:" not in text
    obs = next(e["resource"] for e in tx["entry"] if e["resource"]["id"] == "npc-03-obs-1")
    assert obs["subject"] == {"reference": "Patient/npc-03"}
    assert obs["focus"] == [{"reference": "Condition/npc-03-cond-1"}]
    # the input is not changed
    assert "urn:uuid:" in json.dumps(bundle)


def test_absolute_full_urls_and_same_output_twice() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "https://fhir.example.org/r4/Patient/p1",
                "resource": {"resourceType": "Patient", "id": "p1"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:0b1c",
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": "https://fhir.example.org/r4/Patient/p1"},
                    "asserter": {"reference": "Practitioner/elsewhere"},
                },
            },
            {"request": {"method": "DELETE", "url": "Observation/x"}},
        ],
    }
    tx = to_transaction(bundle)
    assert [e["request"]["method"] for e in tx["entry"]] == ["PUT", "PUT"]
    condition = tx["entry"][1]["resource"]
    assert condition["subject"] == {"reference": "Patient/p1"}
    assert condition["asserter"] == {"reference": "Practitioner/elsewhere"}
    assert condition["id"].startswith("h")  # an id from its content: a re-run writes the same resource
    assert to_transaction(bundle) == tx


def test_unresolved_urn_uuid_reference_is_an_error() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Condition", "id": "c", "subject": {"reference": "urn:uuid:nope"}}}],
    }
    with pytest.raises(FhirLoadError, match="matches no entry"):
        to_transaction(bundle)


def test_invalid_id_and_not_a_bundle() -> None:
    with pytest.raises(FhirLoadError):
        to_transaction({"resourceType": "Patient"})
    bad = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "a b"}}]}
    with pytest.raises(FhirLoadError, match="valid FHIR id"):
        to_transaction(bad)


def test_prefix_ids_renames_resources_and_references() -> None:
    for name in ("01-base-male-eligible.json", "03-female-no-pregnancy-test.json"):
        bundle = json.loads((FIXTURES / name).read_text())
        prefixed = prefix_ids(bundle, "t1-")
        assert all(e["resource"]["id"].startswith("t1-") for e in prefixed["entry"])
        tx = to_transaction(prefixed)
        pid = patient_ids(prefixed)[0]
        assert pid.startswith("t1-npc-")
        for entry in tx["entry"]:
            subject = entry["resource"].get("subject") or entry["resource"].get("patient")
            if subject:
                assert subject["reference"] == f"Patient/{pid}"
    assert prefix_ids(bundle, "") == bundle


# ---------------------------------------------------------------------------------------------------
# trial-cds load: another patient's resources are not overwritten unless --replace

BASE = "https://fhir.example.org/r4"


def heart_rate(rid: str, pid: str) -> dict[str, Any]:
    return vital_sign("8867-4", "Heart rate", 72, "/min", "2026-10-01", rid=rid, pid=pid)


def bundle_file(tmp_path: Path, name: str, *resources: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]})
    )
    return path


def answered_transaction(request: httpx.Request) -> httpx.Response:
    sent = json.loads(request.content)
    return httpx.Response(
        200,
        json={
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "201 Created"}} for _ in sent["entry"]],
        },
    )


def test_owner_is_the_patient_a_resource_is_about() -> None:
    assert owner(patient(pid="p-a")) == "p-a"
    assert owner(heart_rate("obs-1", "p-a")) == "p-a"
    assert owner({"resourceType": "AllergyIntolerance", "patient": {"reference": f"{BASE}/Patient/p-b"}}) == "p-b"
    assert owner({"resourceType": "Practitioner", "id": "dr-1"}) is None


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_load_refuses_a_file_that_would_overwrite_another_patients_resource(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    respx_mock.get(f"{BASE}/Observation/obs-1").respond(200, json=heart_rate("obs-1", "p-a"))
    transaction = respx_mock.post(BASE).mock(side_effect=answered_transaction)
    path = bundle_file(tmp_path, "b.json", patient(pid="p-b"), heart_rate("obs-1", "p-b"))
    with pytest.raises(FhirLoadError) as refused:
        load_files(BASE, [path])
    message = str(refused.value)
    assert "Observation/obs-1 (Patient/p-a on the server, Patient/p-b here)" in message
    assert "--id-prefix" in message and "--replace" in message
    assert not transaction.called


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_load_again_of_the_same_patient_and_of_new_ids_goes_ahead(respx_mock: respx.MockRouter, tmp_path: Path) -> None:
    respx_mock.get(f"{BASE}/Observation/obs-1").respond(200, json=heart_rate("obs-1", "p-a"))
    respx_mock.get(f"{BASE}/Observation/obs-2").respond(404, json={"resourceType": "OperationOutcome", "issue": []})
    respx_mock.get(f"{BASE}/Observation/obs-3").respond(410)
    transaction = respx_mock.post(BASE).mock(side_effect=answered_transaction)
    path = bundle_file(
        tmp_path,
        "a.json",
        patient(pid="p-a"),
        heart_rate("obs-1", "p-a"),
        heart_rate("obs-2", "p-a"),
        heart_rate("obs-3", "p-a"),
    )
    (result,) = load_files(BASE, [path])
    assert transaction.call_count == 1 and result.created == 4


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_load_with_replace_overwrites_without_reading(respx_mock: respx.MockRouter, tmp_path: Path) -> None:
    read = respx_mock.get(f"{BASE}/Observation/obs-1").respond(200, json=heart_rate("obs-1", "p-a"))
    transaction = respx_mock.post(BASE).mock(side_effect=answered_transaction)
    path = bundle_file(tmp_path, "b.json", patient(pid="p-b"), heart_rate("obs-1", "p-b"))
    (result,) = load_files(BASE, [path], replace=True)
    assert transaction.call_count == 1 and result.patient_ids == ["p-b"]
    assert not read.called


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_load_with_an_id_prefix_checks_and_writes_the_prefixed_ids(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    respx_mock.get(f"{BASE}/Observation/obs-1").respond(200, json=heart_rate("obs-1", "p-a"))
    prefixed = respx_mock.get(f"{BASE}/Observation/syn-obs-1").respond(404)
    transaction = respx_mock.post(BASE).mock(side_effect=answered_transaction)
    path = bundle_file(tmp_path, "b.json", patient(pid="p-b"), heart_rate("obs-1", "p-b"))
    (result,) = load_files(BASE, [path], id_prefix="syn-")
    assert prefixed.called and result.patient_ids == ["syn-p-b"]
    sent = json.loads(transaction.calls.last.request.content)
    observation = next(e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "Observation")
    assert observation["id"] == "syn-obs-1" and observation["subject"] == {"reference": "Patient/syn-p-b"}


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_load_that_cannot_read_a_resource_stops_and_says_why(respx_mock: respx.MockRouter, tmp_path: Path) -> None:
    respx_mock.get(f"{BASE}/Observation/obs-1").respond(403)
    transaction = respx_mock.post(BASE).mock(side_effect=answered_transaction)
    path = bundle_file(tmp_path, "b.json", patient(pid="p-b"), heart_rate("obs-1", "p-b"))
    with pytest.raises(FhirLoadError, match=r"cannot read Observation/obs-1 .*HTTP 403"):
        load_files(BASE, [path])
    assert not transaction.called


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_the_load_command_refuses_with_exit_1_and_replaces_when_told(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    respx_mock.get(f"{BASE}/Observation/obs-1").respond(200, json=heart_rate("obs-1", "p-a"))
    respx_mock.post(BASE).mock(side_effect=answered_transaction)
    path = bundle_file(tmp_path, "b.json", patient(pid="p-b"), heart_rate("obs-1", "p-b"))
    refused = CliRunner().invoke(app, ["load", str(path), "--fhir", BASE])
    assert refused.exit_code == 1
    assert "would overwrite another patient's" in refused.output
    replaced = CliRunner().invoke(app, ["load", str(path), "--fhir", BASE, "--replace"])
    assert replaced.exit_code == 0, replaced.output
    assert "b.json: 2 resources (2 created" in replaced.output
