"""Which of a patient's resources count, and reading them into the record's typed lists.

Every resource goes through the same steps: one copy per (type, id); about this patient or not (a
resource about another patient never counts: a mixed-up prefetch must not leak into a verdict); a status
that says it never counts (entered in error, cancelled, refuted, …); then the reader of its type. A
resource that cannot be read is listed as unreadable, never fatal. Observations, most of a long record,
take the shortest path through these steps, on a lean resource's decoded fields (cds.fhir_json) or a
dict's."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from msgspec import Raw

from cds.fhir_json import LeanResource, UnreadableField, plain_dict
from cds.record import parse
from cds.record.dates import FhirDate
from cds.record.model import Condition, MedicationUse, Observation

if TYPE_CHECKING:
    from cds.record import PatientRecord

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


class RecordReader:
    """Reads resources into ``record`` (its lists, ``ignored`` and ``unreadable``) for the patient
    ``patient_id`` (None: every resource counts as the patient's)."""

    def __init__(
        self,
        record: PatientRecord,
        patient_id: str | None,
        medications: Mapping[str, Mapping[str, Any]],
        birth: FhirDate | None = None,
    ) -> None:
        self.record = record
        self.patient_id = patient_id
        self.belongs = _Belonging(patient_id)
        self.subject_texts: dict[bytes, bool] = {}  # a lean subject's JSON text → about this patient?

        def medication(r: Mapping[str, Any]) -> MedicationUse | None:
            return parse.medication_use(r, medications)

        def condition(r: Mapping[str, Any]) -> Condition | None:
            return parse.condition(r, birth)  # an onset given as an age counts from the birth date

        self.readers: dict[str, tuple[Callable[[Mapping[str, Any]], Any], list[Any]]] = {
            "Observation": (parse.observation, record.observations),
            "Condition": (condition, record.conditions),
            "MedicationStatement": (medication, record.medications),
            "MedicationRequest": (medication, record.medications),
            "MedicationAdministration": (medication, record.medications),
            "Procedure": (parse.procedure, record.procedures),
            "Immunization": (parse.immunization, record.immunizations),
            "AllergyIntolerance": (parse.allergy, record.allergies),
        }

    def read(self, resources: Iterable[Mapping[str, Any]]) -> None:
        for resource in resources:
            if type(resource) is LeanResource:
                rtype = resource.resourceType
                if rtype == "Observation":
                    self._lean_observation(resource)
                    continue
                if type(rtype) is not str or rtype not in self.readers:
                    continue
                # Most of its fields will be read: one plain dict at once, cheaper than field by field.
                plain = guarded(plain_dict, resource)
                if plain is None:
                    self.record.unreadable.append(parse.ref_of(resource))
                    continue
                resource = plain
            else:
                rtype = resource.get("resourceType")
                if rtype == "Observation" and type(resource) is dict:
                    self._dict_observation(resource)
                    continue
            if isinstance(rtype, str):
                self._resource(rtype, resource)

    def _lean_observation(self, resource: Any) -> None:
        ref = _observation_ref(resource.id)
        about: bool | None = True
        if self.patient_id is not None:
            subject = resource.subject
            if type(subject) is Raw and subject:  # settled once per JSON text of the reference
                text = bytes(subject)
                about = self.subject_texts.get(text)
                if about is None:
                    about = guarded(self.belongs, resource)
                    if about is not None:
                        self.subject_texts[text] = about
            else:
                about = guarded(self.belongs, resource)
        self._observation(resource, ref, about, resource.status, parse.lean_observation)

    def _dict_observation(self, resource: dict[str, Any]) -> None:
        ref = _observation_ref(resource.get("id"))
        self._observation(resource, ref, self.belongs(resource), resource.get("status"), parse.observation)

    def _observation(
        self,
        resource: Mapping[str, Any],
        ref: str,
        about: bool | None,
        status: object,
        reader: Callable[[Any, str], Observation | None],
    ) -> None:
        if about is None:
            self.record.unreadable.append(ref)
            return
        if not about or (
            status.lower() in _IGNORED_OBSERVATION if type(status) is str else _is_ignored("Observation", resource)
        ):
            self.record.ignored.append(ref)
            return
        item = guarded(reader, resource, ref)
        if item is None:
            self.record.unreadable.append(ref)
        else:
            self._add_observation(resource, item)

    def _add_observation(self, resource: Mapping[str, Any], item: Observation) -> None:
        self.record.observations.append(item)
        if "component" in resource:  # a panel: its components are results too
            parts = guarded(parse.components, resource, item)
            if parts is None:
                self.record.unreadable.append(item.ref)
            else:
                self.record.observations.extend(parts)

    def _resource(self, rtype: str, resource: Mapping[str, Any]) -> None:
        entry = self.readers.get(rtype)
        if entry is None:
            return
        ref = parse.ref_of(resource)
        about, skip = guarded(self.belongs, resource), guarded(_is_ignored, rtype, resource)
        if about is None or skip is None:  # a field that cannot be read (lean JSON text)
            self.record.unreadable.append(ref)
            return
        if not about or skip:
            self.record.ignored.append(ref)
            return
        reader, target = entry
        # The Observation reader takes the reference made here.
        item = guarded(parse.observation, resource, ref) if rtype == "Observation" else guarded(reader, resource)
        if item is None:
            self.record.unreadable.append(ref)
        elif rtype == "Observation":
            self._add_observation(resource, item)
        else:
            target.append(item)


def _observation_ref(rid: object) -> str:
    return f"Observation/{rid}" if isinstance(rid, str) and rid else "Observation/(no id)"


def guarded(reader: Callable[..., Any], *args: Any) -> Any:
    """``reader(*args)``, or None when it fails: a malformed resource is skipped, never fatal."""
    try:
        return reader(*args)
    except Exception:
        return None


def by_type(
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


def deduplicate(
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
        if not isinstance(rtype, str) or not isinstance(rid, str):
            out.append(r)
            continue
        key = (rtype, rid)
        previous = by_key.get(key)
        if previous is None or _last_updated(r) > _last_updated(previous):
            by_key[key] = r
    return by_type([*by_key.values(), *out])


def _last_updated(resource: Mapping[str, Any]) -> str:
    try:
        meta = resource.get("meta")
    except UnreadableField:
        return ""
    value = meta.get("lastUpdated") if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) else ""


def choose_patient(patients: list[Mapping[str, Any]], patient_id: str | None) -> Mapping[str, Any] | None:
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
