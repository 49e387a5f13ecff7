"""Resources outside any patient's compartment that a patient's record reads: the Medications that
medication statements, requests and administrations name by reference."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The resource types outside the patient compartment that a record reads (cds.record: a Medication named
#: by ``medicationReference``). Practitioners, Organizations, Locations… are read by no rule: not kept.
SHARED_TYPES = frozenset({"Medication"})


@dataclass(frozen=True)
class SharedResources:
    """The shared resources of a population, Medications by id. Picklable (a process pool and Spark
    ship it to their workers)."""

    medications: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_resources(cls, resources: Iterable[Mapping[str, Any]]) -> SharedResources:
        medications: dict[str, Mapping[str, Any]] = {}
        for r in resources:
            rid = r.get("id")
            if r.get("resourceType") == "Medication" and isinstance(rid, str) and rid:
                medications.setdefault(rid, r)
        return cls(medications)

    def referenced_by(self, resources: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The Medications the resources name by ``medicationReference``, each once, in first-named order."""
        return self.named(medication_reference(r) for r in resources)

    def named(self, references: Iterable[str | None]) -> list[Mapping[str, Any]]:
        """The Medications of these reference texts ("Medication/<id>", a URL ending so), each once."""
        found: dict[str, Mapping[str, Any]] = {}
        if not self.medications:
            return []
        for ref in references:
            if ref and not ref.startswith("#"):  # "#id": contained in the resource itself
                rid = ref.rsplit("/", 1)[-1]  # as the record resolves it (cds.record.parse.referenced_medication)
                medication = self.medications.get(rid)
                if medication is not None:
                    found.setdefault(rid, medication)
        return list(found.values())


def medication_reference(resource: Mapping[str, Any]) -> str | None:
    """The reference text of ``resource.medicationReference``, if any."""
    ref = resource.get("medicationReference")
    if ref is None:  # most resources (a quick way out: this runs once per resource of an export)
        return None
    target = ref.get("reference") if isinstance(ref, dict | Mapping) else None
    return target if isinstance(target, str) and target else None
