"""Clinical rules read as clinicians read them: calcium corrected only for low albumin; a drug's class by its
dose and schedule (weekly low-dose methotrexate); recurrence written in a note; onset[x] in every form;
a test inside a panel; a result recorded without its value."""

from pathlib import Path
from typing import Any

import orjson
from engine_support import NOW, TRIAL_ID, assess
from fhir_builders import LOINC, bundle, coded_obs, condition, lab, med_statement, patient, procedure

from cds.engine import evaluate
from cds.fhir.decoding import decode_resource
from cds.portfolio import default_trials, load_trial_file
from cds.record import PatientRecord

ORAL = ("26643006", "Oral route")
IV = ("47625008", "Intravenous route")
TRIALS = Path(__file__).parent / "data" / "trials"


def electrolytes(calcium_mg_dl: float, albumin_g_l: float) -> list[dict[str, Any]]:
    return [
        lab("2823-3", "Potassium", 4.1, "mmol/L", "2026-10-28", low=3.5, high=5.1),
        lab("2951-2", "Sodium", 140, "mmol/L", "2026-10-28", low=136, high=145),
        lab("17861-6", "Calcium", calcium_mg_dl, "mg/dL", "2026-10-28", low=8.6, high=10.3),
        lab("1751-7", "Albumin", albumin_g_l, "g/L", "2026-10-28", low=35, high=50),
    ]


# --- corrected calcium
def test_calcium_is_not_corrected_when_albumin_is_normal() -> None:
    # Corrected, 8.8 + 0.8 × (4 − 4.6) = 8.32 would be below range: the measured 8.8 stands.
    result = assess("exc_electrolytes", electrolytes(8.8, 46))
    assert result.status == "not_met"
    assert "not corrected: albumin 46 g/L" in result.reason


def test_calcium_is_not_corrected_at_albumin_40_exactly() -> None:
    assert assess("exc_electrolytes", electrolytes(8.7, 40)).status == "not_met"


def test_calcium_is_corrected_when_albumin_is_below_40() -> None:
    # 8.2 + 0.8 × (4 − 3.0) = 9.0: within range once corrected.
    result = assess("exc_electrolytes", electrolytes(8.2, 30))
    assert result.status == "not_met"
    assert "corrected for albumin 30 g/L" in result.reason


# --- dose-aware drug classes: weekly low-dose methotrexate
def methotrexate(dose_mg: float | None, *, per: str = "wk", route: tuple[str, str] = ORAL, **kw: Any) -> dict:
    ms = med_statement("6851", "methotrexate", start="2026-10-01", route=route, dose_mg=dose_mg, **kw)
    if dose_mg is not None:
        ms["dosage"][0]["timing"] = {"repeat": {"frequency": 1, "period": 1, "periodUnit": per}}
    return ms


def test_methotrexate_15_mg_once_weekly_is_immunosuppression_not_anticancer_therapy() -> None:
    ms = methotrexate(15)
    result = assess("exc_recent_anticancer_therapy", [ms])
    assert result.status == "not_met"
    assert "15 mg once weekly: methotrexate ≤ 25 mg once weekly is immunosuppression" in result.reason
    assert assess("exc_immunosuppression", [ms]).status == "met"


def test_methotrexate_tablets_weekly_by_timing_code_count_the_product_strength() -> None:
    ms = med_statement(None, "methotrexate 2.5 MG Oral Tablet", start="2026-10-01", route=ORAL)
    ms["dosage"] = [
        {
            "timing": {"code": {"coding": [{"code": "WK"}]}},
            "doseAndRate": [{"doseQuantity": {"value": 6, "unit": "tablet"}}],
        }
    ]
    result = assess("exc_recent_anticancer_therapy", [ms])
    assert result.status == "not_met"
    assert "15 mg once weekly" in result.reason


def test_methotrexate_above_25_mg_a_week_is_anticancer_therapy() -> None:
    assert assess("exc_recent_anticancer_therapy", [methotrexate(40, route=IV)]).status == "met"


