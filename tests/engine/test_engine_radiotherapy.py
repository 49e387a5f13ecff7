"""Radiotherapy as courses (issue 16): fraction-level Procedures grouped into courses by the gap between them,
the dose delivered read from mCODE's dose-delivered-to-volume extension (a course summary's, else the sum of
the course's records), and the time from a course to a later relapse. Each on FHIR resources as a server
sends them."""

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_support import NOW
from fhir_builders import condition, dose_delivered, patient, procedure
from pydantic import ValidationError

from cds.assessment import CriterionAssessment
from cds.engine import evaluate
from cds.portfolio import load_trial_file
from cds.record import PatientRecord
from cds.rules.radiotherapy import RadiotherapyRule

TRIAL = load_trial_file(Path(__file__).parent / "data" / "trials" / "radiotherapy-trial.yaml")
COURSE_SUMMARY = ("1217123003", "Radiotherapy course of treatment (regime/therapy)")
TELERADIOTHERAPY = ("33195004", "Teleradiotherapy procedure (procedure)")


def assess(criterion_id: str, resources: list[dict[str, Any]]) -> CriterionAssessment:
    record = PatientRecord.from_resources([patient(), *resources])
    return next(c for c in evaluate(TRIAL, record, NOW).criteria if c.id == criterion_id)


def summary(start: str, end: str, cgy: float | None, *, unit: str = "cGy", status: str = "completed") -> dict[str, Any]:
    proc = procedure(*COURSE_SUMMARY, start, end=end, status=status)
    return dose_delivered(proc, cgy, unit, "BodyStructure/ptv-high") if cgy is not None else proc


def fractions(
    first: str, count: int, cgy_each: float | None = None, *, skip_after: int = 0, skip_days: int = 0
) -> list[dict[str, Any]]:
    """One Procedure per weekday fraction from ``first``; after ``skip_after`` fractions, a break of
    ``skip_days`` days (a treatment interruption)."""
    day = date.fromisoformat(first)
    out: list[dict[str, Any]] = []
    while len(out) < count:
        if day.weekday() < 5:
            proc = procedure(*TELERADIOTHERAPY, day.isoformat())
            out.append(dose_delivered(proc, cgy_each) if cgy_each is not None else proc)
            if skip_after and len(out) == skip_after:
                day += timedelta(days=skip_days)
        day += timedelta(days=1)
    return out


def relapse(onset: str | None = "2025-06-01", clinical: str = "recurrence") -> dict[str, Any]:
    return condition("C11.9", "Malignant neoplasm of nasopharynx, unspecified", onset=onset, clinical=clinical)


# --- history of radiotherapy: any course
def test_a_course_summary_is_a_history_of_radiotherapy() -> None:
    result = assess("exc_prior_rt", [summary("2022-01-10", "2022-02-25", 7000)])
    assert result.status == "met"
    assert "course 1, 2022-01-10 to 2022-02-25, 1 record" in result.reason


def test_no_radiotherapy_is_not_met() -> None:
    result = assess("exc_prior_rt", [])
    assert result.status == "not_met"
    assert result.reason == "no previous radiotherapy in the record"


def test_a_planned_course_is_not_radiotherapy_given() -> None:
    assert assess("exc_prior_rt", [summary("2026-11-10", "2026-12-20", None, status="preparation")]).status == "not_met"


def test_radiotherapy_whose_status_is_unknown_is_to_confirm() -> None:
    result = assess("exc_prior_rt", [summary("2022-01-10", "2022-02-25", 7000, status="unknown")])
    assert result.status == "unknown"
    assert result.missing == ["whether the course of 2022-01-10 to 2022-02-25 was given"]


# --- grouping fractions into courses
def test_thirty_three_fractions_are_one_course_naming_every_record() -> None:
    daily = fractions("2022-01-10", 33)
    result = assess("inc_one_course", daily)
    assert result.status == "met"
    assert "course 1, 2022-01-10 to 2022-02-23, 33 records" in result.reason
    assert set(result.evidence) == {f"Procedure/{p['id']}" for p in daily}


def test_a_two_week_interruption_stays_within_one_course() -> None:
    result = assess("inc_one_course", fractions("2022-01-10", 33, skip_after=15, skip_days=14))
    assert result.status == "met"
    assert "1 course(s) qualify" in result.reason


def test_a_second_course_years_later_is_a_second_course() -> None:
    result = assess("inc_one_course", [*fractions("2015-03-02", 30), summary("2024-05-06", "2024-06-20", 6000)])
    assert result.status == "not_met"
    assert "2 course(s) qualify (asked: exactly 1)" in result.reason
    assert "course 2, 2024-05-06 to 2024-06-20" in result.reason


def test_undated_records_beside_a_dated_course_may_be_a_second_course() -> None:
    undated = procedure(*TELERADIOTHERAPY, None)
    result = assess("inc_one_course", [summary("2022-01-10", "2022-02-25", 7000), undated])
    assert result.status == "unknown"
    assert "course 2, undated" in result.reason


# --- dose delivered
def test_a_course_summary_above_66_gy_before_the_relapse_is_radical_radiotherapy() -> None:
    result = assess("inc_radical_rt", [summary("2022-01-10", "2022-02-25", 7000), relapse()])
    assert result.status == "met"
    assert "70 Gy (course summary)" in result.reason


def test_a_dose_written_in_gy_converts() -> None:
    assert assess("inc_radical_rt", [summary("2022-01-10", "2022-02-25", 70, unit="Gy"), relapse()]).status == "met"


def test_60_gy_is_not_radical_for_a_threshold_of_66() -> None:
    result = assess("inc_radical_rt", [summary("2022-01-10", "2022-02-25", 6000), relapse()])
    assert result.status == "not_met"
    assert "60 Gy (course summary) — dose not > 66 Gy" in result.reason


