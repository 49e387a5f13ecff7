"""PatientRecord: one patient's resources, read once into typed, indexed form for the engine."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cds.fhir.decoding import LeanEntry, LeanResource
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

__all__ = ["NoPatient", "PatientRecord", "RecordError", "SeveralPatients"]


class RecordError(ValueError):
    """The resources cannot make one patient's record (the message names no patient)."""


class NoPatient(RecordError):
    """A Bundle without a Patient resource: there is nobody to screen."""


class SeveralPatients(RecordError):
    """A Bundle of several Patients, one of them without an id: whose resources are whose cannot be told."""


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
    #: Resources of the kinds the rules read whose subject or patient is another patient: left out (they
    #: are in ``ignored`` too). A mixed-up Bundle or prefetch must not lend one patient another's data.
    about_other_patients: int = 0
    #: Resources of an earlier FHIR version (STU3, DSTU2) that an R4 reader cannot read: "MedicationOrder/7".
    earlier_fhir: list[str] = field(default_factory=list)
    #: The engine's index of this record (cds.engine.context.RecordIndex), built by the first evaluation
    #: and shared by the trials evaluated after it; opaque here (the record knows no engine). Typed Any:
    #: typed ``object``, the mypyc-compiled dataclass failed at import (KeyError: 'object').
    engine_index: Any = field(default=None, compare=False, repr=False)
    #: The engine's results of rules on this record, shared by the trials of one evaluation moment
    #: (cds.engine.plan.SharedPlan); opaque here. They name the record they were made on: a copy made
    #: with other data (dataclasses.replace) does not take them over.
    engine_results: Any = field(default=None, compare=False, repr=False)

    @property
    def patient_ref(self) -> str:
        return self.patient.ref if self.patient else "Patient/(unknown)"

    def notes(self) -> list[str]:
        """What a reader of any answer from this record should know about the record as a whole."""
        out: list[str] = []
        if self.about_other_patients:
            n = self.about_other_patients
            out.append(
                f"{n} resource{'s' if n != 1 else ''} about another patient left out: "
                "the data held more than this patient's record"
            )
        if self.earlier_fhir:
            kinds: dict[str, int] = {}
            for ref in self.earlier_fhir:
                kind = ref.split("/", 1)[0]
                kinds[kind] = kinds.get(kind, 0) + 1
            listed = ", ".join(f"{k} × {v}" if v > 1 else k for k, v in kinds.items())
            out.append(
                f"content of an earlier FHIR version (STU3/DSTU2) not read ({listed}): "
                "criteria about what it holds may be decided without it"
            )
        return out

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any], patient_id: str | None = None) -> PatientRecord:
        resources, full_urls = _bundle_content(bundle)
        record = cls.from_resources(resources, patient_id=patient_id, full_urls=full_urls)
        if reading.earlier_fhir_profile(bundle):
            record.earlier_fhir.append("Bundle/" + str(bundle.get("id") or "(no id)"))
        return record

    @classmethod
    def each_from_bundle(cls, bundle: Mapping[str, Any]) -> list[PatientRecord]:
        """One record per Patient of the Bundle, in the Bundle's order, each with only its own
        resources. Raises :class:`NoPatient` for a Bundle without a Patient, :class:`SeveralPatients`
        when a Bundle of several Patients holds one without an id (its resources cannot be told apart)."""
        resources, full_urls = _bundle_content(bundle)
        ids: dict[str | None, None] = {}
        for r in resources:
            if (r.resourceType if type(r) is LeanResource else r.get("resourceType")) == "Patient":
                rid = r.get("id")
                ids[rid if isinstance(rid, str) and rid else None] = None
        if not ids:
            raise NoPatient("no Patient resource in the Bundle: there is nobody to screen")
        if len(ids) == 1:
            only = next(iter(ids))
            records = [cls.from_resources(resources, patient_id=only, full_urls=full_urls)]
        elif None in ids:
            raise SeveralPatients("several Patients in the Bundle, one of them without an id")
        else:
            records = [cls.from_resources(resources, patient_id=pid, full_urls=full_urls) for pid in ids]
        if reading.earlier_fhir_profile(bundle):
            for record in records:
                record.earlier_fhir.append("Bundle/" + str(bundle.get("id") or "(no id)"))
        return records

    @classmethod
    def from_resources(
        cls,
        resources: Iterable[Mapping[str, Any]],
        patient_id: str | None = None,
        *,
        deduplicated: bool = False,
        full_urls: Mapping[str, str] | None = None,
    ) -> PatientRecord:
        """``deduplicated``: the resources are JSON objects, one per (type, id) already
        (:func:`cds.fhir.prefetch.merge_resources` made them so), and need not be deduplicated again.
        ``full_urls``: a Bundle's Patient entries, fullUrl → Patient id, to resolve references by fullUrl
        (``urn:uuid:…``, as Synthea writes them). Several Patients and no ``patient_id``: the record is
        nobody's, never a merge (no Patient, no resource about a patient; each counted as left out) —
        :meth:`each_from_bundle` gives one record per Patient instead."""
        unique, by_type = reading.by_type(resources) if deduplicated else reading.deduplicate(resources)
        patients = by_type.get("Patient", [])
        if patient_id is None and len(patients) > 1:
            patient_id = reading.NOBODY
        chosen = reading.choose_patient(patients, patient_id)
        info = reading.guarded(parse.patient, chosen) if chosen else None
        medications = {
            key: r
            for r in by_type.get("Medication", ())
            if isinstance(r.get("id"), str)
            for key in (f"Medication/{r['id']}", r["id"])
        }
        # Only a string id can tell whose resources are whose: any other value is as if there were none.
        chosen_id = chosen.get("id") if chosen else None
        pid = patient_id or (chosen_id if isinstance(chosen_id, str) else None)
        reader = reading.RecordReader(pid, medications, full_urls or {}, info.birth_date if info else None)
        if chosen and info is None:
            reader.unreadable.append(parse.ref_of(chosen))
        if chosen and reading.earlier_fhir_profile(chosen):
            reader.earlier_fhir.append(parse.ref_of(chosen))
        reader.read(unique)
        return cls(
            patient=info,
            observations=reader.observations,
            conditions=reader.conditions,
            medications=reader.medications,
            procedures=reader.procedures,
            immunizations=reader.immunizations,
            allergies=reader.allergies,
            unreadable=reader.unreadable,
            ignored=reader.ignored,
            resource_count=len(unique),
            about_other_patients=reader.about_other_patients,
            earlier_fhir=reader.earlier_fhir,
        )


def _bundle_content(bundle: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], dict[str, str]]:
    """A Bundle's resources, and the fullUrl of each Patient entry → its id."""
    entries = parse.arr(bundle.get("entry"))
    resources: list[Mapping[str, Any]] = []
    full_urls: dict[str, str] = {}
    for e in entries:
        if type(e) is LeanEntry:  # decoded lean: its resource is a LeanResource, None or UNSET
            r = e.resource
            if type(r) is not LeanResource:
                continue
        elif (type(e) is dict or isinstance(e, Mapping)) and (
            type(r := e.get("resource")) is dict or isinstance(r, Mapping)
        ):
            pass
        else:
            continue
        resources.append(r)
        if (r.resourceType if type(r) is LeanResource else r.get("resourceType")) == "Patient":
            url, rid = reading.guarded(e.get, "fullUrl"), r.get("id")
            if isinstance(url, str) and url and isinstance(rid, str):
                full_urls[url] = rid
    return resources, full_urls