def test_methotrexate_15_mg_daily_is_anticancer_therapy() -> None:
    assert assess("exc_recent_anticancer_therapy", [methotrexate(15, per="d")]).status == "met"


def test_methotrexate_without_dose_or_schedule_is_to_confirm() -> None:
    result = assess("exc_recent_anticancer_therapy", [methotrexate(None)])
    assert result.status == "unknown"
    assert "dose and schedule not recorded" in result.reason


# --- recurrence written in Condition.note
def npc_with_note(text: str) -> list[dict[str, Any]]:
    npc = condition("C11.9", "Malignant neoplasm of nasopharynx, unspecified", onset="2019-03-01")
    npc["note"] = [{"text": text}]
    rt = procedure("108290001", "Radiation oncology AND/OR radiotherapy", "2019-05-01", end="2019-06-20")
    return [npc, rt]


def test_local_recurrence_written_only_in_the_note_is_read() -> None:
    result = assess("exc_local_recurrence", npc_with_note("Local recurrence in the nasopharynx on MRI."))
    assert result.status == "met"
    assert "[written in a note]" in result.reason


def test_a_note_denying_local_recurrence_is_not_a_recurrence() -> None:
    result = assess("exc_local_recurrence", npc_with_note("MRI: no evidence of local recurrence."))
    assert result.status == "not_met"


# --- onset[x] in every form
def embolism(**onset: Any) -> dict[str, Any]:
    pe = condition("I26.99", "Other pulmonary embolism without acute cor pulmonale", onset=None)
    pe.update(onset)
    return pe


BORN_1974_09_01 = patient(birth_date="1974-09-01")


def test_onset_age_counts_from_the_birth_date() -> None:
    pe = embolism(onsetAge={"value": 52, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"})
    assert assess("exc_cardiovascular", [pe], with_patient=BORN_1974_09_01).status == "met"


def test_onset_range_of_ages_counts_from_its_low_bound() -> None:
    years = {"system": "http://unitsofmeasure.org", "code": "a", "unit": "years"}
    pe = embolism(onsetRange={"low": {"value": 40, **years}, "high": {"value": 41, **years}})
    assert assess("exc_cardiovascular", [pe], with_patient=BORN_1974_09_01).status == "not_met"


def test_onset_period_start_is_the_onset() -> None:
    pe = embolism(onsetPeriod={"start": "2026-09-20", "end": "2026-09-22"})
    assert assess("exc_cardiovascular", [pe]).status == "met"


def test_onset_string_with_a_month_and_year_gives_that_month() -> None:
    assert assess("exc_cardiovascular", [embolism(onsetString="September 2026")]).status == "met"


def test_onset_string_without_a_year_gives_no_date() -> None:
    result = assess("exc_cardiovascular", [embolism(onsetString="after a long flight")])
    assert result.status == "unknown"
    assert "without an onset date" in result.reason


def test_an_onset_age_long_ago_makes_an_active_entry_stale() -> None:
    ards = condition("J80", "Acute respiratory distress syndrome", onset=None)
    ards["onsetAge"] = {"value": 30, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}
    result = assess("exc_lung_disease", [ards], with_patient=BORN_1974_09_01)
    assert result.status == "unknown"
    assert "recorded active since 2004-09-01" in result.reason


# --- Observation.component
def test_a_potassium_inside_a_metabolic_panel_is_read() -> None:
    panel = coded_obs("51990-0", "Basic metabolic panel - Blood", "2026-10-28")
    panel["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": "2823-3", "display": "Potassium"}]},
            "valueQuantity": {"value": 2.9, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
            "referenceRange": [{"low": {"value": 3.5, "unit": "mmol/L"}, "high": {"value": 5.1, "unit": "mmol/L"}}],
        }
    ]
    result = assess("exc_electrolytes", [panel])
    assert result.status == "met"
    assert "Potassium 2.9 mmol/L" in result.reason


