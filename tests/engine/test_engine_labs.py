"""Lab thresholds: windows, statuses, units, ULN from the result, derived values."""

import pytest
from engine_support import assess
from fhir_builders import condition, lab, patient

from cds.engine.rules.derived import ckd_epi_2021, corrected_calcium_mg_dl


def anc(value: float, date: str = "2026-10-28", **kw: object) -> dict:
    return lab("751-8", "Neutrophils [#/volume] in Blood", value, "10*3/uL", date, **kw)  # type: ignore[arg-type]


def test_anc_at_threshold_is_met_and_cites_value_and_date() -> None:
    result = assess("inc_anc", [anc(1.5)])
    assert result.status == "met"
    assert "ANC 1.5 × 10³/µL (= 1.5 × 10⁹/L) on 2026-10-28" in result.reason
    assert result.evidence[0].startswith("Observation/")


def test_anc_below_threshold_is_not_met() -> None:
    assert assess("inc_anc", [anc(1.4)]).status == "not_met"


def test_a_result_28_days_old_is_inside_the_window() -> None:
    assert assess("inc_anc", [anc(2.0, "2026-10-04")]).status == "met"


def test_a_result_29_days_old_is_stale_and_the_reason_says_how_old() -> None:
    result = assess("inc_anc", [anc(2.0, "2026-10-03")])
    assert result.status == "unknown"
    assert "2026-10-03" in result.reason and "29 days" in result.reason


def test_no_result_at_all_is_unknown_and_says_what_to_order() -> None:
    result = assess("inc_anc", [])
    assert result.status == "unknown"
    assert result.missing and "ANC" in result.missing[0]


def test_preliminary_result_is_ignored() -> None:
    assert assess("inc_anc", [anc(2.0, status="preliminary")]).status == "unknown"


def test_entered_in_error_result_is_ignored_and_the_previous_one_decides() -> None:
    wrong = anc(0.5, "2026-10-30", status="entered-in-error")
    assert assess("inc_anc", [anc(2.0, "2026-10-20"), wrong]).status == "met"


def test_the_most_recent_result_decides() -> None:
    assert assess("inc_anc", [anc(2.0, "2026-10-10"), anc(1.0, "2026-10-29")]).status == "not_met"


def test_result_dated_after_the_evaluation_date_is_ignored() -> None:
    assert assess("inc_anc", [anc(0.5, "2026-11-05"), anc(2.0, "2026-10-20")]).status == "met"


def test_anc_in_si_units_with_alternative_loinc_is_converted() -> None:
    obs = lab("26499-4", "Neutrophils [#/volume] in Blood", 1.8, "10*9/L", "2026-10-28")
    assert assess("inc_anc", [obs]).status == "met"


def test_hemoglobin_in_mmol_per_litre_converts_through_molar_mass() -> None:
    # 5.6 mmol/L = 90.2 g/L; 5.5 mmol/L = 88.6 g/L
    ok = lab("59260-0", "Hemoglobin [Moles/volume] in Blood", 5.6, "mmol/L", "2026-10-28")
    low = lab("59260-0", "Hemoglobin [Moles/volume] in Blood", 5.5, "mmol/L", "2026-10-28")
    assert assess("inc_hemoglobin", [ok]).status == "met"
    assert assess("inc_hemoglobin", [low]).status == "not_met"


def test_hemoglobin_in_g_per_dl_is_compared_in_g_per_l() -> None:
    assert assess("inc_hemoglobin", [lab("718-7", "Hemoglobin", 8.9, "g/dL", "2026-10-28")]).status == "not_met"
    assert assess("inc_hemoglobin", [lab("718-7", "Hemoglobin", 9.0, "g/dL", "2026-10-28")]).status == "met"


def creat(value: float, unit: str = "mg/dL", high: float = 1.2, date: str = "2026-10-28") -> dict:
    code = "2160-0" if unit == "mg/dL" else "14682-9"
    return lab(code, "Creatinine", value, unit, date, low=0.6 if unit == "mg/dL" else 53, high=high)


def test_creatinine_exactly_one_and_a_half_times_uln_is_met() -> None:
    assert assess("inc_renal", [creat(1.8, high=1.2)]).status == "met"


def test_creatinine_above_limit_is_rescued_by_reported_egfr_of_60() -> None:
    egfr = lab("98979-8", "eGFR CKD-EPI 2021", 60, "mL/min/{1.73_m2}", "2026-10-28")
    result = assess("inc_renal", [creat(1.9, high=1.2), egfr])
    assert result.status == "met"
    assert "eGFR 60" in result.reason


def test_creatinine_in_micromol_per_litre_is_converted() -> None:
    # 97 µmol/L = 1.10 mg/dL against ULN 106 µmol/L
    assert assess("inc_renal", [creat(97, "umol/L", high=106)]).status == "met"


def test_egfr_is_computed_with_ckd_epi_2021_when_none_is_reported() -> None:
    result = assess("inc_renal", [creat(2.0, high=1.2)], with_patient=patient("male", "1974-05-10"))
    assert result.status == "not_met"
    assert "CKD-EPI 2021" in result.reason


def test_ckd_epi_2021_matches_the_published_equation() -> None:
    # Inker 2021: 142 × min(Scr/κ,1)^α × max(Scr/κ,1)^−1.200 × 0.9938^age × 1.012 [female]
    assert ckd_epi_2021(1.0, 50, "male") == pytest.approx(91.7, abs=0.1)
    assert ckd_epi_2021(0.7, 50, "female") == pytest.approx(142 * 0.9938**50 * 1.012, rel=1e-9)


