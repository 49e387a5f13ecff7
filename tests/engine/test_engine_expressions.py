"""The expressions any trial can use (issue 16): a result's presence; a diagnosis whose absence is left to
confirm; Cockcroft-Gault creatinine clearance; a drug counted only once started; a drug that does not
count when taken for an exempt reason (replacement steroids). Each on FHIR resources as a server sends them."""

from pathlib import Path
from typing import Any

import orjson
import pytest
from engine_support import NOW
from fhir_builders import ICD10, PID, RXNORM, SNOMED, condition, lab, med_statement, patient, vital_sign
from pydantic import ValidationError

from cds.assessment import CriterionAssessment
from cds.engine import evaluate
from cds.engine.rules.derived import cockcroft_gault
from cds.fhir.decoding import decode_resource
from cds.portfolio import load_trial_file
from cds.record import PatientRecord
from cds.rules.observations import ObservationRule

TRIAL = load_trial_file(Path(__file__).parent / "data" / "trials" / "expressions-trial.yaml")
NIVOLUMAB = ("1597876", "nivolumab")
HYDROCORTISONE = ("5492", "hydrocortisone")
ORAL = ("26643006", "Oral route")


def assess(
    criterion_id: str, resources: list[dict[str, Any]], who: dict[str, Any] | None = None
) -> CriterionAssessment:
    record = PatientRecord.from_resources([who or patient(), *resources])
    return next(c for c in evaluate(TRIAL, record, NOW).criteria if c.id == criterion_id)


def creatinine(mg_dl: float, date: str = "2026-10-25") -> dict[str, Any]:
    return lab("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", mg_dl, "mg/dL", date)


def weight(value: float, unit: str = "kg", date: str = "2026-10-25") -> dict[str, Any]:
    return vital_sign("29463-7", "Body weight", value, unit, date)


# --- presence: "has a result"
def test_a_result_within_the_window_is_met_whatever_its_value() -> None:
    result = assess("inc_creatinine_result", [creatinine(4.2)])
    assert result.status == "met"
    assert "creatinine: 4.2 mg/dL on 2026-10-25" in result.reason


def test_no_result_is_not_met_not_unknown() -> None:
    result = assess("inc_creatinine_result", [])
    assert result.status == "not_met"
    assert result.missing == []


def test_a_result_older_than_the_window_is_not_met() -> None:
    result = assess("inc_creatinine_result", [creatinine(1.0, "2026-08-01")])
    assert result.status == "not_met"
    assert "last one 2026-08-01" in result.reason


def test_a_preliminary_result_is_not_a_result() -> None:
    preliminary = creatinine(1.0)
    preliminary["status"] = "preliminary"
    assert assess("inc_creatinine_result", [preliminary]).status == "not_met"


def test_a_presence_rule_may_leave_absence_to_confirm() -> None:
    rule = ObservationRule(
        type="observation", label="creatinine", valuesets=["lab-creatinine"], presence=True, when_missing="unknown"
    )
    assert rule.when_missing == "unknown"
    defaulted = ObservationRule.model_validate(
        {"type": "observation", "label": "creatinine", "valuesets": ["lab-creatinine"], "presence": True}
    )
    assert defaulted.when_missing == "not_met"


def test_a_presence_rule_takes_no_values_to_compare() -> None:
    with pytest.raises(ValidationError, match="presence"):
        ObservationRule.model_validate(
            {
                "type": "observation",
                "label": "x",
                "valuesets": ["lab-creatinine"],
                "presence": True,
                "met_values": ["answers-positive"],
            }
        )


# --- a diagnosis whose absence is to confirm (when_missing)
def test_a_diagnosis_absent_from_the_record_is_unknown_when_the_rule_says_so() -> None:
    result = assess("exc_hiv", [])
    assert result.status == "unknown"
    assert result.missing == ["HIV infection"]
    assert "no HIV infection in the record: to confirm" in result.reason


def test_a_recorded_diagnosis_is_still_met() -> None:
    assert assess("exc_hiv", [condition("B20", "Human immunodeficiency virus [HIV] disease")]).status == "met"


def test_a_condition_rule_without_when_missing_keeps_absence_as_not_met() -> None:
    from cds.rules.conditions import ConditionRule

    rule = ConditionRule(type="condition", label="HIV infection", valuesets=["cond-hiv"])
    assert rule.when_missing == "not_met"


