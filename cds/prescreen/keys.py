"""Whose resource is this: the Patient id a resource belongs to, to group a population by patient."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
        if isinstance(ref, Mapping):
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
