"""Which of a patient's resources count, and reading them into the record's typed lists.

Every resource goes through the same steps: one copy per (type, id); about this patient or not (a
resource about another patient never counts: a mixed-up prefetch must not leak into a verdict); a status
that says it never counts (entered in error, cancelled, refuted, …); then the reader of its type. A
resource that cannot be read is listed as unreadable, never fatal. Observations, most of a long record,
take the shortest path through these steps, on a lean resource's decoded fields (cds.fhir.decoding) or a
dict's."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

from msgspec import Raw

from cds.fhir.decoding import LeanResource, plain_dict
from cds.fhir.resources import unique_resources
from cds.record import parse
from cds.record.dates import FhirDate
from cds.record.model import Allergy, Condition, Immunization, MedicationUse, Observation, Procedure

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
_IGNORED_OBSERVATION: Final = _IGNORED_STATUS["Observation"]
#: The fields that name the patient a resource is about, in the order they are read.
SUBJECT_FIELDS = ("subject", "patient")
# The patient of a record made from several Patients with none named: not a FHIR id, so no reference
# names it, and every resource about a patient is left out (counted), never merged into one record.
NOBODY = "(several patients, none named)"

# Resource types of DSTU2 (FHIR 1.0) and STU3 (3.0) that R4 replaced or removed: an R4 reader passes them
# by, so the record says it did (hl7.org/fhir/R4/diff.html; DSTU2 and STU3 resource lists).
EARLIER_FHIR_TYPES = frozenset(
    {
        "MedicationOrder",  # DSTU2 → MedicationRequest
        "DiagnosticOrder",  # DSTU2 → ServiceRequest (STU3: ProcedureRequest)
        "DeviceUseRequest",  # DSTU2 → DeviceRequest
        "Order",  # DSTU2, removed
        "OrderResponse",  # DSTU2, removed
        "ProcedureRequest",  # STU3 → ServiceRequest
        "ReferralRequest",  # STU3 → ServiceRequest
        "ProcessRequest",  # STU3, removed
        "ProcessResponse",  # STU3, removed
        "EligibilityRequest",  # STU3 → CoverageEligibilityRequest
        "EligibilityResponse",  # STU3 → CoverageEligibilityResponse
        "BodySite",  # STU3 → BodyStructure
        "Sequence",  # STU3 → MolecularSequence
        "ImagingManifest",  # STU3, removed
        "DataElement",  # STU3, removed
    }
)
# A profile of a version-specific URL (hl7.org/fhir/STU3/…, /DSTU2/, /3.0/, /1.0/) or a canonical's
# version suffix ("|3.0.2"); a fhirVersion of 1.0.x or 3.0.x.
_EARLIER_PROFILE = re.compile(r"hl7\.org/fhir/(stu3|dstu2|3\.0|1\.0)(/|$)|\|(3\.0|1\.0)(\.\d+)?$", re.I)
_EARLIER_VERSION = re.compile(r"(3\.0|1\.0)(\.\d+)?$")


class RecordReader:
    """Reads resources into its own lists — what a :class:`cds.record.PatientRecord` is then made of —
    for the patient ``patient_id`` (None: every resource counts as the patient's). ``full_urls``: a
    Bundle's Patient entries, fullUrl → id.

    The reader owns the lists rather than filling a record's: the record package's modules then do not
    import each other in a circle, and the compiled build reads and appends to its own typed attributes
    (a record reached through a protocol would be read by a generic attribute lookup per resource)."""

    def __init__(
        self,
        patient_id: str | None,
        medications: Mapping[str, Mapping[str, Any]],
        full_urls: Mapping[str, str] | None = None,
        birth: FhirDate | None = None,
    ) -> None:
        self.observations: list[Observation] = []
        self.conditions: list[Condition] = []
        self.medications: list[MedicationUse] = []
        self.procedures: list[Procedure] = []
        self.immunizations: list[Immunization] = []
        self.allergies: list[Allergy] = []
        self.unreadable: list[str] = []
        self.ignored: list[str] = []
        self.earlier_fhir: list[str] = []
        #: Resources of the kinds read whose subject or patient is another patient (in ``ignored`` too).
        self.about_other_patients = 0
        self.patient_id = patient_id
        self.belongs = _Belonging(patient_id, full_urls or {})
        # The last lean subject's JSON text and whether it is about this patient: a record's resources
        # share one reference, compared as text (no bytes copy, no hash) before the answers by text.
        self.last_subject: Raw | None = None
        self.last_about = False
        self.subject_texts: dict[bytes, bool] = {}  # a lean subject's JSON text → about this patient?

        def medication(r: Mapping[str, Any]) -> MedicationUse | None:
            return parse.medication_use(r, medications)

        def condition(r: Mapping[str, Any]) -> Condition | None:
            return parse.condition(r, birth)  # an onset given as an age counts from the birth date

        self.readers: dict[str, tuple[Callable[[Mapping[str, Any]], Any], list[Any]]] = {
            "Observation": (parse.observation, self.observations),
            "Condition": (condition, self.conditions),
            "MedicationStatement": (medication, self.medications),
            "MedicationRequest": (medication, self.medications),
            "MedicationAdministration": (medication, self.medications),
            "Procedure": (parse.procedure, self.procedures),
            "Immunization": (parse.immunization, self.immunizations),
            "AllergyIntolerance": (parse.allergy, self.allergies),
        }

    def read(self, resources: Iterable[Mapping[str, Any]]) -> None:
        for resource in resources:
            if type(resource) is LeanResource:
                rtype = resource.resourceType
                if rtype == "Observation":
                    self._lean_observation(resource)
                    continue
                if type(rtype) is not str or rtype not in self.readers:
                    if rtype in EARLIER_FHIR_TYPES or _earlier_fhir_version(resource):
                        self._earlier(str(rtype), resource)
                    continue
                # Most of its fields will be read: one plain dict at once, cheaper than field by field.
                plain = guarded(plain_dict, resource)
                if plain is None:
                    self.unreadable.append(parse.ref_of(resource))
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
                if subject == self.last_subject:
                    about = self.last_about
                else:
                    text = bytes(subject)
                    about = self.subject_texts.get(text)
                    if about is None:
                        about = guarded(self.belongs, resource)
                        if about is not None:
                            self.subject_texts[text] = about
                    if about is not None:
                        self.last_subject, self.last_about = subject, about
            else:
                about = guarded(self.belongs, resource)
        self._observation(resource, ref, about, resource.status, True)

    def _dict_observation(self, resource: dict[str, Any]) -> None:
        ref = _observation_ref(resource.get("id"))
        self._observation(resource, ref, self.belongs(resource), resource.get("status"), False)

    def _observation(
        self,
        resource: Mapping[str, Any],
        ref: str,
        about: bool | None,
        status: object,
        lean: bool,
    ) -> None:
        if about is None:
            self.unreadable.append(ref)
            return
        if not about:
            self.about_other_patients += 1
            self.ignored.append(ref)
            return
        if status.lower() in _IGNORED_OBSERVATION if type(status) is str else _is_ignored("Observation", resource):
            self.ignored.append(ref)
            return
        # :func:`guarded`, written out: a native call per Observation, not a call through a tuple of arguments.
        item: Observation | None
        try:
            if lean:
                item = parse.lean_observation(cast(LeanResource, resource), ref)
            else:
                item = parse.observation(resource, ref)
        except Exception:
            item = None
        if item is None:
            self.unreadable.append(ref)
        else:
            self._add_observation(resource, item)

    def _add_observation(self, resource: Mapping[str, Any], item: Observation) -> None:
        self.observations.append(item)
        # A panel: its components are results too. A lean resource is asked for its field (its ``in`` is a
        # Python method, and this runs once per Observation).
        if resource.component if type(resource) is LeanResource else "component" in resource:
            parts = guarded(parse.components, resource, item)
            if parts is None:
                self.unreadable.append(item.ref)
            else:
                self.observations.extend(parts)

    def _resource(self, rtype: str, resource: Mapping[str, Any]) -> None:
        entry = self.readers.get(rtype)
        if entry is None:
            if rtype in EARLIER_FHIR_TYPES or _earlier_fhir_version(resource):
                self._earlier(rtype, resource)
            return
        ref = parse.ref_of(resource)
        about, skip = guarded(self.belongs, resource), guarded(_is_ignored, rtype, resource)
        if about is None or skip is None:  # a field that cannot be read (lean JSON text)
            self.unreadable.append(ref)
            return
        if not about or skip:
            if not about:
                self.about_other_patients += 1
            self.ignored.append(ref)
            return
        reader, target = entry
        # The Observation reader takes the reference made here.
        item = guarded(parse.observation, resource, ref) if rtype == "Observation" else guarded(reader, resource)
        if item is None:
            self.unreadable.append(ref)
        elif rtype == "Observation":
            self._add_observation(resource, item)
        else:
            target.append(item)

    def _earlier(self, rtype: str, resource: Mapping[str, Any]) -> None:
        """A resource of an earlier FHIR version: listed when it is about this patient (or may be)."""
        about = guarded(self.belongs, resource)
        if about is False:
            self.about_other_patients += 1
        else:
            rid = resource.get("id")
            self.earlier_fhir.append(f"{rtype}/{rid if isinstance(rid, str) and rid else '(no id)'}")


def earlier_fhir_profile(resource: Mapping[str, Any]) -> bool:
    """Whether ``resource.meta.profile`` names a profile of FHIR STU3 or DSTU2."""
    meta = guarded(resource.get, "meta")
    profiles = meta.get("profile") if isinstance(meta, Mapping) else None
    return isinstance(profiles, list) and any(isinstance(p, str) and _EARLIER_PROFILE.search(p) for p in profiles)


def _earlier_fhir_version(resource: Mapping[str, Any]) -> bool:
    """A resource that states a fhirVersion (CapabilityStatement, StructureDefinition, …) of 1.0 or 3.0."""
    version = resource.get("fhirVersion")
    return isinstance(version, str) and _EARLIER_VERSION.match(version.strip()) is not None


def _observation_ref(rid: object) -> str:
    if type(rid) is str and rid:  # the decoders' own: a native concatenation, the same text
        return "Observation/" + rid
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
    """One copy of each resource (:func:`cds.fhir.resources.unique_resources`: the same rules as the
    prefetch step's), and the Patient and Medication ones by type (the record needs them before the
    rest)."""
    return by_type(unique_resources([resources]))


def choose_patient(patients: list[Mapping[str, Any]], patient_id: str | None) -> Mapping[str, Any] | None:
    if patient_id is not None:
        for p in patients:
            if p.get("id") == patient_id:
                return p
        return None
    return patients[0] if len(patients) == 1 else None


def _refers_to(target: str, patient_id: str, full_urls: Mapping[str, str]) -> bool:
    """Whether a reference names the patient: "Patient/id", a URL ending so (a version "/_history/n"
    after it), or the fullUrl of the patient's Bundle entry ("urn:uuid:…", as Synthea writes). A urn
    that names no Patient entry: other data where the patient's own entry has one, else (prefetched
    data, without fullUrls) it cannot be told and counts, as a reference without a target would."""
    if patient_id == NOBODY:
        return False
    named = full_urls.get(target)
    if named is not None:
        return named == patient_id
    if target.startswith("urn:"):
        return patient_id not in full_urls.values()
    return referenced_patient_id(target) == patient_id


def referenced_patient_id(target: str) -> str | None:
    """The Patient id a reference text names: "Patient/id", or a URL ending so (a version "/_history/n"
    after it); None for a reference to anything else (another resource type, a urn). The one reading of a
    patient reference, for the record and for grouping a population by patient (cds.prescreen.keys)."""
    parts = target.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        del parts[-2:]
    if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
        return parts[-1]
    return None


class _Belonging:
    """Whether a resource is about this patient: a resource about another patient never counts (a
    mixed-up prefetch must not leak into a verdict). The answer per reference text is remembered (a
    record's resources share one subject reference)."""

    def __init__(self, patient_id: str | None, full_urls: Mapping[str, str]) -> None:
        self.patient_id = patient_id
        self.full_urls = full_urls
        self.seen: dict[str, bool] = {}

    def __call__(self, resource: Mapping[str, Any]) -> bool:
        patient_id = self.patient_id
        if patient_id is None:
            return True
        for name in SUBJECT_FIELDS:
            ref = resource.get(name)
            if type(ref) is dict or isinstance(ref, Mapping):
                target = ref.get("reference")
                if type(target) is str and target:
                    answer = self.seen.get(target)
                    if answer is None:
                        answer = self.seen[target] = _refers_to(target, patient_id, self.full_urls)
                    return answer
                if isinstance(target, str) and target:
                    return _refers_to(target, patient_id, self.full_urls)
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
