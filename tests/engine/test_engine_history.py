"""Diagnoses, medicines, procedures, vaccines and allergies: what the record documents, and when."""

from engine_support import assess
from fhir_builders import (
    ICD10,
    LOINC,
    SNOMED,
    allergy,
    coded_obs,
    condition,
    immunization,
    med_statement,
    procedure,
)

ORAL = ("26643006", "Oral route")
IV = ("47625008", "Intravenous route")
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"


def npc(**kw: object) -> dict:
    return condition("C11.9", "Malignant neoplasm of nasopharynx, unspecified", onset="2026-08-01", **kw)  # type: ignore[arg-type]


def histology(code: str, display: str) -> dict:
    return coded_obs(
        "59847-4", "Histology and Behavior ICD-O-3 Cancer", "2026-08-05", value_code=(ICDO3, code, display)
    )


def liver_mets(onset: str = "2026-10-01") -> dict:
    return condition("C78.7", "Secondary malignant neoplasm of liver", onset=onset)


# --- histology, stage, liver metastasis
def test_nonkeratinizing_histology_on_npc_is_met() -> None:
    result = assess("inc_histology", [npc(), histology("8072/3", "Squamous cell carcinoma, nonkeratinizing, NOS")])
    assert result.status == "met"


def test_keratinizing_histology_is_not_met() -> None:
    assert (
        assess("inc_histology", [npc(), histology("8071/3", "Squamous cell carcinoma, keratinizing, NOS")]).status
        == "not_met"
    )


def test_npc_without_histology_is_unknown() -> None:
    assert assess("inc_histology", [npc()]).status == "unknown"


def test_no_nasopharyngeal_carcinoma_in_the_record_is_not_met() -> None:
    assert assess("inc_histology", []).status == "not_met"


def test_histology_from_the_mcode_extension_on_the_condition() -> None:
    ext = [
        {
            "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior",
            "valueCodeableConcept": {
                "coding": [{"system": ICDO3, "code": "8072/3", "display": "Squamous cell carcinoma, nonkeratinizing"}]
            },
        }
    ]
    assert assess("inc_histology", [npc(extension=ext)]).status == "met"


def test_any_distant_metastasis_makes_npc_stage_ivb() -> None:
    stage = coded_obs("21908-9", "Stage group.clinical Cancer", "2026-08-05", value_string="IVA")
    assert assess("inc_stage_ivb", [npc(), stage, liver_mets()]).status == "met"


def test_stage_iva_without_metastasis_is_not_met() -> None:
    stage = coded_obs("21908-9", "Stage group.clinical Cancer", "2026-08-05", value_string="IVA")
    assert assess("inc_stage_ivb", [npc(), stage]).status == "not_met"


def test_no_stage_and_no_metastasis_is_unknown() -> None:
    assert assess("inc_stage_ivb", [npc()]).status == "unknown"


def test_de_novo_liver_metastasis_is_met() -> None:
    assert assess("inc_liver_metastasis", [npc(), liver_mets()]).status == "met"


def test_liver_metastasis_four_months_after_radiotherapy_is_not_met() -> None:
    rt = procedure("108290001", "Radiation oncology AND/OR radiotherapy", "2026-04-01", end="2026-06-01")
    assert assess("inc_liver_metastasis", [npc(), liver_mets("2026-10-01"), rt]).status == "not_met"


def test_liver_metastasis_eight_months_after_radiotherapy_is_met() -> None:
    rt = procedure("108290001", "Radiation oncology AND/OR radiotherapy", "2025-12-01", end="2026-02-01")
    assert assess("inc_liver_metastasis", [npc(), liver_mets("2026-10-01"), rt]).status == "met"


def test_no_liver_metastasis_is_not_met() -> None:
    assert assess("inc_liver_metastasis", [npc()]).status == "not_met"


# --- conditions: status, verification, windows
def test_refuted_condition_is_ignored() -> None:
    assert assess("exc_hiv", [condition("B20", "HIV disease", verification="refuted")]).status == "not_met"


