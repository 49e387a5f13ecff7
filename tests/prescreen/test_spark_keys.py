"""The JVM's reading of a line's patient (cds/prescreen/spark_keys.py) is the key function's
(cds/prescreen/keys.py): on every case tests/prescreen/test_keys.py holds, and on the lines whose JSON types
the JVM cannot tell apart, which it leaves to the key function.

One local[2] Spark session serves every Spark test (tests/spark_support.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fhir_builders as fb
import orjson
import pytest
from spark_support import local_spark_session, require_spark

require_spark()

from pyspark.sql import SparkSession  # noqa: E402  (after the check: PySpark is an optional extra)

from cds.prescreen.engine_spark import input_files, ndjson_lines  # noqa: E402
from cds.prescreen.spark_keys import GroupingError, confirmed_entries, key_columns, python_key  # noqa: E402


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = local_spark_session()
    yield session
    session.stop()


def heart_rate(reference: Any = "Patient/p-7", field: str = "subject") -> dict[str, Any]:
    obs: dict[str, Any] = fb.vital_sign("8867-4", "Heart rate", 70, "/min", "2026-10-01", pid="p-7")
    del obs["subject"]
    obs[field] = {"reference": reference}
    return obs


def with_subject(resource: dict[str, Any], subject: Any) -> dict[str, Any]:
    return {**resource, "subject": subject}


#: The cases of test_keys.py, as NDJSON lines.
KEYED_CASES: list[dict[str, Any]] = [
    fb.patient(pid="p-7"),
    fb.vital_sign("8867-4", "Heart rate", 70, "/min", "2026-10-01", pid="p-7"),
    {"resourceType": "AllergyIntolerance", "id": "a1", "patient": {"reference": "Patient/p-7"}},
    {"resourceType": "Coverage", "id": "c1", "beneficiary": {"reference": "Patient/p-7"}},
    heart_rate("https://ehr.example.org/fhir/Patient/p-7"),
    heart_rate("Patient/p-7/_history/3"),
    heart_rate("https://ehr.example.org/fhir/Patient/p-7/_history/3/"),
    heart_rate("urn:uuid:1b2c"),
    {"resourceType": "Practitioner", "id": "dr-1"},
    {"resourceType": "Organization", "id": "org-1"},
    {"resourceType": "Medication", "id": "med-1"},
    heart_rate("Group/g-1"),
]

#: Lines whose fields' JSON types decide their key: the JVM reads a number 5 and a string "5" alike.
TYPED_CASES: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": 123},
    {"resourceType": "Patient", "id": "123"},
    {"resourceType": "Patient", "id": ""},
    {"resourceType": "Patient", "id": {"value": "p-7"}},
    {**heart_rate(5), "patient": {"reference": "Patient/p-8"}},
    {**heart_rate("5"), "patient": {"reference": "Patient/p-8"}},
    {**heart_rate(""), "patient": {"reference": "Patient/p-8"}},
    {**heart_rate(None), "patient": {"reference": "Patient/p-8"}},
    heart_rate({"reference": "Patient/p-7"}),
    heart_rate(["Patient/p-7"]),
    with_subject(heart_rate(), "Patient/p-7"),
    with_subject(heart_rate(), [{"reference": "Patient/p-7"}]),
    {"resourceType": "Condition", "subject": {"reference": "Patient/"}},
    {"resourceType": "Condition", "subject": {"reference": "Patient//"}},
    {"resourceType": "Condition", "subject": {"reference": "Patient/_history/2"}},
    {"resourceType": "Condition", "subject": {"reference": "x/Patient/_history/_history/2"}},
    {"resourceType": "Condition", "subject": {"reference": "Patients/p-7"}},
    {"resourceType": 7, "subject": {"reference": "Patient/p-7"}},
    {"subject": {"reference": "Patient/p-7"}},
]


def keyed(spark: SparkSession, folder: Path, lines: list[bytes]) -> list[tuple[str, str | None, bool]]:
    """(line, the JVM's candidate key, undecided) of each line, in order."""
    folder.mkdir()
    (folder / "mixed.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    frame = key_columns(ndjson_lines(spark, input_files(spark, [folder], "ndjson")), "value", ("value", "row"))
    return [(r["value"], r["candidate"], r["undecided"]) for r in frame.orderBy("row").collect()]


def assert_the_jvm_reads_as_the_key_function(rows: list[tuple[str, str | None, bool]]) -> None:
    for line, candidate, undecided in rows:
        expected = python_key(line)
        if undecided:
            continue  # the key function decides it
        # A line the JVM keys goes to the key function's patient, or is one the screening drops (no key).
        assert candidate == expected or (
            expected is None and candidate is not None and not list(confirmed_entries(candidate, [line]))
        ), line


def test_the_jvm_keys_every_case_of_the_key_function_as_it_does(spark: SparkSession, tmp_path: Path) -> None:
    rows = keyed(spark, tmp_path / "export", [orjson.dumps(r) for r in KEYED_CASES])
    assert_the_jvm_reads_as_the_key_function(rows)
    assert not any(undecided for _, _, undecided in rows)  # nothing left to Python
    # A Coverage is a type no record reads: no key on either side, as the local engine's spill drops it.
    assert [candidate for _, candidate, _ in rows] == [*["p-7"] * 3, None, *["p-7"] * 3, None, None, None, None, None]


def test_lines_whose_json_types_decide_their_key_are_never_keyed_otherwise(spark: SparkSession, tmp_path: Path) -> None:
    rows = keyed(spark, tmp_path / "export", [orjson.dumps(r) for r in TYPED_CASES])
    assert_the_jvm_reads_as_the_key_function(rows)
    # A number before a patient's reference: the key function skips it, the JVM cannot tell it from "5".
    assert rows[4][2] and python_key(rows[4][0]) == "p-8"


def test_lines_that_are_not_resources_are_left_to_the_key_function_or_dropped(
    spark: SparkSession, tmp_path: Path
) -> None:
    lines = [b"not json", b"[1, 2]", b"  \t ", b'{"resourceType": "Patient", "id": "p-7"', b"{}"]
    rows = keyed(spark, tmp_path / "export", lines)
    assert_the_jvm_reads_as_the_key_function(rows)
    assert all(python_key(line) is None for line, _, _ in rows)


def test_a_line_grouped_with_another_patient_fails_the_run() -> None:
    line = orjson.dumps(fb.vital_sign("8867-4", "Heart rate", 70, "/min", "2026-10-01", pid="p-7")).decode()
    with pytest.raises(GroupingError):
        list(confirmed_entries("p-8", [line]))


def test_the_screening_reads_each_kept_line_as_a_bundle_entry_with_the_medication_it_names() -> None:
    request = fb.med_request("pembrolizumab", status="completed", authored="2024-09-02")
    request["medicationReference"] = {"reference": "Medication/m-1"}
    request["subject"] = {"reference": "Patient/p-7"}
    patient = fb.patient(pid="p-7")
    not_a_resource = "{not json"
    lines = [orjson.dumps(patient).decode(), not_a_resource, orjson.dumps(request).decode()]
    entries = list(confirmed_entries("p-7", lines))
    assert [orjson.loads(e)["resource"]["resourceType"] for e, _ in entries] == ["Patient", "MedicationRequest"]
    assert [m for _, m in entries] == [None, "Medication/m-1"]
