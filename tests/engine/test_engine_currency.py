"""Currency, not status: an entry left "active" for years is no evidence of the present.

Each rule that reads a status standing for "now" also reads the entry's own dates against its horizon
(trial file `horizons`, docs/criteria.md "Currency"): past it, `unknown` to confirm, never `met` by the
status alone; what nature bounds (a pregnancy) is over past its bound. A history ever stays history."""

from engine_support import assess
from fhir_builders import ICD10, SNOMED, coded_obs, condition, lab, med_request, med_statement, patient

ORAL = ("26643006", "Oral route")
IV = ("47625008", "Intravenous route")


def negative_hcg() -> dict:
    return coded_obs("2106-3", "Choriogonadotropin [Presence] in Urine", "2026-10-25", value_string="Negative")


def test_a_pregnancy_recorded_active_since_1959_does_not_exclude_a_woman_of_66() -> None:
    woman_66 = patient(gender="female", birth_date="1960-02-01")
    pregnancy = condition("Z33.1", "Pregnant state, incidental", onset="1959-06-01")
    result = assess("exc_pregnant_breastfeeding", [pregnancy, negative_hcg()], with_patient=woman_66)
    assert result.status == "not_met"
    assert "recorded active since 1959-06-01: not current, lasts at most 10 months" in result.reason


def test_a_pregnancy_past_its_natural_bound_does_not_fail_the_not_pregnant_inclusion() -> None:
    woman = patient(gender="female", birth_date="1960-02-01")
    pregnancy = condition("Z33.1", "Pregnant state, incidental", onset="1985-03-01")
    assert assess("inc_sex_not_pregnant", [pregnancy, negative_hcg()], with_patient=woman).status == "met"


def test_a_pregnancy_that_began_three_months_ago_still_excludes() -> None:
    woman = patient(gender="female", birth_date="1990-02-01")
    pregnancy = condition("Z33.1", "Pregnant state, incidental", onset="2026-08-01")
    assert assess("exc_pregnant_breastfeeding", [pregnancy], with_patient=woman).status == "met"


def test_a_docetaxel_order_authored_in_2000_and_never_closed_is_to_confirm_quoting_its_date() -> None:
    order = med_request("docetaxel", code="72962", authored="2000-03-10", route=(SNOMED, *IV))
    result = assess("exc_recent_anticancer_therapy", [order])
    assert result.status == "unknown"
    assert "recorded active since 2000-03-10 — confirm it is current" in result.reason


def test_a_docetaxel_order_authored_ten_days_ago_and_active_is_recent_therapy() -> None:
    order = med_request("docetaxel", code="72962", authored="2026-10-22", route=(SNOMED, *IV))
    assert assess("exc_recent_anticancer_therapy", [order]).status == "met"


def test_antibiotic_orders_from_2019_left_active_do_not_make_an_active_infection() -> None:
    orders = [
        med_request("amoxicillin 500 MG Oral Capsule", authored="2019-04-02", route=(SNOMED, *ORAL)),
        med_request("ceftriaxone 1 G Injection", authored="2019-11-20", route=(SNOMED, *IV)),
    ]
    result = assess("exc_active_infection", orders)
    assert result.status == "unknown"
    assert "recorded active since 2019-04-02" in result.reason


def test_an_order_whose_dosage_bounds_ended_is_not_ongoing() -> None:
    order = med_request(
        "ceftriaxone 1 G Injection", authored="2026-09-01", route=(SNOMED, *IV), bounds=("2026-09-01", "2026-09-10")
    )
    assert assess("exc_active_infection", [order]).status == "not_met"


def test_a_statement_asserted_last_week_keeps_an_old_start_current() -> None:
    statement = med_statement("42316", "tacrolimus", start="2014-06-11", route=ORAL)
    statement["dateAsserted"] = "2026-10-25"
    assert assess("exc_immunosuppression", [statement]).status == "met"


def test_a_statement_active_since_2014_without_a_newer_date_is_to_confirm() -> None:
    statement = med_statement("42316", "tacrolimus", start="2014-06-11", route=ORAL)
    result = assess("exc_immunosuppression", [statement])
    assert result.status == "unknown"
    assert "since 2014-06-11" in result.reason