def test_entered_in_error_condition_is_ignored() -> None:
    assert assess("exc_hiv", [condition("B20", "HIV disease", verification="entered-in-error")]).status == "not_met"


def test_provisional_diagnosis_is_unknown_not_met() -> None:
    assert assess("exc_hiv", [condition("B20", "HIV disease", verification="provisional")]).status == "unknown"


def test_resolved_interstitial_lung_disease_counts_as_history() -> None:
    ild = condition(
        "J84.10",
        "Pulmonary fibrosis, unspecified",
        clinical="resolved",
        abatement="2020-01-01",
        onset="2018-01-01",
    )
    assert assess("exc_lung_disease", [ild]).status == "met"


def test_autoimmune_disease_in_remission_excludes() -> None:
    ra = condition("M06.9", "Rheumatoid arthritis, unspecified", clinical="remission", onset="2015-01-01")
    assert assess("exc_autoimmune", [ra]).status == "met"


def test_icd10_codes_without_the_dot_match() -> None:
    assert assess("exc_hiv", [condition("Z21", "Asymptomatic HIV infection status")]).status == "met"
    assert assess("exc_lung_disease", [condition("J8410", "Pulmonary fibrosis, unspecified")]).status == "met"


def test_myocardial_infarction_three_months_ago_excludes() -> None:
    assert assess("exc_cardiovascular", [condition("I21.4", "NSTEMI", onset="2026-08-01")]).status == "met"


def test_myocardial_infarction_eight_months_ago_does_not_exclude() -> None:
    assert (
        assess("exc_cardiovascular", [condition("I21.4", "NSTEMI", onset="2026-03-01", clinical="resolved")]).status
        == "not_met"
    )


def test_old_myocardial_infarction_code_does_not_exclude() -> None:
    assert (
        assess("exc_cardiovascular", [condition("I25.2", "Old myocardial infarction", onset="2019-01-01")]).status
        == "not_met"
    )


def test_stroke_without_a_date_is_unknown() -> None:
    assert (
        assess("exc_cardiovascular", [condition("I63.9", "Cerebral infarction, unspecified", onset=None)]).status
        == "unknown"
    )


def test_epistaxis_is_not_clinically_significant_bleeding() -> None:
    assert assess("exc_bleeding", [condition("R04.0", "Epistaxis", onset="2026-10-25")]).status == "not_met"


def test_gastrointestinal_bleeding_two_weeks_ago_excludes() -> None:
    assert (
        assess(
            "exc_bleeding",
            [condition("K92.2", "Gastrointestinal hemorrhage, unspecified", onset="2026-10-18")],
        ).status
        == "met"
    )


def test_other_malignancy_in_history_excludes() -> None:
    breast = condition("C50.911", "Malignant neoplasm of right female breast", clinical="remission", onset="2015-01-01")
    assert assess("exc_other_malignancy", [breast]).status == "met"


def test_the_nasopharyngeal_carcinoma_and_its_metastases_are_not_another_malignancy() -> None:
    assert assess("exc_other_malignancy", [npc(), liver_mets()]).status == "not_met"


def test_cured_basal_cell_carcinoma_is_excepted() -> None:
    bcc = condition("C44.311", "Basal cell carcinoma of skin of nose", clinical="resolved", abatement="2020-05-01")
    assert assess("exc_other_malignancy", [bcc]).status == "not_met"


def test_active_basal_cell_carcinoma_excludes() -> None:
    assert (
        assess("exc_other_malignancy", [condition("C44.311", "Basal cell carcinoma of skin of nose")]).status == "met"
    )


def test_neuropathy_severity_decides_the_grade() -> None:
    moderate = condition("G62.0", "Drug-induced polyneuropathy", severity=("6736007", "Moderate"))
    mild = condition("G62.0", "Drug-induced polyneuropathy", severity=("255604002", "Mild"))
    unstated = condition("G62.0", "Drug-induced polyneuropathy")
    assert assess("exc_neuropathy", [moderate]).status == "met"
    assert assess("exc_neuropathy", [mild]).status == "not_met"
    assert assess("exc_neuropathy", [unstated]).status == "unknown"


