"""Lines of prior therapy (`therapy_lines`, issue 16): drug exposures grouped into regimens and counted, in a
setting (begun after the onset of metastasis or recurrence), with a platinum-based line; on FHIR resources as
a server sends them. The convention: docs/authoring-trials.md, "therapy_lines"."""

from pathlib import Path
from typing import Any

import pytest
from engine_support import NOW
from fhir_builders import ATC, condition, med_admin, med_statement, patient
from pydantic import ValidationError

from cds.assessment import CriterionAssessment, Status
from cds.engine import evaluate
from cds.engine.context import EvalContext
from cds.portfolio import load_trial_file
from cds.record import PatientRecord
from cds.rules.therapy_lines import LineCount, TherapyLinesRule
from cds.valuesets import default_library

TRIAL = load_trial_file(Path(__file__).parent / "data" / "trials" / "therapy-lines-trial.yaml")
TWO_WITH_PLATINUM = "inc_two_lines_with_platinum"
AT_MOST_ONE = "inc_at_most_one_line"
TWO_EVER = "inc_two_lines_ever"
HISTORY_CONFIRMED = "inc_one_line_history_confirmed"


def assess(criterion_id: str, resources: list[dict[str, Any]]) -> CriterionAssessment:
    record = PatientRecord.from_resources([patient(), *resources])
    return next(c for c in evaluate(TRIAL, record, NOW).criteria if c.id == criterion_id)


def metastasis(onset: str | None = "2025-01-10") -> dict[str, Any]:
    return condition("C79.51", "Secondary malignant neoplasm of bone", onset=onset)


def given(drug: str, code: str, start: str, end: str | None = None, **kw: Any) -> dict[str, Any]:
    return med_statement(code, drug, status="completed", start=start, end=end or start, **kw)


def cisplatin(start: str, end: str | None = None) -> dict[str, Any]:
    return given("cisplatin", "2555", start, end)


def fluorouracil(start: str, end: str | None = None) -> dict[str, Any]:
    return given("fluorouracil", "4492", start, end)


def gemcitabine(start: str, end: str | None = None) -> dict[str, Any]:
    return given("gemcitabine", "12574", start, end)


def docetaxel(start: str, end: str | None = None) -> dict[str, Any]:
    return given("docetaxel", "72962", start, end)


# --- grouping into lines
def test_drugs_begun_within_28_days_of_each_other_are_one_line() -> None:
    result = assess(TWO_EVER, [cisplatin("2025-02-01", "2025-05-01"), fluorouracil("2025-02-20", "2025-05-01")])
    assert result.status == "not_met"
    assert "lines of chemotherapy: 1 (line 1 from 2025-02-01: cisplatin + fluorouracil)" in result.reason


def test_a_drug_not_in_the_regimen_added_after_28_days_starts_a_new_line() -> None:
    result = assess(TWO_EVER, [cisplatin("2025-02-01", "2025-05-01"), gemcitabine("2025-06-15", "2025-09-01")])
    assert result.status == "met"
    assert "line 1 from 2025-02-01: cisplatin; line 2 from 2025-06-15: gemcitabine" in result.reason


def test_maintenance_with_a_drug_of_the_regimen_continues_the_line() -> None:
    induction = [gemcitabine("2025-02-01", "2025-05-01"), cisplatin("2025-02-01", "2025-05-01")]
    maintenance = gemcitabine("2025-05-22", "2025-12-01")
    result = assess(TWO_EVER, [*induction, maintenance])
    assert result.status == "not_met"
    assert "lines of chemotherapy: 1 (line 1 from 2025-02-01: gemcitabine + cisplatin)" in result.reason


def test_each_cycle_given_as_an_administration_belongs_to_one_line() -> None:
    cycles = [
        med_admin("cisplatin", code="2555", when=f"2025-{month:02d}-05T09:00:00Z") for month in range(2, 8)
    ]
    result = assess(TWO_EVER, cycles)
    assert result.status == "not_met"
    assert "lines of chemotherapy: 1 (line 1 from 2025-02-05: cisplatin)" in result.reason


def test_the_same_drug_again_after_a_gap_of_more_than_120_days_is_a_new_line() -> None:
    result = assess(TWO_EVER, [cisplatin("2024-01-10", "2024-04-10"), cisplatin("2024-10-01", "2024-12-01")])
    assert result.status == "met"
    assert "line 2 from 2024-10-01: cisplatin" in result.reason


def test_a_product_coded_at_the_clinical_drug_level_is_its_ingredient() -> None:
    product = med_statement(
        "1736854", "cisplatin 1 MG/ML Injectable Solution", status="completed", start="2025-02-01", end="2025-05-01"
    )
    atc_coded = med_statement("L01BC05", "Gemcitabine", system=ATC, status="completed", start="2025-02-01")
    result = assess(TWO_EVER, [product, atc_coded])
    assert "line 1 from 2025-02-01: cisplatin + gemcitabine" in result.reason


def test_a_cream_is_not_a_line_of_chemotherapy() -> None:
    cream = given("fluorouracil 50 MG/ML Topical Cream", "4492", "2025-06-01", route=("6064005", "Topical route"))
    result = assess(TWO_EVER, [cisplatin("2025-02-01"), cream])
    assert result.status == "not_met"
    assert "fluorouracil" not in result.reason


def test_weekly_low_dose_methotrexate_is_not_a_line_of_chemotherapy() -> None:
    weekly = med_statement(
        "6851", "methotrexate", status="active", start="2025-06-01", dose_mg=15, dosage_text="15 mg once weekly"
    )
    result = assess(TWO_EVER, [cisplatin("2025-02-01"), weekly])
    assert result.status == "not_met"
    assert "methotrexate" not in result.reason


