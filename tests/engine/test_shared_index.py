"""Many trials per call: the record's index (results by code, diagnoses, value-set matches) is built once
and shared by every trial evaluated on the record, and sharing it changes no answer."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import fhir_builders
from api_support import NOW, patients

from cds.engine import evaluate
from cds.engine.context import RecordIndex
from cds.portfolio import default_trials
from cds.record import PatientRecord
from cds.valuesets import default_library

TRIAL = default_trials()["npc-liver-mets-ldrt"]


def record_of(patient_id: str) -> PatientRecord:
    return PatientRecord.from_resources(patients()[patient_id].resources)


def test_the_index_is_built_once_per_record_and_library() -> None:
    record = record_of("npc-01")
    assert RecordIndex.of(record, default_library()) is RecordIndex.of(record, default_library())


def test_a_second_evaluation_on_the_record_reuses_the_first_ones_index() -> None:
    record = record_of("npc-01")
    evaluate(TRIAL, record, NOW)
    first = record.engine_index
    evaluate(TRIAL, record, NOW)
    assert isinstance(first, RecordIndex)
    assert record.engine_index is first
    assert first.observation_matches, "the first evaluation filled the shared matches"


def test_a_copied_record_gets_its_own_index() -> None:
    record = record_of("npc-01")
    index = RecordIndex.of(record, default_library())
    copy = replace(record, observations=[])
    assert RecordIndex.of(copy, default_library()) is not index


def test_sharing_the_index_changes_no_assessment() -> None:
    for patient_id in patients():
        shared = record_of(patient_id)
        evaluate(TRIAL, shared, NOW)  # fills the index
        again = evaluate(TRIAL, shared, NOW)
        fresh = evaluate(TRIAL, record_of(patient_id), NOW)
        assert again.model_dump() == fresh.model_dump(), patient_id


def test_a_code_under_several_concepts_lists_its_results_newest_first_ties_in_record_order() -> None:
    # One LOINC code written with three displays (three concepts); two results share a day and a time.
    results = [
        fhir_builders.lab("751-8", "Neutrophils", 2.0, "10*9/L", "2026-10-01T08:00:00Z"),
        fhir_builders.lab("751-8", "ANC", 2.1, "10*9/L", "2026-10-20T08:00:00Z"),
        fhir_builders.lab("751-8", "Neutrophils", 2.2, "10*9/L", "2026-10-20T08:00:00Z"),
        fhir_builders.lab("751-8", "Absolute neutrophils", 2.3, "10*9/L", "2026-10-05T08:00:00Z"),
        fhir_builders.lab("751-8", "ANC", 2.4, "10*9/L", "2026-10-28T08:00:00Z"),
    ]
    record = PatientRecord.from_resources([fhir_builders.patient(), *results])
    listed = RecordIndex(record, default_library()).observations_by_code()[("http://loinc.org", "751-8")]
    ids = [o.ref.split("/")[-1] for o in listed]
    assert ids == [results[i]["id"] for i in (4, 1, 2, 3, 0)]


def test_trials_holding_the_same_rule_share_its_result_and_answer_as_alone() -> None:
    twin = TRIAL.model_copy(update={"id": "npc-liver-mets-ldrt-twin"})
    for patient_id in patients():
        record = record_of(patient_id)
        first, second = evaluate(TRIAL, record, NOW), evaluate(twin, record, NOW)
        alone = evaluate(twin, record_of(patient_id), NOW)
        assert second.model_dump() == alone.model_dump(), patient_id
        assert second.criteria == first.criteria, patient_id
    assert record.engine_results is not None and record.engine_results.results, "the results were shared"


def test_a_later_moment_shares_no_result_with_an_earlier_one() -> None:
    record = record_of("npc-01")
    evaluate(TRIAL, record, NOW)
    earlier = record.engine_results
    evaluate(TRIAL, record, NOW + timedelta(days=400))
    assert record.engine_results is not earlier
    assert evaluate(TRIAL, record, NOW).model_dump() == evaluate(TRIAL, record_of("npc-01"), NOW).model_dump()


def test_a_copied_record_shares_no_result_with_its_original() -> None:
    record = record_of("npc-01")
    evaluate(TRIAL, record, NOW)
    fresh = replace(record_of("npc-01"), conditions=[])
    assert evaluate(TRIAL, replace(record, conditions=[]), NOW).model_dump() == evaluate(TRIAL, fresh, NOW).model_dump()
