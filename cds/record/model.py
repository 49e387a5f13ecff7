"""The few fields of each FHIR resource that eligibility rules read, extracted once per request.

Why not fhir.resources models here: validating every prefetched resource costs ~140 µs each, and a
malformed resource must cost the patient one unknown criterion, not the whole answer. Extraction is
lenient and typed; a field that cannot be read is simply absent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from cds.record.dates import FhirDate
from cds.record.values import (
    Coding,
    Concept,
    ObservationValue,
    Quantity,
    RefRange,
    observation_value,
    reference_ranges,
)

__all__ = [
    "Allergy",
    "Coding",
    "Concept",
    "Condition",
    "ConditionStage",
    "Dosage",
    "Immunization",
    "MedicationUse",
    "Observation",
    "ObservationValue",
    "PatientInfo",
    "Procedure",
    "Quantity",
    "Reaction",
    "RefRange",
    "VolumeDose",
    "new_observation",
]


class Observation(msgspec.Struct, gc=False, repr_omit_defaults=True):
    """What every Observation needs for choosing (code, status, date) is read at once; its value and
    reference ranges only when a rule reads this result. Rules read the latest usable result of a test,
    and an oncology record holds years of results of the same tests.

    A msgspec Struct, not a frozen dataclass: created in C (~0.1 µs against ~0.7 µs), once per result of
    a long record. Treat it as read-only (only its value and ranges are filled in, on first read); outside
    the cyclic collector, as it holds no cycle (a Concept, a date, the resource's fields)."""

    ref: str
    status: str | None
    code: Concept
    when: FhirDate | None
    sort_key: str  # the full timestamp as written, for ordering results of the same day
    raw: Mapping[str, Any]
    parsed_value: ObservationValue | None = None
    parsed_ranges: tuple[RefRange, ...] | None = None

    @property
    def value(self) -> ObservationValue:
        if self.parsed_value is None:
            self.parsed_value = observation_value(self.raw)
        return self.parsed_value

    @property
    def ranges(self) -> tuple[RefRange, ...]:
        if self.parsed_ranges is None:
            self.parsed_ranges = reference_ranges(self.raw)
        return self.parsed_ranges

    def __repr__(self) -> str:  # not the resource's fields (long, and a record's content)
        return f"Observation({self.ref!r}, status={self.status!r}, code={self.code!r}, when={self.when!r})"


def new_observation(
    ref: str,
    status: str | None,
    code: Concept,
    when: FhirDate | None,
    sort_key: str,
    raw: Mapping[str, Any],
) -> Observation:
    """``Observation(ref, status, code, when, sort_key, raw)``."""
    return Observation(ref, status, code, when, sort_key, raw)


class ConditionStage(msgspec.Struct, frozen=True, gc=False):
    """One ``Condition.stage``: its summary (a stage group, or TNM written as text), its type (clinical,
    pathological; sometimes naming the staging system) and the staging Observations it cites."""

    summary: Concept | None
    type: Concept | None
    assessments: tuple[str, ...] = ()  # references as written ("Observation/abc")


class Condition(msgspec.Struct, frozen=True, gc=False):
    ref: str
    code: Concept
    clinical_status: str | None
    verification_status: str | None
    onset: FhirDate | None
    abatement: FhirDate | None
    abated: bool
    recorded: FhirDate | None
    severity: Concept | None
    morphology: tuple[Concept, ...] = ()
    # The latest date the entry states of itself (onset, its end, recordedDate, abatement): how current an
    # "active" status can be believed to be. Never meta.lastUpdated, which is the server's, not the clinician's.
    latest: FhirDate | None = None
    notes: tuple[str, ...] = ()  # Condition.note texts, read for words no code expresses
    stages: tuple[ConditionStage, ...] = ()  # Condition.stage, read by staging rules


class Dosage(msgspec.Struct, frozen=True, gc=False):
    route: Concept | None
    dose: Quantity | None
    per_day: float | None  # administrations per day, where timing says so
    text: str | None = None


class MedicationUse(msgspec.Struct, frozen=True, gc=False):
    ref: str
    resource_type: str  # MedicationStatement | MedicationRequest | MedicationAdministration
    status: str | None
    medication: Concept
    start: FhirDate | None
    end: FhirDate | None
    dosages: tuple[Dosage, ...] = ()
    point_in_time: bool = False  # effectiveDateTime / authoredOn: one moment, not a period
    # The latest date the entry states of itself (effective[x], authoredOn, validity period, dosage timing
    # bounds): how current an "active" status can be believed to be. Never meta.lastUpdated.
    latest: FhirDate | None = None
    # Why it is taken: reasonCode (R4) / reason.concept (R5), and the references of reasonReference /
    # reason.reference as written ("Condition/abc"), resolved against the record's Conditions by the rules.
    reasons: tuple[Concept, ...] = ()
    reason_refs: tuple[str, ...] = ()


class VolumeDose(msgspec.Struct, frozen=True, gc=False):
    """The total radiation dose a Procedure says was delivered to one volume (mCODE
    RadiotherapyDoseDeliveredToVolume: ``totalDoseDelivered``, usually in cGy)."""

    volume: str | None  # the volume's reference as written ("BodyStructure/ptv-70"), if given
    dose: Quantity


class Procedure(msgspec.Struct, frozen=True, gc=False):
    ref: str
    status: str | None
    code: Concept
    category: Concept | None
    start: FhirDate | None
    end: FhirDate | None
    doses: tuple[VolumeDose, ...] = ()  # radiotherapy: dose delivered per volume, where recorded


class Immunization(msgspec.Struct, frozen=True, gc=False):
    ref: str
    status: str | None
    vaccine: Concept
    when: FhirDate | None


class Reaction(msgspec.Struct, frozen=True, gc=False):
    substance: Concept | None
    severity: str | None


class Allergy(msgspec.Struct, frozen=True, gc=False):
    ref: str
    code: Concept
    clinical_status: str | None
    verification_status: str | None
    criticality: str | None
    reactions: tuple[Reaction, ...] = ()


class PatientInfo(msgspec.Struct, frozen=True, gc=False):
    ref: str
    gender: str | None
    birth_date: FhirDate | None
    deceased: bool = False
    deceased_on: FhirDate | None = None  # Patient.deceasedDateTime, where it is a date
