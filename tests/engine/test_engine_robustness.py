"""The engine never crashes on what it is given: unreadable data costs a criterion, not the answer."""

from typing import Any

from engine_support import assess, assess_all
from fhir_builders import lab, patient

from cds.assessment import CriterionAssessment, Status, Verdict, overall_verdict


def test_malformed_resources_are_skipped_not_fatal() -> None:
    junk: list[Any] = [
        {
            "resourceType": "Observation",
            "id": "x1",
            "status": "final",
            "code": "751-8",
            "valueQuantity": "lots",
        },
        {
            "resourceType": "Observation",
            "id": "x2",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
            "effectiveDateTime": "yesterday",
            "valueQuantity": {"value": "2.0", "unit": 7},
        },
        {"resourceType": "Condition", "id": "x3", "code": {"coding": "C11.9"}, "onsetDateTime": 2020},
        {"resourceType": "MedicationStatement", "id": "x4", "medicationCodeableConcept": [], "dosage": {}},
        {"resourceType": "Procedure", "id": "x5", "performedPeriod": "2026"},
        {"resourceType": "Immunization", "vaccineCode": {"coding": [None, 3, {"code": None}]}},
        {"resourceType": "AllergyIntolerance", "reaction": [{"severity": 5}]},
        {"no": "resourceType"},
        {
            "resourceType": "Observation",
            "id": "x6",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
            "effectiveDateTime": "2026-10-28",
            "valueQuantity": {"value": float("nan"), "unit": "10*9/L"},
        },
    ]
    a = assess_all(junk)
    assert len(a.criteria) == 38
    assert next(c for c in a.criteria if c.id == "inc_anc").status == "unknown"


def test_a_resource_about_another_patient_never_counts() -> None:
    other = lab("751-8", "Neutrophils", 0.2, "10*3/uL", "2026-10-28")
    other["subject"] = {"reference": "Patient/someone-else"}
    mine = lab("751-8", "Neutrophils", 2.0, "10*3/uL", "2026-10-20")
    from engine_support import NOW

    from cds.engine import evaluate
    from cds.portfolio import default_trials
    from cds.record import PatientRecord

    record = PatientRecord.from_resources([patient(), other, mine], patient_id="pt-1")
    a = evaluate(default_trials()["npc-liver-mets-ldrt"], record, NOW)
    assert next(c for c in a.criteria if c.id == "inc_anc").status == "met"


def test_the_same_resource_under_two_keys_counts_once() -> None:
    obs = lab("751-8", "Neutrophils", 2.0, "10*3/uL", "2026-10-28")
    result = assess("inc_anc", [obs, dict(obs)])
    assert result.evidence == [f"Observation/{obs['id']}"]


def _c(cid: str, kind: str, status: Status, judgement: bool = False) -> CriterionAssessment:
    return CriterionAssessment(id=cid, kind=kind, text=cid, judgement=judgement, status=status, reason="r")  # type: ignore[arg-type]


def test_verdict_failed_inclusion_is_not_eligible() -> None:
    assert (
        overall_verdict([_c("a", "inclusion", Status.NOT_MET), _c("b", "exclusion", Status.NOT_MET)])
        is Verdict.NOT_ELIGIBLE
    )


def test_verdict_applying_exclusion_is_not_eligible() -> None:
    assert overall_verdict([_c("a", "inclusion", Status.MET), _c("b", "exclusion", Status.MET)]) is Verdict.NOT_ELIGIBLE


def test_verdict_unknown_judgement_criteria_do_not_block_likely_eligible() -> None:
    crit = [_c("a", "inclusion", Status.MET), _c("j", "exclusion", Status.UNKNOWN, judgement=True)]
    assert overall_verdict(crit) is Verdict.LIKELY_ELIGIBLE


def test_verdict_unknown_ordinary_criterion_needs_review() -> None:
    crit = [_c("a", "inclusion", Status.UNKNOWN), _c("b", "exclusion", Status.NOT_MET)]
    assert overall_verdict(crit) is Verdict.NEEDS_REVIEW


def test_empty_record_is_not_eligible_with_labs_unknown_and_history_absent() -> None:
    a = assess_all([])
    statuses = {c.id: c.status.value for c in a.criteria}
    assert a.verdict is Verdict.NOT_ELIGIBLE
    assert statuses["inc_histology"] == "not_met"
    assert statuses["inc_anc"] == "unknown"
    assert statuses["exc_hiv"] == "not_met"
    assert all(c.reason for c in a.criteria)


def test_a_patient_whose_id_is_not_a_string_is_read_as_one_without_an_id() -> None:
    # The compiled build checks types at run time: a non-string id must not reach a `str` parameter.
    from engine_support import NOW

    from cds.engine import evaluate
    from cds.portfolio import default_trials
    from cds.record import PatientRecord

    odd = patient()
    odd["id"] = []
    without = patient()
    del without["id"]
    anc = lab("751-8", "Neutrophils", 2.0, "10*3/uL", "2026-10-20")
    trial = default_trials()["npc-liver-mets-ldrt"]
    read = evaluate(trial, PatientRecord.from_resources([odd, anc]), NOW)
    expected = evaluate(trial, PatientRecord.from_resources([without, anc]), NOW)
    assert [c.status for c in read.criteria] == [c.status for c in expected.criteria]
    assert next(c for c in read.criteria if c.id == "inc_anc").status == "met"
