"""PatientRecord: one patient's resources, read once into typed, indexed form for the engine."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from msgspec import Raw

from cds.fhir_json import LeanEntry, LeanResource, UnreadableField, plain_dict
from cds.record import parse
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

T = TypeVar("T")

# Resources that must never count, whatever they say (criteria file, "data rules").
_IGNORED_STATUS: dict[str, frozenset[str]] = {
    "Observation": frozenset({"entered-in-error", "cancelled"}),
    "MedicationStatement": frozenset({"entered-in-error", "not-taken"}),
    "MedicationRequest": frozenset({"entered-in-error", "cancelled", "draft"}),
    "MedicationAdministration": frozenset({"entered-in-error", "not-done"}),
    "Procedure": frozenset({"entered-in-error", "not-done"}),
    "Immunization": frozenset({"entered-in-error", "not-done"}),
}
_IGNORED_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_NONE: frozenset[str] = frozenset()
_IGNORED_OBSERVATION = _IGNORED_STATUS["Observation"]
_SUBJECT_FIELDS = ("subject", "patient")


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
        unique, by_type = _by_type(resources) if deduplicated else _deduplicate(resources)
        patients = by_type.get("Patient", [])
        chosen = _choose_patient(patients, patient_id)
        pid = patient_id or (chosen.get("id") if chosen else None)
        info = _read(parse.patient, chosen) if chosen else None
        record = cls(patient=info, resource_count=len(unique))
        if chosen and info is None:
            record.unreadable.append(parse.ref_of(chosen))
        medication_index = {
            key: r
            for r in by_type.get("Medication", ())
            if isinstance(r.get("id"), str)
            for key in (f"Medication/{r['id']}", r["id"])
        }

        def medication(r: Mapping[str, Any]) -> MedicationUse | None:
            return parse.medication_use(r, medication_index)

        readers: dict[str, tuple[Callable[[Mapping[str, Any]], Any], list[Any]]] = {
            "Observation": (parse.observation, record.observations),
            "Condition": (parse.condition, record.conditions),
            "MedicationStatement": (medication, record.medications),
            "MedicationRequest": (medication, record.medications),
            "MedicationAdministration": (medication, record.medications),
            "Procedure": (parse.procedure, record.procedures),
            "Immunization": (parse.immunization, record.immunizations),
            "AllergyIntolerance": (parse.allergy, record.allergies),
        }
        belongs = _Belonging(pid)
        seen = belongs.seen
        seen_raw: dict[bytes, bool] = {}  # a lean subject's JSON text → about this patient?
        observation, observations = parse.observation, record.observations
        lean_observation = parse.lean_observation
        ignored, unreadable = record.ignored, record.unreadable
        item: Any
        for resource in unique:
            if type(resource) is LeanResource:
                rtype = resource.resourceType
                if rtype == "Observation":
                    # Most of a long record, decoded lean (cds.fhir_json): the steps below for an
                    # Observation, on its fields as decoded, the subject settled once per JSON text.
                    rid = resource.id
                    ref = f"Observation/{rid}" if isinstance(rid, str) and rid else "Observation/(no id)"
                    try:
                        if pid is not None:
                            subject_json = resource.subject
                            if type(subject_json) is Raw and subject_json:
                                text = bytes(subject_json)
                                about = seen_raw.get(text)
                                if about is None:
                                    about = seen_raw[text] = belongs(resource)
                            else:
                                about = belongs(resource)
                            if not about:
                                ignored.append(ref)
                                continue
                        status = resource.status
                        if (
                            status.lower() in _IGNORED_OBSERVATION
                            if type(status) is str
                            else _is_ignored("Observation", resource)
                        ):
                            ignored.append(ref)
                            continue
                        item = lean_observation(resource, ref)
                    except Exception:  # a field that cannot be read: skipped, never fatal
                        item = None
                    if item is None:
                        unreadable.append(ref)
                    else:
                        observations.append(item)
                    continue
                if type(rtype) is not str or rtype not in readers:
                    continue
                # Most of its fields will be read: one plain dict at once, cheaper than field by field.
                lean = resource
                resource = _read(plain_dict, lean)
                if resource is None:
                    unreadable.append(parse.ref_of(lean))
                    continue
            else:
                rtype = resource.get("resourceType")
            if rtype == "Observation" and type(rtype) is str and type(resource) is dict:
                # Most of a long record: the steps below for an Observation, inlined for its usual shape
                # (subject reference, status text); anything else takes the general calls.
                rid = resource.get("id")
                ref = f"Observation/{rid}" if isinstance(rid, str) and rid else "Observation/(no id)"
                if pid is not None:
                    subject = resource.get("subject")
                    target = subject.get("reference") if type(subject) is dict else None
                    if type(target) is str and target:
                        about = seen.get(target)
                        if about is None:
                            about = seen[target] = _refers_to(target, pid)
                    else:
                        about = belongs(resource)
                    if not about:
                        ignored.append(ref)
                        continue
                status = resource.get("status")
                if (
                    status.lower() in _IGNORED_OBSERVATION
                    if type(status) is str
                    else _is_ignored("Observation", resource)
                ):
                    ignored.append(ref)
                    continue
                item = _read(observation, resource, ref)
                if item is None:
                    unreadable.append(ref)
                else:
                    observations.append(item)
                continue
            if not isinstance(rtype, str):
                continue
            entry = readers.get(rtype)
            if entry is None:
                continue
            ref = parse.ref_of(resource)
            about, skip = _read(belongs, resource), _read(_is_ignored, rtype, resource)
            if about is None or skip is None:  # a field that cannot be read (lean JSON text)
                unreadable.append(ref)
                continue
            if not about or skip:
                ignored.append(ref)
                continue
            reader, target = entry
            # The Observation reader takes the reference made here.
            item = _read(observation, resource, ref) if rtype == "Observation" else _read(reader, resource)
            if item is None:
                unreadable.append(ref)
            else:
                target.append(item)
        return record


def _read(reader: Callable[..., Any], *args: Any) -> Any:
    try:
        return reader(*args)
    except Exception:  # a malformed resource is skipped, never fatal
        return None


def _by_type(
    resources: Iterable[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], dict[str, list[Mapping[str, Any]]]]:
    """The resources as they are, and the Patient and Medication ones by type."""
    unique = list(resources)
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for r in unique:
        rtype = r.resourceType if type(r) is LeanResource else r.get("resourceType")
        if rtype == "Patient" or rtype == "Medication":
            by_type.setdefault(rtype, []).append(r)
    return unique, by_type


def _deduplicate(
    resources: Iterable[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], dict[str, list[Mapping[str, Any]]]]:
    """The same resource under several prefetch keys or pages counts once (same type and id); the most
    recently updated copy wins. Anything that is not a JSON object is left out. Also: the Patient and
    Medication resources kept, by type (the record needs them before the rest)."""
    by_key: dict[tuple[str, str], Mapping[str, Any]] = {}
    out: list[Mapping[str, Any]] = []
    for r in resources:
        if type(r) is LeanResource:
            rtype, rid = r.resourceType, r.id
        elif type(r) is dict or isinstance(r, Mapping):
            rtype, rid = r.get("resourceType"), r.get("id")
        else:
            continue
        if (type(rtype) is not str or type(rid) is not str) and (
            not isinstance(rtype, str) or not isinstance(rid, str)
        ):
            out.append(r)
            continue
        key = (rtype, rid)
        previous = by_key.get(key)
        if previous is None or _last_updated(r) > _last_updated(previous):
            by_key[key] = r
    unique = list(by_key.values()) + out
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for (rtype, _), r in by_key.items():
        if rtype in ("Patient", "Medication"):
            by_type.setdefault(rtype, []).append(r)
    for r in out:
        rtype = r.get("resourceType")
        if rtype in ("Patient", "Medication"):
            by_type.setdefault(rtype, []).append(r)
    return unique, by_type


def _last_updated(resource: Mapping[str, Any]) -> str:
    try:
        meta = resource.get("meta")
    except UnreadableField:
        return ""
    value = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) else ""


def _choose_patient(patients: list[Mapping[str, Any]], patient_id: str | None) -> Mapping[str, Any] | None:
    if patient_id is not None:
        for p in patients:
            if p.get("id") == patient_id:
                return p
        return None
    return patients[0] if len(patients) == 1 else None


def _refers_to(target: str, patient_id: str) -> bool:
    if target.startswith("urn:"):
        return True
    return target.rstrip("/").rsplit("/", 2)[-2:] == ["Patient", patient_id]


class _Belonging:
    """Whether a resource is about this patient: a resource about another patient never counts (a
    mixed-up prefetch must not leak into a verdict). The answer per reference text is remembered (a
    record's resources share one subject reference)."""

    def __init__(self, patient_id: str | None) -> None:
        self.patient_id = patient_id
        self.seen: dict[str, bool] = {}

    def __call__(self, resource: Mapping[str, Any]) -> bool:
        patient_id = self.patient_id
        if patient_id is None:
            return True
        for name in _SUBJECT_FIELDS:
            ref = resource.get(name)
            if type(ref) is dict or isinstance(ref, Mapping):
                target = ref.get("reference")
                if type(target) is str and target:
                    answer = self.seen.get(target)
                    if answer is None:
                        answer = self.seen[target] = _refers_to(target, patient_id)
                    return answer
                if isinstance(target, str) and target:
                    return _refers_to(target, patient_id)
        return True


def _is_ignored(rtype: str, resource: Mapping[str, Any]) -> bool:
    status = resource.get("status")
    if isinstance(status, str) and status.lower() in _IGNORED_STATUS.get(rtype, _NONE):
        return True
    if rtype in ("Condition", "AllergyIntolerance"):
        verification = parse.status_code(resource.get("verificationStatus"))
        if verification in _IGNORED_VERIFICATION:
            return True
    return False