# --- medications
def test_prednisone_exactly_10_mg_a_day_does_not_exclude() -> None:
    pred = med_statement("8640", "prednisone", route=ORAL, dose_mg=10, per_day=1)
    result = assess("exc_immunosuppression", [pred])
    assert result.status == "not_met"
    assert "10 mg/day" in result.reason


def test_dexamethasone_4_mg_twice_daily_excludes() -> None:
    dex = med_statement("3264", "dexamethasone", route=ORAL, dose_mg=4, per_day=2)
    result = assess("exc_immunosuppression", [dex])
    assert result.status == "met"
    assert "53.3 mg/day prednisone-equivalent" in result.reason


def test_tablet_dose_uses_the_strength_in_the_product_name() -> None:
    dex = med_statement("197582", "dexamethasone 4 MG Oral Tablet", dose_mg=1, dose_unit="{tbl}", per_day=1)
    assert assess("exc_immunosuppression", [dex]).status == "met"


def test_inhaled_corticosteroid_is_not_systemic() -> None:
    bud = med_statement(
        None,
        "budesonide 0.2 MG/ACTUAT Inhalation Powder",
        route=("447694001", "Respiratory tract route"),
        dose_mg=0.4,
        per_day=2,
    )
    assert assess("exc_immunosuppression", [bud]).status == "not_met"


def test_steroid_dose_not_recorded_is_unknown() -> None:
    assert assess("exc_immunosuppression", [med_statement("8640", "prednisone", route=ORAL)]).status == "unknown"


def test_steroid_stopped_three_weeks_ago_is_outside_14_days() -> None:
    dex = med_statement(
        "3264",
        "dexamethasone",
        status="completed",
        start="2026-09-20",
        end="2026-10-10",
        route=ORAL,
        dose_mg=8,
        per_day=1,
    )
    assert assess("exc_immunosuppression", [dex]).status == "not_met"


def test_tacrolimus_excludes_as_immunosuppressant() -> None:
    tac = med_statement("42316", "tacrolimus", route=ORAL, dose_mg=2, per_day=2)
    assert assess("exc_immunosuppression", [tac]).status == "met"


def test_pembrolizumab_years_ago_is_a_prior_checkpoint_inhibitor() -> None:
    pem = med_statement("1547545", "pembrolizumab", status="completed", start="2023-01-10", end="2023-06-10", route=IV)
    assert assess("exc_prior_checkpoint_inhibitor", [pem]).status == "met"


def test_checkpoint_inhibitor_recorded_by_name_only_is_matched_and_says_so() -> None:
    tori = med_statement(None, "Toripalimab 240 mg IV", status="completed", start="2024-01-10", end="2024-03-10")
    result = assess("exc_prior_checkpoint_inhibitor", [tori])
    assert result.status == "met"
    assert "matched by name" in result.reason


def test_medication_statement_not_taken_is_ignored() -> None:
    pem = med_statement("1547545", "pembrolizumab", status="not-taken", start="2023-01-10")
    assert assess("exc_prior_checkpoint_inhibitor", [pem]).status == "not_met"


def test_cisplatin_ten_days_ago_is_recent_anticancer_therapy() -> None:
    cis = med_statement("2555", "cisplatin", status="completed", effective="2026-10-22", route=IV)
    assert assess("exc_recent_anticancer_therapy", [cis]).status == "met"


def test_cisplatin_sixty_days_ago_is_not_recent() -> None:
    cis = med_statement("2555", "cisplatin", status="completed", effective="2026-09-02", route=IV)
    assert assess("exc_recent_anticancer_therapy", [cis]).status == "not_met"


def test_completed_course_without_an_end_date_that_started_before_the_window_is_unknown() -> None:
    gem = med_statement("12574", "gemcitabine", status="completed", start="2026-09-01", route=IV)
    assert assess("exc_recent_anticancer_therapy", [gem]).status == "unknown"


def test_intravenous_antibiotic_five_days_ago_is_active_infection() -> None:
    cro = med_statement("2193", "ceftriaxone", status="completed", start="2026-10-25", end="2026-10-28", route=IV)
    assert assess("exc_active_infection", [cro]).status == "met"