def blood_pressure(systolic: float, diastolic: float) -> dict[str, Any]:
    panel = coded_obs("85354-9", "Blood pressure panel with all children optional", "2026-10-28")
    panel["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": code, "display": name}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        }
        for code, name, value in (
            ("8480-6", "Systolic blood pressure", systolic),
            ("8462-4", "Diastolic blood pressure", diastolic),
        )
    ]
    return panel


def test_a_trial_asking_for_blood_pressure_reads_the_panel_components() -> None:
    trial = load_trial_file(TRIALS / "blood-pressure-trial.yaml")
    high = evaluate(trial, PatientRecord.from_resources([patient(), blood_pressure(172, 95)]), NOW)
    normal = evaluate(trial, PatientRecord.from_resources([patient(), blood_pressure(128, 82)]), NOW)
    assert high.criteria[0].status == "met"
    assert "Systolic blood pressure 172 mm[Hg]" in high.criteria[0].reason
    assert normal.criteria[0].status == "not_met"


# --- dataAbsentReason
def absent(obs: dict[str, Any], reason: str) -> dict[str, Any]:
    obs.pop("valueQuantity", None)
    obs["dataAbsentReason"] = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": reason}]
    }
    return obs


def test_an_ecog_recorded_without_its_value_is_unknown_naming_the_reason() -> None:
    ecog = absent(coded_obs("89247-1", "ECOG Performance Status score", "2026-10-25"), "asked-unknown")
    result = assess("inc_ecog", [ecog])
    assert result.status == "unknown"
    assert "data absent: asked-unknown" in result.reason


def test_a_lab_result_in_error_is_unknown_even_where_absence_would_not_exclude() -> None:
    hba1c = absent(lab("4548-4", "Hemoglobin A1c", 0, "%", "2026-10-25"), "error")
    diabetes = condition("E11.9", "Type 2 diabetes mellitus without complications", onset="2020-01-01")
    result = assess("exc_uncontrolled_diabetes", [diabetes, hba1c])
    assert result.status == "unknown"
    assert "data absent: error" in result.reason


def test_a_test_not_performed_counts_as_no_test() -> None:
    hcv = absent(coded_obs("11259-9", "Hepatitis C virus RNA", "2026-10-25"), "not-performed")
    assert assess("exc_hepatitis", [hcv]).status == "not_met"


def test_the_fields_read_here_are_read_alike_from_a_lean_decoded_bundle() -> None:
    """The service decodes prefetched JSON lean (cds.fhir_json): component, dataAbsentReason, onsetAge,
    note, dateAsserted and dosage bounds must reach the rules as they do from plain dicts."""
    pe = embolism(onsetAge={"value": 52, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"})
    ecog = absent(coded_obs("89247-1", "ECOG Performance Status score", "2026-10-25"), "asked-unknown")
    panel = coded_obs("51990-0", "Basic metabolic panel - Blood", "2026-10-28")
    panel["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": "2823-3", "display": "Potassium"}]},
            "valueQuantity": {"value": 2.9, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
        }
    ]
    tacrolimus = med_statement("42316", "tacrolimus", start="2014-06-11", route=ORAL)
    tacrolimus["dateAsserted"] = "2026-10-25"
    resources = [BORN_1974_09_01, pe, ecog, panel, tacrolimus, *npc_with_note("Local recurrence on MRI.")]
    plain = bundle(*resources)
    lean = decode_resource(orjson.dumps(plain))
    assert lean is not None
    trial = default_trials()[TRIAL_ID]
    from_dicts = evaluate(trial, PatientRecord.from_bundle(plain), NOW)
    from_lean = evaluate(trial, PatientRecord.from_bundle(lean), NOW)
    assert from_lean.model_dump() == from_dicts.model_dump()
    statuses = {c.id: c.status for c in from_lean.criteria}
    assert statuses["exc_cardiovascular"] == "met"
    assert statuses["exc_electrolytes"] == "met"
    assert statuses["exc_immunosuppression"] == "met"
    assert statuses["exc_local_recurrence"] == "met"