def test_a_course_planned_to_start_after_the_evaluation_date_is_not_a_prior_line() -> None:
    result = assess(TWO_EVER, [cisplatin("2025-02-01"), docetaxel("2026-11-20", "2027-02-01")])
    assert result.status == "not_met"


# --- the setting: lines begun after the onset
def test_lines_begun_before_the_onset_of_metastasis_are_not_counted() -> None:
    induction = [cisplatin("2023-03-01", "2023-05-01"), fluorouracil("2023-03-01", "2023-05-01")]
    result = assess(AT_MOST_ONE, [metastasis("2025-01-10"), *induction, gemcitabine("2025-02-01", "2025-06-01")])
    assert result.status == "met"
    assert "for metastatic disease since 2025-01-10 (Secondary malignant neoplasm of bone): 1 (line 1" in result.reason
    assert "not counted, begun before the onset: from 2023-03-01: cisplatin + fluorouracil" in result.reason


def test_two_lines_after_the_onset_meet_at_least_two_and_fail_at_most_one() -> None:
    lines = [cisplatin("2025-02-01", "2025-05-01"), gemcitabine("2025-02-01", "2025-05-01"), docetaxel("2025-08-01")]
    assert assess(TWO_WITH_PLATINUM, [metastasis(), *lines]).status == "met"
    result = assess(AT_MOST_ONE, [metastasis(), *lines])
    assert result.status == "not_met"
    assert [f.value for f in result.facts] == ["cisplatin + gemcitabine", "docetaxel"]
    assert [f.date for f in result.facts] == ["2025-02-01", "2025-08-01"]


def test_a_platinum_line_only_before_the_onset_does_not_count_as_the_platinum_based_line() -> None:
    before = cisplatin("2023-03-01", "2023-05-01")
    after = [gemcitabine("2025-02-01", "2025-05-01"), docetaxel("2025-08-01")]
    result = assess(TWO_WITH_PLATINUM, [metastasis(), before, *after])
    assert result.status == "not_met"
    assert "no counted line with Platinum compounds" in result.reason


def test_without_the_diagnosis_of_the_setting_no_line_counts() -> None:
    lines = [cisplatin("2025-02-01"), docetaxel("2025-08-01")]
    assert assess(TWO_WITH_PLATINUM, lines).status == "not_met"
    assert assess(AT_MOST_ONE, lines).status == "met"


def test_a_metastasis_without_a_date_leaves_the_count_to_confirm() -> None:
    result = assess(AT_MOST_ONE, [metastasis(onset=None), cisplatin("2025-02-01"), docetaxel("2025-08-01")])
    assert result.status == "unknown"
    assert "no onset date" in result.reason


def test_a_line_begun_in_the_month_of_an_onset_known_to_the_month_is_to_confirm() -> None:
    result = assess(AT_MOST_ONE, [metastasis(onset="2025-08"), cisplatin("2025-02-01"), docetaxel("2025-08-10")])
    assert result.status == "met"  # at most one either way: docetaxel's line counted or not
    result = assess(TWO_WITH_PLATINUM, [metastasis(onset="2025-02"), cisplatin("2025-02-10"), docetaxel("2025-08-10")])
    assert result.status == "unknown"


# --- what the record does not say
def test_no_chemotherapy_recorded_is_zero_lines() -> None:
    assert assess(TWO_EVER, []).status == "not_met"
    assert assess(AT_MOST_ONE, [metastasis()]).status == "met"


def test_no_chemotherapy_recorded_may_be_left_to_confirm() -> None:
    result = assess(HISTORY_CONFIRMED, [])
    assert result.status == "unknown"
    assert assess(HISTORY_CONFIRMED, [cisplatin("2025-02-01")]).status == "met"


def test_an_undated_exposure_leaves_the_count_to_confirm() -> None:
    undated = med_statement("72962", "docetaxel", status="completed", start=None)
    result = assess(AT_MOST_ONE, [metastasis(), cisplatin("2025-02-01"), undated])
    assert result.status == "unknown"
    assert "docetaxel (no start date)" in result.reason
    assert any("docetaxel" in m for m in result.missing)


def test_a_start_known_only_to_the_month_leaves_the_count_to_confirm() -> None:
    result = assess(TWO_EVER, [cisplatin("2025-02-01"), given("docetaxel", "72962", "2025-03")])
    assert result.status == "unknown"
    assert "start known only as 2025-03" in result.reason


def test_the_setting_may_be_read_from_the_words_of_a_coded_diagnosis() -> None:
    rule = TherapyLinesRule(
        type="therapy_lines",
        label="lines for recurrent disease",
        valuesets=["med-systemic-chemotherapy"],
        after_onset_of=["text-local-recurrence"],
        onset_names="always",
        count=LineCount(min=1),
    )
    recurrence = condition("C11.9", "Locally recurrent nasopharyngeal carcinoma", onset="2025-01-20")
    record = PatientRecord.from_resources([patient(), recurrence, cisplatin("2023-03-01"), docetaxel("2025-02-01")])
    result = rule.evaluate(EvalContext(record, NOW, TRIAL, default_library()))
    assert result.status is Status.MET
    assert "since 2025-01-20 (Locally recurrent nasopharyngeal carcinoma): 1 (line 1 from 2025-02-01: docetaxel)" in (
        result.reason
    )
    words_ignored = rule.model_copy(update={"onset_names": "uncoded"})
    assert words_ignored.evaluate(EvalContext(record, NOW, TRIAL, default_library())).status is Status.NOT_MET


def test_a_count_needs_a_bound() -> None:
    with pytest.raises(ValidationError):
        LineCount()
    with pytest.raises(ValidationError):
        LineCount(min=3, max=1)
