"""cds.fhir.load: any Bundle → one transaction of PUT Type/id (idempotent), references resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds.fhir.load import FhirLoadError, patient_ids, prefix_ids, to_transaction

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