def test_entecavir_for_hepatitis_b_is_not_an_infection_antiviral() -> None:
    ent = med_statement("306266", "entecavir", route=ORAL, dose_mg=0.5, per_day=1, start="2025-01-01")
    assert assess("exc_active_infection", [ent]).status == "not_met"


def hbv_dna(value: float) -> dict:
    from fhir_builders import lab

    return lab("42595-9", "Hepatitis B virus DNA [Units/volume]", value, "[IU]/mL", "2026-10-20")


def test_untreated_chronic_hepatitis_b_excludes() -> None:
    assert assess("exc_hepatitis", [condition("B18.1", "Chronic viral hepatitis B")]).status == "met"


def test_treated_hepatitis_b_with_low_viral_load_does_not_exclude() -> None:
    ent = med_statement("306266", "entecavir", route=ORAL, dose_mg=0.5, per_day=1, start="2025-01-01")
    assert (
        assess("exc_hepatitis", [condition("B18.1", "Chronic viral hepatitis B"), ent, hbv_dna(200)]).status
        == "not_met"
    )


def test_treated_hepatitis_b_with_hbv_dna_2000_excludes() -> None:
    ent = med_statement("306266", "entecavir", route=ORAL, dose_mg=0.5, per_day=1, start="2025-01-01")
    assert (
        assess("exc_hepatitis", [condition("B18.1", "Chronic viral hepatitis B"), ent, hbv_dna(2000)]).status == "met"
    )


def test_treated_hepatitis_b_without_a_viral_load_is_unknown() -> None:
    ent = med_statement("306266", "entecavir", route=ORAL, dose_mg=0.5, per_day=1, start="2025-01-01")
    assert assess("exc_hepatitis", [condition("B18.1", "Chronic viral hepatitis B"), ent]).status == "unknown"


def test_no_hepatitis_in_the_record_does_not_exclude() -> None:
    assert assess("exc_hepatitis", []).status == "not_met"


# --- procedures, vaccines, allergies, ECOG
def test_hepatectomy_two_weeks_ago_is_major_surgery() -> None:
    hx = procedure("71273005", "Partial hepatectomy", "2026-10-18")
    assert assess("exc_major_surgery", [hx]).status == "met"


def test_general_anesthesia_three_weeks_ago_is_major_surgery() -> None:
    ga = procedure("50697003", "General anesthesia", "2026-10-11")
    assert assess("exc_major_surgery", [ga]).status == "met"


def test_no_surgery_in_the_record_does_not_exclude() -> None:
    assert assess("exc_major_surgery", []).status == "not_met"


def test_mmr_three_weeks_ago_excludes() -> None:
    assert assess("exc_live_vaccine", [immunization("03", "MMR", "2026-10-11")]).status == "met"


def test_mmr_five_weeks_ago_does_not_exclude() -> None:
    assert assess("exc_live_vaccine", [immunization("03", "MMR", "2026-09-24")]).status == "not_met"


def test_inactivated_influenza_vaccine_is_not_live() -> None:
    assert (
        assess("exc_live_vaccine", [immunization("141", "Influenza, seasonal, injectable", "2026-10-20")]).status
        == "not_met"
    )


def test_allergy_to_cisplatin_excludes() -> None:
    assert assess("exc_hypersensitivity", [allergy("cisplatin", code="2555", criticality="high")]).status == "met"


def test_severe_reaction_to_a_monoclonal_antibody_excludes() -> None:
    assert assess("exc_hypersensitivity", [allergy("rituximab", severity="severe")]).status == "met"


def test_monoclonal_antibody_allergy_of_unknown_severity_is_unknown() -> None:
    assert assess("exc_hypersensitivity", [allergy("rituximab")]).status == "unknown"


def test_ecog_answer_code_1_is_met() -> None:
    ecog = coded_obs("89247-1", "ECOG performance status", "2026-10-25", value_code=(LOINC, "LA9623-5", "1"))
    assert assess("inc_ecog", [ecog]).status == "met"