# --- Cockcroft-Gault creatinine clearance
def test_cockcroft_gault_formula() -> None:
    # (140 − 52) × 70 / (72 × 1.0) = 85.56; female × 0.85 = 72.72
    assert cockcroft_gault(1.0, 52, 70, "male") == pytest.approx(85.555, abs=0.01)
    assert cockcroft_gault(1.0, 52, 70, "female") == pytest.approx(72.72, abs=0.01)


def test_clearance_is_computed_from_creatinine_weight_age_and_sex() -> None:
    result = assess("inc_creatinine_clearance", [creatinine(1.0), weight(70)])  # male, 52
    assert result.status == "met"
    assert "Cockcroft-Gault (140 − 52) × 70 kg / (72 × creatinine 1 mg/dL), male" in result.reason
    assert result.facts[0].label == "Creatinine clearance (Cockcroft-Gault)"
    assert {f.label: f.value for f in result.facts[1:]} == {"Creatinine": "1 mg/dL", "Body weight": "70 kg"}


def test_clearance_below_60_is_not_met() -> None:
    # (140 − 52) × 70 / (72 × 1.6) = 53.5
    assert assess("inc_creatinine_clearance", [creatinine(1.6), weight(70)]).status == "not_met"


def test_the_female_factor_decides_a_borderline_clearance() -> None:
    resources = [creatinine(1.3), weight(70)]  # male 65.8; female × 0.85 = 55.9
    assert assess("inc_creatinine_clearance", resources).status == "met"
    female = assess("inc_creatinine_clearance", resources, who=patient(gender="female"))
    assert female.status == "not_met"
    assert "× 0.85" in female.reason


def test_creatinine_in_umol_per_l_and_weight_in_pounds_are_converted() -> None:
    umol = lab("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", 141.4, "umol/L", "2026-10-25")  # 1.6 mg/dL
    pounds = weight(200, "[lb_av]")  # 90.7 kg: (88 × 90.7) / (72 × 1.6) = 69.3
    assert assess("inc_creatinine_clearance", [umol, pounds]).status == "met"


def test_missing_weight_is_unknown_naming_it() -> None:
    result = assess("inc_creatinine_clearance", [creatinine(1.0)])
    assert result.status == "unknown"
    assert result.missing == ["Body weight (body weight)"]
    assert [f.label for f in result.facts] == ["Creatinine"]


def test_missing_creatinine_is_unknown_naming_it() -> None:
    result = assess("inc_creatinine_clearance", [weight(70)])
    assert result.status == "unknown"
    assert result.missing == ["Creatinine (serum creatinine)"]


def test_unknown_sex_leaves_the_clearance_to_confirm() -> None:
    result = assess("inc_creatinine_clearance", [creatinine(1.0), weight(70)], who=patient(gender="unknown"))
    assert result.status == "unknown"
    assert result.missing == ["sex"]


def test_a_reported_clearance_is_used_before_the_formula() -> None:
    reported = lab(
        "2164-2", "Creatinine renal clearance in 24 hour Urine and Serum or Plasma", 45, "mL/min", "2026-10-20"
    )
    result = assess("inc_creatinine_clearance", [reported, creatinine(1.0), weight(70)])
    assert result.status == "not_met"  # Cockcroft-Gault would give 85.6
    assert "Cockcroft-Gault" not in result.reason


# --- a drug counted only once started (started_by_evaluation)
def test_a_course_dated_to_start_after_the_evaluation_date_is_not_exposure() -> None:
    planned = med_statement(*NIVOLUMAB, status="active", start="2026-11-15")
    result = assess("exc_checkpoint_inhibitor", [planned])
    assert result.status == "not_met"
    assert "starts 2026-11-15, after 2026-11-01" in result.reason


def test_a_course_started_before_the_evaluation_date_is_exposure() -> None:
    taken = med_statement(*NIVOLUMAB, status="completed", start="2025-01-10", end="2025-06-01")
    assert assess("exc_checkpoint_inhibitor", [taken]).status == "met"


def test_an_undated_use_still_counts_by_its_status() -> None:
    assert assess("exc_checkpoint_inhibitor", [med_statement(*NIVOLUMAB, start=None)]).status == "met"


# --- a drug exempt for some uses (except_for)
def hydrocortisone(**reason: Any) -> dict[str, Any]:
    ms = med_statement(*HYDROCORTISONE, start="2026-10-25", route=ORAL, dose_mg=20, per_day=1)
    ms.update(reason)
    return ms


