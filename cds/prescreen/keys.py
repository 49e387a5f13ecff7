"""Whose resource is this: the Patient id a resource belongs to, to group a population by patient."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from cds.record.reading import SUBJECT_FIELDS, referenced_patient_id

#: The fields that name a resource's patient: the record's own (subject, patient), then Coverage's.
PATIENT_FIELDS = (*SUBJECT_FIELDS, "beneficiary")


def patient_key(resource: Mapping[str, Any], full_urls: Mapping[str, str] | None = None) -> str | None:
    """The id of the Patient ``resource`` belongs to: a Patient's own id; else the Patient its subject,
    patient or beneficiary names ("Patient/<id>", an absolute URL ending so, or — given ``full_urls``, a
    Bundle's Patient entries fullUrl → id — a fullUrl such as "urn:uuid:…"). None for a resource outside
    any patient's compartment (Practitioner, Organization, Location, Medication…), about something else
    than a patient (a Group, a Device), or whose reference cannot be resolved (a urn without its Bundle)."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) and rid else None
    for name in PATIENT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, dict | Mapping):  # dict first: an instance check against an ABC is slow
            target = ref.get("reference")
            if isinstance(target, str) and target:
                return reference_key(target, full_urls)
    return None


def reference_key(target: str, full_urls: Mapping[str, str] | None = None) -> str | None:
    """The Patient id a reference text names (see :func:`patient_key`)."""
    if full_urls:
        named = full_urls.get(target)
        if named is not None:
            return named
    if target.startswith("urn:"):
        return None
    return referenced_patient_id(target)


class KeyFields(msgspec.Struct):
    """The fields of an NDJSON line that say where its resource goes (PATIENT_FIELDS among them, and the
    Medication it names); msgspec skips the rest of the JSON text unread."""

    resourceType: Any = None
    id: Any = None
    subject: Any = None
    patient: Any = None
    beneficiary: Any = None
    medicationReference: Any = None


_KEY_DECODER = msgspec.json.Decoder(KeyFields)


def key_fields(line: bytes) -> tuple[Any, dict[str, Any]]:
    """An NDJSON line's resourceType and the mapping of its key fields (raises msgspec.DecodeError or
    ValidationError for a line that is not a JSON object)."""
    f = _KEY_DECODER.decode(line)
    # Spelt out rather than a loop over the struct's fields: this runs once per line of an export.
    subset = {
        "resourceType": f.resourceType,
        "id": f.id,
        "subject": f.subject,
        "patient": f.patient,
        "beneficiary": f.beneficiary,
        "medicationReference": f.medicationReference,
    }
    return f.resourceType, subset


def names_anyone(resource: Mapping[str, Any]) -> bool:
    """Whether the resource names a patient at all (a Bundle's resource that names nobody is each of the
    Bundle's Patients', as `trial-cds screen` reads it)."""
    for name in PATIENT_FIELDS:
        ref = resource.get(name)
        if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str) and ref["reference"]:
            return True
    return False