def test_inr_without_reference_range_uses_the_trial_default_and_says_so() -> None:
    inr = lab("6301-6", "INR", 1.1, "{INR}", "2026-10-28")
    aptt = lab("3173-2", "aPTT", 30, "s", "2026-10-28", low=25, high=35)
    result = assess("inc_coagulation", [inr, aptt])
    assert result.status == "met"
    assert "trial default" in result.reason


def test_high_inr_is_excused_by_a_normal_pt() -> None:
    inr = lab("6301-6", "INR", 2.5, "{INR}", "2026-10-28", high=1.1)
    pt = lab("5902-2", "PT", 13, "s", "2026-10-28", low=11, high=13.5)
    aptt = lab("3173-2", "aPTT", 30, "s", "2026-10-28", low=25, high=35)
    assert assess("inc_coagulation", [inr, pt, aptt]).status == "met"


def test_high_aptt_fails_coagulation_whatever_the_inr() -> None:
    inr = lab("6301-6", "INR", 1.0, "{INR}", "2026-10-28", high=1.1)
    aptt = lab("3173-2", "aPTT", 60, "s", "2026-10-28", low=25, high=35)
    assert assess("inc_coagulation", [inr, aptt]).status == "not_met"


def bili(value: float) -> dict:
    return lab("1975-2", "Bilirubin.total", value, "mg/dL", "2026-10-28", low=0.1, high=1.0)


def test_bilirubin_twice_uln_fails_without_gilbert() -> None:
    assert assess("inc_bilirubin", [bili(2.0)]).status == "not_met"


def test_bilirubin_twice_uln_passes_with_gilbert_syndrome() -> None:
    gilbert = condition("E80.4", "Gilbert syndrome", onset="2001-01-01")
    assert assess("inc_bilirubin", [bili(2.0), gilbert]).status == "met"


def test_bilirubin_three_times_uln_fails_even_with_gilbert_syndrome() -> None:
    gilbert = condition("E80.4", "Gilbert syndrome", onset="2001-01-01")
    assert assess("inc_bilirubin", [bili(3.0), gilbert]).status == "not_met"


def test_bilirubin_in_micromol_per_litre_with_its_own_range() -> None:
    obs = lab("14631-6", "Bilirubin.total", 30, "umol/L", "2026-10-28", low=3, high=21)
    assert assess("inc_bilirubin", [obs]).status == "met"  # 1.43 × ULN


def test_a_result_below_the_assay_limit_decides_an_upper_threshold() -> None:
    ast = lab("1920-8", "AST", 5, "U/L", "2026-10-28", high=40, comparator="<")
    alt = lab("1742-6", "ALT", 30, "U/L", "2026-10-28", high=45)
    assert assess("inc_transaminases", [ast, alt]).status == "met"


def test_alt_above_five_times_uln_fails_transaminases() -> None:
    ast = lab("1920-8", "AST", 30, "U/L", "2026-10-28", high=40)
    alt = lab("1742-6", "ALT", 250, "U/L", "2026-10-28", high=45)
    assert assess("inc_transaminases", [ast, alt]).status == "not_met"


def electrolytes(k: float = 4.2, na: float = 140, ca: float = 9.5, alb: float = 40) -> list[dict]:
    return [
        lab("2823-3", "Potassium", k, "mmol/L", "2026-10-28", low=3.5, high=5.1),
        lab("2951-2", "Sodium", na, "mmol/L", "2026-10-28", low=136, high=145),
        lab("17861-6", "Calcium", ca, "mg/dL", "2026-10-28", low=8.6, high=10.3),
        lab("1751-7", "Albumin", alb, "g/L", "2026-10-28", low=35, high=50),
    ]


def test_normal_electrolytes_do_not_exclude() -> None:
    assert assess("exc_electrolytes", electrolytes()).status == "not_met"


def test_potassium_below_lln_is_grade_1_and_excludes() -> None:
    result = assess("exc_electrolytes", electrolytes(k=3.3))
    assert result.status == "met"
    assert "Potassium" in result.reason


def test_low_total_calcium_is_corrected_for_low_albumin() -> None:
    # 8.2 + 0.8 × (4.0 − 2.5) = 9.4 mg/dL: within range
    result = assess("exc_electrolytes", electrolytes(ca=8.2, alb=25))
    assert result.status == "not_met"
    assert "orrected calcium 9.4" in result.reason


def test_calcium_without_albumin_cannot_be_corrected() -> None:
    labs = electrolytes()[:3]
    assert assess("exc_electrolytes", labs).status == "unknown"


def test_corrected_calcium_formula() -> None:
    assert corrected_calcium_mg_dl(8.0, 3.0) == pytest.approx(8.8)


def test_albumin_below_20_within_14_days_excludes() -> None:
    assert assess("exc_hypoalbuminemia", [lab("1751-7", "Albumin", 18, "g/L", "2026-10-25")]).status == "met"


def test_albumin_in_g_per_dl_is_converted() -> None:
    assert assess("exc_hypoalbuminemia", [lab("1751-7", "Albumin", 3.5, "g/dL", "2026-10-25")]).status == "not_met"


def test_albumin_15_days_old_is_outside_the_14_day_window() -> None:
    assert assess("exc_hypoalbuminemia", [lab("1751-7", "Albumin", 18, "g/L", "2026-10-17")]).status == "unknown"