def test_ecog_2_as_integer_is_not_met() -> None:
    assert (
        assess("inc_ecog", [coded_obs("89247-1", "ECOG performance status", "2026-10-25", value_int=2)]).status
        == "not_met"
    )


def test_karnofsky_is_not_read_as_ecog() -> None:
    kps = coded_obs("89243-0", "Karnofsky Performance Status", "2026-10-25", value_int=1)
    assert assess("inc_ecog", [kps]).status == "unknown"


def test_judgement_criteria_stay_unknown_and_list_what_was_found() -> None:
    alcohol = condition("F10.20", "Alcohol dependence, uncomplicated", system=ICD10)
    result = assess("exc_substance_or_condition", [alcohol])
    assert result.status == "unknown"
    assert result.evidence


def test_snomed_coded_liver_metastasis_counts() -> None:
    mets = condition("94381002", "Secondary malignant neoplasm of liver", system=SNOMED)
    assert assess("inc_liver_metastasis", [npc(), mets]).status == "met"


def test_checkpoint_inhibitor_recorded_by_brand_name_only_is_matched() -> None:
    keytruda = med_statement(
        None, "Keytruda 100 MG in 4 ML Injection", status="completed", start="2024-01-01", end="2024-05-01"
    )
    assert assess("exc_prior_checkpoint_inhibitor", [keytruda]).status == "met"


def test_generic_cancer_code_that_may_be_the_npc_itself_is_to_confirm() -> None:
    generic = condition("363346000", "Malignant neoplastic disease", system=SNOMED)
    assert assess("exc_other_malignancy", [npc(), generic]).status == "unknown"


def test_snomed_coded_other_primary_cancer_excludes() -> None:
    nsclc = condition("254637007", "Non-small cell lung cancer", system=SNOMED)
    assert assess("exc_other_malignancy", [npc(), nsclc]).status == "met"


def test_heart_failure_with_nyha_class_iii_within_six_months_excludes() -> None:
    hf = condition("I50.22", "Chronic systolic (congestive) heart failure", onset="2024-03-01")
    nyha = coded_obs("88020-3", "NYHA functional class", "2026-09-20", value_string="Class III")
    assert assess("exc_cardiovascular", [hf, nyha]).status == "met"


def test_heart_failure_without_a_nyha_class_is_to_confirm() -> None:
    hf = condition("I50.22", "Chronic systolic (congestive) heart failure", onset="2024-03-01")
    assert assess("exc_cardiovascular", [hf]).status == "unknown"


def test_heart_failure_resolved_years_ago_does_not_exclude() -> None:
    hf = condition(
        "I50.9", "Heart failure, unspecified", onset="2019-01-01", clinical="resolved", abatement="2020-01-01"
    )
    assert assess("exc_cardiovascular", [hf]).status == "not_met"


def test_neuropathy_grade_written_in_the_diagnosis_decides() -> None:
    g2 = condition("G62.0", "Grade 2 peripheral sensory neuropathy, oxaliplatin")
    g1 = condition("G62.0", "Peripheral neuropathy, CTCAE grade 1")
    assert assess("exc_neuropathy", [g2]).status == "met"
    assert assess("exc_neuropathy", [g1]).status == "not_met"


def test_positive_hbsag_without_treatment_excludes() -> None:
    hbsag = coded_obs("5196-1", "HBsAg", "2026-10-01", value_code=(SNOMED, "10828004", "Positive"))
    assert assess("exc_hepatitis", [hbsag]).status == "met"


def test_positive_hbsag_on_entecavir_without_viral_load_is_to_confirm() -> None:
    hbsag = coded_obs("5196-1", "HBsAg", "2026-10-01", value_code=(SNOMED, "10828004", "Positive"))
    ent = med_statement("306266", "entecavir", route=ORAL, dose_mg=0.5, per_day=1, start="2025-01-01")
    assert assess("exc_hepatitis", [hbsag, ent]).status == "unknown"


def test_negative_hbsag_does_not_exclude() -> None:
    hbsag = coded_obs("5196-1", "HBsAg", "2026-10-01", value_code=(SNOMED, "260385009", "Negative"))
    assert assess("exc_hepatitis", [hbsag]).status == "not_met"
