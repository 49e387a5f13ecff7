"""Whose resource is this: the Patient id that groups a resource with its patient's record."""

from __future__ import annotations

import fhir_builders as fb

from cds.prescreen.keys import patient_key


def test_a_patient_is_its_own_key() -> None:
    assert patient_key(fb.patient(pid="p-7")) == "p-7"


def test_a_resource_belongs_to_the_patient_its_subject_names() -> None:
    assert patient_key(fb.vital_sign("8867-4", "Heart rate", 70, "/min", "2026-10-01", pid="p-7")) == "p-7"


def test_an_allergy_belongs_to_the_patient_it_names_as_patient() -> None:
    allergy = {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p-7"}}
    assert patient_key(allergy) == "p-7"


def test_a_coverage_belongs_to_its_beneficiary() -> None:
    coverage = {"resourceType": "Coverage", "id": "c1", "beneficiary": {"reference": "Patient/p-7"}}
    assert patient_key(coverage) == "p-7"


def test_an_absolute_or_versioned_reference_names_the_same_patient() -> None:
    for reference in ("https://ehr.example.org/fhir/Patient/p-7", "Patient/p-7/_history/3"):
        obs = fb.vital_sign("8867-4", "Heart rate", 70, "/min", "2026-10-01", pid="p-7")
        obs["subject"] = {"reference": reference}
        assert patient_key(obs) == "p-7"


def test_a_urn_is_resolved_by_the_bundle_s_full_urls_and_none_without_them() -> None:
    obs = fb.vital_sign("8867-4", "Heart rate", 70, "/min", "2026-10-01")
    obs["subject"] = {"reference": "urn:uuid:1b2c"}
    assert patient_key(obs, {"urn:uuid:1b2c": "p-7"}) == "p-7"
    assert patient_key(obs) is None


def test_resources_outside_any_patient_compartment_have_no_key() -> None:
    for resource in (
        {"resourceType": "Practitioner", "id": "dr-1"},
        {"resourceType": "Organization", "id": "org-1"},
        {"resourceType": "Medication", "id": "med-1"},
    ):
        assert patient_key(resource) is None


def test_a_resource_about_a_group_belongs_to_no_patient() -> None:
    obs = fb.vital_sign("8867-4", "Heart rate", 70, "/min", "2026-10-01")
    obs["subject"] = {"reference": "Group/g-1"}
    assert patient_key(obs) is None