def test_exactly_66_gy_is_not_more_than_66() -> None:
    assert assess("inc_radical_rt", [summary("2022-01-10", "2022-02-25", 6600), relapse()]).status == "not_met"


def test_the_highest_volume_dose_is_the_course_dose() -> None:
    course = dose_delivered(summary("2022-01-10", "2022-02-25", 5400), 7000, "cGy", "BodyStructure/gtv-np")
    assert assess("inc_radical_rt", [course, relapse()]).status == "met"


def test_fraction_doses_add_up_to_the_course_dose() -> None:
    result = assess("inc_radical_rt", [*fractions("2022-01-10", 33, 212), relapse()])
    assert result.status == "met"
    assert "69.96 Gy (sum of 33 records)" in result.reason


def test_a_course_without_a_recorded_dose_is_unknown_never_met() -> None:
    result = assess("inc_radical_rt", [*fractions("2022-01-10", 33), relapse()])
    assert result.status == "unknown"
    assert "dose not recorded" in result.reason
    assert result.missing == ["total dose of the course of 2022-01-10 to 2022-02-23"]


def test_part_of_a_course_without_a_dose_leaves_a_low_total_unknown() -> None:
    phase_one = dose_delivered(procedure(*TELERADIOTHERAPY, "2022-01-10", end="2022-02-18"), 5000)
    phase_two = procedure(*TELERADIOTHERAPY, "2022-02-21", end="2022-03-04")
    result = assess("inc_radical_rt", [phase_one, phase_two, relapse()])
    assert result.status == "unknown"
    assert "at least 50 Gy (recorded on 1 of 2 records)" in result.reason


def test_a_dose_in_a_unit_that_is_not_a_dose_is_not_recorded() -> None:
    result = assess("inc_radical_rt", [summary("2022-01-10", "2022-02-25", 7000, unit="mL"), relapse()])
    assert result.status == "unknown"


# --- before the relapse, and how long before it
def test_radiotherapy_after_the_relapse_is_not_before_it() -> None:
    result = assess("inc_radical_rt", [summary("2025-07-01", "2025-08-15", 7000), relapse("2025-06-01")])
    assert result.status == "not_met"
    assert "started after" in result.reason


def test_no_relapse_recorded_is_not_met() -> None:
    result = assess("inc_radical_rt", [summary("2022-01-10", "2022-02-25", 7000)])
    assert result.status == "not_met"
    assert "the later diagnosis it is measured against is not recorded" in result.reason


def test_the_first_diagnosis_of_the_same_code_is_not_the_relapse() -> None:
    first_diagnosis = relapse("2021-12-01", clinical="active")
    result = assess("inc_radical_rt", [summary("2022-01-10", "2022-02-25", 7000), first_diagnosis])
    assert result.status == "not_met"


def test_relapse_more_than_a_year_after_the_course_ended_is_met() -> None:
    result = assess("inc_interval", [summary("2022-01-10", "2022-02-25", 7000), relapse("2023-03-01")])
    assert result.status == "met"


def test_relapse_within_a_year_of_the_end_is_not_met() -> None:
    result = assess("inc_interval", [summary("2022-01-10", "2022-02-25", 7000), relapse("2022-11-01")])
    assert result.status == "not_met"
    assert "ended 2022-02-25, not more than 12 months before" in result.reason


def test_the_interval_is_counted_from_the_last_fraction() -> None:
    # 33 fractions end 2022-02-23: a relapse on 2023-02-20 is within the year, on 2023-02-24 beyond it.
    daily = fractions("2022-01-10", 33)
    assert assess("inc_interval", [*daily, relapse("2023-02-20")]).status == "not_met"
    assert assess("inc_interval", [*daily, relapse("2023-02-24")]).status == "met"


def test_an_undated_relapse_leaves_the_interval_unknown() -> None:
    result = assess("inc_interval", [summary("2022-01-10", "2022-02-25", 7000), relapse(None)])
    assert result.status == "unknown"
    assert any("date of" in m for m in result.missing)


def test_undated_radiotherapy_leaves_the_interval_unknown() -> None:
    result = assess("inc_interval", [procedure(*TELERADIOTHERAPY, None), relapse()])
    assert result.status == "unknown"


# --- within a window
def test_a_course_in_progress_within_the_window_is_recent() -> None:
    ongoing = summary("2026-10-01", "2026-10-20", None, status="in-progress")
    assert assess("exc_recent_rt", [ongoing]).status == "met"


def test_a_course_that_ended_months_ago_is_not_recent() -> None:
    assert assess("exc_recent_rt", [summary("2022-01-10", "2022-02-25", 7000)]).status == "not_met"


# --- the model
def test_an_interval_without_the_diagnosis_it_is_measured_to_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs `before_onset_of`"):
        RadiotherapyRule.model_validate(
            {"type": "radiotherapy", "label": "rt", "ended_more_than_months_before_onset": 12}
        )


def test_a_dose_range_needs_a_bound() -> None:
    with pytest.raises(ValidationError, match="at least one of"):
        RadiotherapyRule.model_validate({"type": "radiotherapy", "label": "rt", "dose": {"unit": "Gy"}})


def test_a_dose_unit_that_is_not_a_dose_is_a_problem_of_the_trial_file() -> None:
    rule = RadiotherapyRule.model_validate({"type": "radiotherapy", "label": "rt", "dose": {"gt": 66, "unit": "gray"}})
    assert rule.problems({}) == ["dose.unit: 'gray' is not a UCUM unit of absorbed dose (write Gy or cGy)"]
    assert (
        RadiotherapyRule.model_validate(
            {"type": "radiotherapy", "label": "rt", "dose": {"gt": 6600, "unit": "cGy"}}
        ).problems({})
        == []
    )
