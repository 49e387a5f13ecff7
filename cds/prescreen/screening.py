"""One patient against every trial: the patient's resources → one :class:`CandidateRow` per trial.

The record is built as `trial-cds screen` builds it — a Bundle of the patient's resources read by
``PatientRecord.each_from_bundle`` — and each trial evaluated by the same engine, so that a pre-screen and
a screen of the patient's Bundle give the same verdicts and criteria."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cds.assessment import Assessment, Status, Verdict
from cds.engine import TrialSpec, evaluate
from cds.fhir.decoding import decode_resource
from cds.prescreen.shared import SharedResources
from cds.record import PatientRecord, RecordError
from cds.valuesets import ValueSetLibrary

__all__ = ["CandidateRow", "SharedResources", "row_of", "screen_entries", "screen_patient"]

#: Verdicts in the order a coordinator works through them.
VERDICT_ORDER = (Verdict.LIKELY_ELIGIBLE.value, Verdict.NEEDS_REVIEW.value, Verdict.NOT_ELIGIBLE.value)
_VERDICT_RANK = {v: i for i, v in enumerate(VERDICT_ORDER)}


@dataclass(frozen=True, slots=True)
class CandidateRow:
    """One patient against one trial, as the outputs list it. Plain values only: it pickles (the process
    pool and Spark ship it) and serialises to JSON as it is (``orjson.dumps``)."""

    trial_id: str
    patient_id: str
    verdict: str
    #: Criteria in favour of the patient (an inclusion met, an exclusion that does not apply).
    criteria_met: int
    #: Criteria that rule the patient out (an inclusion not met, an exclusion that applies).
    criteria_ruling_out: int
    criteria_unknown: int
    criteria_total: int
    #: Ids of the criteria left to confirm (unknown, the investigator's judgement criteria among them).
    to_confirm: tuple[str, ...]
    #: Ids of the criteria that rule the patient out.
    excluded_by: tuple[str, ...]
    #: The date of the most recent recorded value behind a decided criterion ("2026-10-30", "2026-10",
    #: "2026"; the dates of its facts), "" when no decided criterion cites a dated value.
    latest_data: str
    #: The assessment as one `trial-cds screen --format json` line (no newline).
    screen_json: str

    @property
    def rank_key(self) -> tuple[str, int, int, int, str]:
        """The total order of the candidate lists: per trial, likely eligible first, then fewest criteria
        to confirm, then the most recent deciding data, then the patient id (deterministic ties)."""
        return (
            self.trial_id,
            _VERDICT_RANK.get(self.verdict, len(VERDICT_ORDER)),
            len(self.to_confirm),
            -date_number(self.latest_data),
            self.patient_id,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CandidateRow:
        """The row ``orjson.dumps(row)`` wrote (a dataclass serialises as an object of its fields)."""
        return cls(
            trial_id=data["trial_id"],
            patient_id=data["patient_id"],
            verdict=data["verdict"],
            criteria_met=data["criteria_met"],
            criteria_ruling_out=data["criteria_ruling_out"],
            criteria_unknown=data["criteria_unknown"],
            criteria_total=data["criteria_total"],
            to_confirm=tuple(data["to_confirm"]),
            excluded_by=tuple(data["excluded_by"]),
            latest_data=data["latest_data"],
            screen_json=data["screen_json"],
        )


def date_number(text: str) -> int:
    """A FHIR date of any precision as a number that sorts as the dates do: "2026-10-30" → 20261030,
    "2026-10" → 20261000; 0 for "" or anything else."""
    digits = text[:10].replace("-", "")
    if len(digits) not in (4, 6, 8) or not digits.isdigit():
        return 0
    return int(digits.ljust(8, "0"))


def row_of(assessment: Assessment) -> CandidateRow:
    met = ruling_out = unknown = 0
    to_confirm: list[str] = []
    excluded_by: list[str] = []
    latest = ""
    for c in assessment.criteria:
        if c.status is Status.UNKNOWN:
            unknown += 1
            to_confirm.append(c.id)
            continue
        if c.rules_out:
            ruling_out += 1
            excluded_by.append(c.id)
        else:
            met += 1
        for fact in c.facts:
            # The Patient's facts are dated the evaluation day (an age): not data that was recorded.
            if (fact.resource or "").startswith("Patient/"):
                continue
            if fact.date and date_number(fact.date) > date_number(latest):
                latest = fact.date
    patient = assessment.patient
    return CandidateRow(
        trial_id=assessment.trial_id,
        patient_id=patient.removeprefix("Patient/"),
        verdict=assessment.verdict.value,
        criteria_met=met,
        criteria_ruling_out=ruling_out,
        criteria_unknown=unknown,
        criteria_total=len(assessment.criteria),
        to_confirm=tuple(to_confirm),
        excluded_by=tuple(excluded_by),
        latest_data=latest,
        screen_json=orjson.dumps(assessment.screen_json()).decode(),
    )


def screen_patient(
    resources: Sequence[Mapping[str, Any]],
    shared: SharedResources,
    trials: Sequence[TrialSpec],
    library: ValueSetLibrary | None,
    now: datetime,
) -> list[CandidateRow]:
    """One row per trial for the patient of ``resources`` (one row per trial and Patient if they hold
    several); no rows when they hold no Patient. ``shared``: the Medications they may name."""
    entries: list[dict[str, Any]] = [{"resource": r} for r in resources]
    entries.extend({"resource": m} for m in shared.referenced_by(resources))
    return _rows(_records({"resourceType": "Bundle", "type": "collection", "entry": entries}), trials, library, now)


def screen_entries(
    entries: Sequence[bytes],
    medication_references: Iterable[str],
    shared: SharedResources,
    trials: Sequence[TrialSpec],
    library: ValueSetLibrary | None,
    now: datetime,
) -> list[CandidateRow]:
    """:func:`screen_patient` on Bundle entries as JSON text (``{"fullUrl": …, "resource": …}``), as the
    spilled partitions hold them: the Bundle's text is decoded as `trial-cds screen` decodes a file (lean,
    orjson where lean decoding cannot say)."""
    parts = list(entries)
    parts.extend(b'{"resource":' + orjson.dumps(m) + b"}" for m in shared.named(medication_references))
    raw = b'{"resourceType":"Bundle","type":"collection","entry":[' + b",".join(parts) + b"]}"
    bundle: Any = decode_resource(raw)
    if bundle is None:
        bundle = orjson.loads(raw)
    return _rows(_records(bundle), trials, library, now)


def _records(bundle: Mapping[str, Any]) -> list[PatientRecord]:
    try:
        return PatientRecord.each_from_bundle(bundle)
    except RecordError:  # no Patient (resources of a patient the data does not hold): nobody to screen
        return []


def _rows(
    records: Sequence[PatientRecord], trials: Sequence[TrialSpec], library: ValueSetLibrary | None, now: datetime
) -> list[CandidateRow]:
    return [row_of(evaluate(trial, record, now, library)) for record in records for trial in trials]