def test_last_updated_is_not_clinical_evidence_of_currency() -> None:
    order = med_request("docetaxel", code="72962", authored="2000-03-10", route=(SNOMED, *IV))
    order["meta"] = {"lastUpdated": "2026-10-30T08:00:00Z"}
    assert assess("exc_recent_anticancer_therapy", [order]).status == "unknown"


def test_a_prior_checkpoint_inhibitor_stays_history_however_old() -> None:
    old = med_statement("1547545", "pembrolizumab", status="completed", start="2015-01-05", end="2015-06-01")
    assert assess("exc_prior_checkpoint_inhibitor", [old]).status == "met"


def test_acute_lung_disease_left_active_since_2005_is_to_confirm_not_an_exclusion() -> None:
    ards = condition("J80", "Acute respiratory distress syndrome", onset="2005-02-11")
    result = assess("exc_lung_disease", [ards])
    assert result.status == "unknown"
    assert "recorded active since 2005-02-11 — confirm it is current" in result.reason


def test_a_recent_recorded_date_keeps_an_old_onset_current() -> None:
    ards = condition("J80", "Acute respiratory distress syndrome", onset="2005-02-11")
    ards["recordedDate"] = "2026-10-01"
    assert assess("exc_lung_disease", [ards]).status == "met"


def test_interstitial_lung_disease_in_the_history_stays_an_exclusion() -> None:
    ild = condition("J84.10", "Pulmonary fibrosis, unspecified", onset="2005-02-11")
    assert assess("exc_lung_disease", [ild]).status == "met"


def test_a_coagulopathy_left_active_for_years_is_to_confirm_not_an_exclusion() -> None:
    dic = condition("D65", "Disseminated intravascular coagulation", onset="2008-07-01")
    result = assess("exc_bleeding", [dic])
    assert result.status == "unknown"
    assert "confirm it is current" in result.reason


def test_a_past_autoimmune_disease_stays_history() -> None:
    ra = condition("M06.9", "Rheumatoid arthritis, unspecified", onset="1999-01-01", clinical="inactive")
    assert assess("exc_autoimmune", [ra]).status == "met"


def test_chronic_hepatitis_b_is_lifelong_and_its_old_active_status_stands() -> None:
    hbv = condition("B18.1", "Chronic viral hepatitis B without delta-agent", onset="2005-01-01")
    assert assess("exc_hepatitis", [hbv]).status == "met"


def test_an_undated_active_condition_is_taken_as_the_record_states_it() -> None:
    ards = condition("J80", "Acute respiratory distress syndrome", onset=None)
    assert assess("exc_lung_disease", [ards]).status == "met"


def test_a_distant_metastasis_recorded_long_ago_is_no_stage_ivb_by_its_status_alone() -> None:
    mets = condition("C78.7", "Secondary malignant neoplasm of liver", onset="2015-01-01")
    npc = condition("C11.9", "Malignant neoplasm of nasopharynx, unspecified", system=ICD10, onset="2014-11-01")
    assert assess("inc_stage_ivb", [npc, mets]).status != "met"


def test_acute_lung_disease_left_active_for_months_is_to_confirm() -> None:
    # ARDS lasts days to weeks: the acute-lung rule's horizon is 3 months.
    ards = condition("J80", "Acute respiratory distress syndrome", onset="2025-01-24")
    assert assess("exc_lung_disease", [ards]).status == "unknown"


def test_uncontrolled_diabetes_coded_years_ago_is_to_confirm_but_a_recent_hba1c_decides() -> None:
    old = condition("E11.65", "Type 2 diabetes mellitus with hyperglycemia", onset="2023-05-01")
    assert assess("exc_uncontrolled_diabetes", [old]).status == "unknown"
    hba1c = lab("4548-4", "Hemoglobin A1c", 9.1, "%", "2026-10-26")
    assert assess("exc_uncontrolled_diabetes", [old, hba1c]).status == "met"


def test_a_stale_topical_steroid_is_not_systemic_rather_than_to_confirm() -> None:
    cream = med_request("Hydrocortisone 10 MG/ML Topical Cream", authored="1995-05-25")
    assert assess("exc_immunosuppression", [cream]).status == "not_met"
