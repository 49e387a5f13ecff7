"""The patient key of an NDJSON line, read by Spark SQL in the JVM: what :func:`cds.prescreen.keys.patient_key`
answers, without the line crossing to Python before it is grouped.

The JVM reads the few fields that say where a line goes (``json_tuple``: one pass over the text; the
references of ``subject``, ``patient`` and ``beneficiary`` from those fields' own small texts) and reads a
reference as :func:`cds.prescreen.keys.reference_key` does. Spark's JSON functions give a value's text
whatever its JSON type (a number 5 and a string "5" both read "5"), where the key function looks at strings
only; so the JVM's answer is a *candidate*, and:

* a line whose key the JVM cannot decide (no readable resourceType; a first reference that names no
  patient while a reference names one — the first may be a number the key function skips; a reference
  that is an object or array) is keyed by the key function itself, in Python (:func:`python_key`): rare in
  an export (none in Synthea's), so nearly every line stays in the JVM;
* every line that reaches the screening is read again by the key function (:func:`confirmed_entries`),
  which drops what the local engine drops (a Patient whose id is not a string, a line that is not JSON) and
  fails the run, loudly, on a line it would put with another patient (duplicate keys in one JSON object
  read differently: the only case left, a malformed resource).

So the groups are the local engine's, line for line (tests/prescreen/test_spark_keys.py holds the JVM's
reading to the key function's on every case of tests/prescreen/test_keys.py and the ambiguous ones)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from cds.prescreen.keys import PATIENT_FIELDS, key_fields, patient_key
from cds.prescreen.shared import medication_reference
from cds.prescreen.spill import RECORD_TYPES

#: The top-level fields the JVM reads of a line, and the columns json_tuple gives them.
FIELD_NAMES = ("resourceType", "id", *PATIENT_FIELDS)
_FIELD_COLUMNS = tuple(f"f_{name}" for name in FIELD_NAMES)
#: A line holding more than whitespace (Python's bytes.strip and Java's \s agree on ASCII whitespace).
_NOT_BLANK = r"[^ \t\n\x0B\f\r]"


#: "Patient/<id>" at the end of a reference (after its last slashes are stripped), or before
#: "/_history/<version>": :func:`cds.record.reading.referenced_patient_id`'s reading as one pattern.
_PATIENT_REFERENCE = r"(?:^|/)Patient/([^/]+)(?:/_history/[^/]*)?\z"


def reference_key(reference: Column) -> Column:
    """:func:`cds.prescreen.keys.reference_key` of a reference text (no Bundle: a urn names nobody), as SQL:
    "Patient/<id>", or a URL ending so, with or without "/_history/<n>"; null for anything else."""
    found = F.regexp_extract(F.regexp_replace(reference, r"/+\z", ""), _PATIENT_REFERENCE, 1)
    return F.when(~reference.startswith("urn:") & (found != ""), found)


def key_columns(frame: DataFrame, value: str, keep: Sequence[str]) -> DataFrame:
    """``frame`` (its columns ``keep``) with ``candidate``, the Patient id the JVM reads of the NDJSON line
    in column ``value`` (null for a line to drop: a type no record reads, or a resource of no patient), and
    ``undecided``, whether the key function must decide instead. Built in steps, each field read once."""
    fields = frame.select(*keep, F.json_tuple(value, *FIELD_NAMES).alias(*_FIELD_COLUMNS))
    with_references = fields.select(
        *keep,
        "f_resourceType",
        "f_id",
        *[F.get_json_object(f"f_{name}", "$.reference").alias(f"r_{name}") for name in PATIENT_FIELDS],
    )
    # The key function takes the first field whose reference is a non-empty string, and reads that one only.
    chosen_text: Column = F.lit(None).cast("string")
    for name in reversed(PATIENT_FIELDS):
        reference = F.col(f"r_{name}")
        chosen_text = F.when(reference.isNotNull() & (reference != ""), reference).otherwise(chosen_text)
    # Another field that may name a patient (a superset: the key function decides those lines).
    others_name_one = F.lit(False)
    for name in PATIENT_FIELDS:
        others_name_one = others_name_one | F.coalesce(F.col(f"r_{name}").contains("Patient/"), F.lit(False))
    chosen = with_references.select(
        *keep, "f_resourceType", "f_id", chosen_text.alias("chosen_text"), others_name_one.alias("others_name_one")
    ).select("*", reference_key(F.col("chosen_text")).alias("chosen_key"))
    rtype, own_id = F.col("f_resourceType"), F.col("f_id")
    undecided_reference = (F.col("chosen_key").isNull() & F.col("others_name_one")) | F.col("chosen_text").rlike(
        r"^[\[{]"
    )
    is_patient = rtype == "Patient"
    record_type = rtype.isin(*sorted(RECORD_TYPES))
    candidate = F.when(is_patient, F.when(own_id != "", own_id)).when(record_type, F.col("chosen_key"))
    undecided = F.when(rtype.isNull(), F.col(value).rlike(_NOT_BLANK)).otherwise(
        record_type & ~is_patient & undecided_reference
    )
    return chosen.select(*keep, candidate.alias("candidate"), undecided.alias("undecided"))


def python_key(line: str | None) -> str | None:
    """The key function's answer for an NDJSON line the JVM could not decide (None: not one to keep);
    None for a line it decided (given as null)."""
    if line is None:
        return None
    raw = line.encode().strip()
    if not raw:
        return None
    try:
        rtype, subset = key_fields(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if rtype not in RECORD_TYPES:
        return None
    return patient_key(subset)


#: :func:`python_key` as a Spark SQL function (rows batched to a Python worker).
python_key_udf: Any = F.udf(python_key, StringType())


class GroupingError(RuntimeError):
    """The JVM put a line with a patient the key function does not give it (no PHI in the message)."""


def confirmed_entries(key: str, lines: Iterable[str]) -> Iterator[tuple[bytes, str | None]]:
    """The Bundle entries (JSON text) of one patient's lines, each with the Medication it names: the lines
    the key function keeps for ``key``, in their order; the others (not JSON, not a resource of a record
    type, of no patient) dropped as the local engine drops them."""
    for line in lines:
        raw = line.encode().strip()
        try:
            rtype, subset = key_fields(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        if rtype not in RECORD_TYPES:
            continue
        found = patient_key(subset)
        if found is None:
            continue
        if found != key:
            raise GroupingError(
                "a resource was grouped with another patient than its references name (its JSON object "
                "repeats a key?): run the local engine on this input, or fix the export"
            )
        yield b'{"resource":' + raw + b"}", medication_reference(subset)