ADDISON = {"coding": [{"system": SNOMED, "code": "363732003", "display": "Addison's disease (disorder)"}]}


def test_hydrocortisone_for_addisons_disease_by_reason_code_is_not_immunosuppression() -> None:
    result = assess("exc_steroids", [hydrocortisone(reasonCode=[ADDISON])])
    assert result.status == "not_met"
    assert "for Addison's disease (disorder), not systemic corticosteroid" in result.reason


def test_hydrocortisone_for_a_referenced_adrenal_insufficiency_is_not_immunosuppression() -> None:
    adrenal = condition("E27.40", "Unspecified adrenocortical insufficiency", system=ICD10, rid="adrenal-1")
    ms = hydrocortisone(reasonReference=[{"reference": "Condition/adrenal-1"}])
    assert assess("exc_steroids", [adrenal, ms]).status == "not_met"


def test_an_r5_reason_codeable_reference_is_read() -> None:
    assert assess("exc_steroids", [hydrocortisone(reason=[{"concept": ADDISON}])]).status == "not_met"


def test_a_reason_written_only_in_words_is_read() -> None:
    assert assess("exc_steroids", [hydrocortisone(reasonCode=[{"text": "Addison disease"}])]).status == "not_met"


def test_a_coded_reason_is_not_read_by_its_words() -> None:
    # Coded in a standard terminology as something else: the code decides, not a phrase in its text.
    other = {
        "coding": [{"system": SNOMED, "code": "195967001", "display": "Asthma"}],
        "text": "asthma; hypopituitarism",
    }
    assert assess("exc_steroids", [hydrocortisone(reasonCode=[other])]).status == "met"


def test_hydrocortisone_for_another_reason_is_exposure() -> None:
    asthma = {
        "coding": [{"system": ICD10, "code": "J45.901", "display": "Unspecified asthma with (acute) exacerbation"}]
    }
    assert assess("exc_steroids", [hydrocortisone(reasonCode=[asthma])]).status == "met"


def test_hydrocortisone_without_a_reason_is_exposure() -> None:
    assert assess("exc_steroids", [hydrocortisone()]).status == "met"


def test_an_adrenal_insufficiency_the_use_does_not_name_exempts_nothing() -> None:
    adrenal = condition("E27.1", "Primary adrenocortical insufficiency", system=ICD10)
    assert assess("exc_steroids", [adrenal, hydrocortisone()]).status == "met"


def test_the_reasons_survive_lean_decoding() -> None:
    adrenal = condition("E27.40", "Unspecified adrenocortical insufficiency", system=ICD10, rid="adrenal-2")
    ms = hydrocortisone(reasonReference=[{"reference": "Condition/adrenal-2"}], reasonCode=[ADDISON])
    lean = [decode_resource(orjson.dumps(r)) for r in (patient(), adrenal, ms)]
    use = PatientRecord.from_resources([r for r in lean if r is not None]).medications[0]
    assert use.reason_refs == ("Condition/adrenal-2",)
    assert [c.label() for c in use.reasons] == ["Addison's disease (disorder)"]


def test_the_trial_page_says_each_expression_in_words() -> None:
    from cds.api.pages import describe_trial

    logic = {c["id"]: c["logic"]["text"] for c in describe_trial(TRIAL)["criteria"]}
    assert "any final result within 28 days; none recorded: counts as not met" in logic["inc_creatinine_result"]
    assert "Cockcroft-Gault" in logic["inc_creatinine_clearance"]
    assert "no result:" not in logic["inc_creatinine_clearance"]  # when_missing is not read: always to confirm
    assert logic["exc_hiv"].endswith("none recorded: left to confirm")
    assert "a start dated after the evaluation date is not exposure" in logic["exc_checkpoint_inhibitor"]
    assert "not when taken for Adrenal insufficiency" in logic["exc_steroids"]


def test_an_order_for_replacement_hydrocortisone_keeps_its_reason() -> None:
    from cds.orders import hypothetical_resource

    order = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "5492", "display": "hydrocortisone"}]},
        "reasonCode": [ADDISON],
    }
    resource = hypothetical_resource(order, patient_id=PID, now=NOW, number=1)
    assert resource is not None
    assert assess("exc_steroids", [resource]).status == "not_met"
    del order["reasonCode"]
    plain = hypothetical_resource(order, patient_id=PID, now=NOW, number=1)
    assert plain is not None
    assert assess("exc_steroids", [plain]).status == "met"
