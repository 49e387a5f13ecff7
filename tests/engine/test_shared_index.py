"""Many trials per call: the record's index (results by code, diagnoses, value-set matches) is built once
and shared by every trial evaluated on the record, and sharing it changes no answer."""

from __future__ import annotations

from dataclasses import replace

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
