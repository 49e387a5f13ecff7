"""PatientRecord: one patient's resources, read once into typed, indexed form for the engine."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cds.fhir_json import LeanEntry, LeanResource
from cds.record import parse, reading
from cds.record.model import (
    Allergy,
    Condition,
    Immunization,
    MedicationUse,
    Observation,
    PatientInfo,
    Procedure,
)

__all__ = ["PatientRecord"]


@dataclass
class PatientRecord:
    patient: PatientInfo | None
    observations: list[Observation] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    medications: list[MedicationUse] = field(default_factory=list)
    procedures: list[Procedure] = field(default_factory=list)
    immunizations: list[Immunization] = field(default_factory=list)
    allergies: list[Allergy] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    resource_count: int = 0

    @property
    def patient_ref(self) -> str:
        return self.patient.ref if self.patient else "Patient/(unknown)"

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any], patient_id: str | None = None) -> PatientRecord:
        entries = parse.arr(bundle.get("entry"))
        resources: list[Mapping[str, Any]] = []
        for e in entries:
            if type(e) is LeanEntry:  # decoded lean: its resource is a LeanResource, None or UNSET
                if type(e.resource) is LeanResource:
                    resources.append(e.resource)
            elif (type(e) is dict or isinstance(e, Mapping)) and (
                type(r := e.get("resource")) is dict or isinstance(r, Mapping)
            ):
                resources.append(r)
        return cls.from_resources(resources, patient_id=patient_id)

    @classmethod
    def from_resources(
        cls,
        resources: Iterable[Mapping[str, Any]],
        patient_id: str | None = None,
        *,
        deduplicated: bool = False,
    ) -> PatientRecord:
        """``deduplicated``: the resources are JSON objects, one per (type, id) already
        (:func:`cds.prefetch.merge_resources` made them so), and need not be deduplicated again."""
        unique, by_type = reading.by_type(resources) if deduplicated else reading.deduplicate(resources)
        chosen = reading.choose_patient(by_type.get("Patient", []), patient_id)
        info = reading.guarded(parse.patient, chosen) if chosen else None
        record = cls(patient=info, resource_count=len(unique))
        if chosen and info is None:
            record.unreadable.append(parse.ref_of(chosen))
        medications = {
            key: r
            for r in by_type.get("Medication", ())
            if isinstance(r.get("id"), str)
            for key in (f"Medication/{r['id']}", r["id"])
        }
        # Only a string id can tell whose resources are whose: any other value is as if there were none.
        chosen_id = chosen.get("id") if chosen else None
        pid = patient_id or (chosen_id if isinstance(chosen_id, str) else None)
        reading.RecordReader(record, pid, medications, info.birth_date if info else None).read(unique)
        return record
