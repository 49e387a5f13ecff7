"""inc_age and inc_sex_not_pregnant: age in whole years on the evaluation date, sex, pregnancy."""

from engine_support import assess
from fhir_builders import LOINC, coded_obs, condition, patient

NEGATIVE = (LOINC, "LA26683-5", "Not pregnant")
PREGNANT = (LOINC, "LA15173-0", "Pregnant")


def test_age_exactly_70_on_the_evaluation_date_is_met() -> None:
    assert assess("inc_age", [], with_patient=patient(birth_date="1956-11-01")).status == "met"


def test_age_on_the_71st_birthday_is_not_met() -> None:
    assert assess("inc_age", [], with_patient=patient(birth_date="1955-11-01")).status == "not_met"


def test_age_the_day_before_the_71st_birthday_is_met() -> None:
    assert assess("inc_age", [], with_patient=patient(birth_date="1955-11-02")).status == "met"


def test_age_17_is_not_met() -> None:
    assert assess("inc_age", [], with_patient=patient(birth_date="2009-06-01")).status == "not_met"


def test_age_exactly_18_is_met() -> None:
    assert assess("inc_age", [], with_patient=patient(birth_date="2008-11-01")).status == "met"


def test_missing_birth_date_leaves_age_unknown() -> None:
    p = patient()
    del p["birthDate"]
    result = assess("inc_age", [], with_patient=p)
    assert result.status == "unknown"
    assert "date of birth" in result.reason


def test_a_birth_year_alone_decides_only_when_every_possible_date_agrees() -> None:
    assert assess("inc_age", [], with_patient=patient(birth_date="1960")).status == "met"
    assert assess("inc_age", [], with_patient=patient(birth_date="1955")).status == "unknown"


def test_age_evidence_names_the_patient_but_not_the_birth_date() -> None:
    result = assess("inc_age", [], with_patient=patient(birth_date="1974-05-10"))
    assert result.evidence == ["Patient/pt-1"]
    assert "1974" not in result.reason


def test_male_patient_meets_sex_criterion() -> None:
    assert assess("inc_sex_not_pregnant", [], with_patient=patient("male")).status == "met"


def test_female_without_a_recent_pregnancy_test_is_unknown() -> None:
    result = assess("inc_sex_not_pregnant", [], with_patient=patient("female"))
    assert result.status == "unknown"
    assert any("pregnancy test" in m for m in result.missing)


def test_female_with_negative_pregnancy_status_within_28_days_is_met() -> None:
    test = coded_obs("82810-3", "Pregnancy status", "2026-10-20", value_code=NEGATIVE)
    assert assess("inc_sex_not_pregnant", [test], with_patient=patient("female")).status == "met"


def test_female_with_positive_pregnancy_status_is_not_met_and_excluded() -> None:
    test = coded_obs("82810-3", "Pregnancy status", "2026-10-20", value_code=PREGNANT)
    assert assess("inc_sex_not_pregnant", [test], with_patient=patient("female")).status == "not_met"
    assert assess("exc_pregnant_breastfeeding", [test], with_patient=patient("female")).status == "met"


def test_negative_test_older_than_28_days_does_not_count() -> None:
    test = coded_obs("82810-3", "Pregnancy status", "2026-09-01", value_code=NEGATIVE)
    assert assess("inc_sex_not_pregnant", [test], with_patient=patient("female")).status == "unknown"


def test_active_pregnancy_condition_overrides_a_negative_test() -> None:
    test = coded_obs("82810-3", "Pregnancy status", "2026-10-20", value_code=NEGATIVE)
    preg = condition("Z33.1", "Pregnant state, incidental")
    assert assess("inc_sex_not_pregnant", [test, preg], with_patient=patient("female")).status == "not_met"


def test_pregnancy_exclusion_does_not_apply_to_a_male() -> None:
    assert assess("exc_pregnant_breastfeeding", [], with_patient=patient("male")).status == "not_met"


def test_female_with_negative_test_is_not_pregnant_or_breastfeeding() -> None:
    test = coded_obs("82810-3", "Pregnancy status", "2026-10-20", value_code=NEGATIVE)
    assert assess("exc_pregnant_breastfeeding", [test], with_patient=patient("female")).status == "not_met"


def test_unknown_gender_leaves_sex_criterion_unknown() -> None:
    assert assess("inc_sex_not_pregnant", [], with_patient=patient("unknown")).status == "unknown"
