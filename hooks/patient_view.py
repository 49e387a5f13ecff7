"""The ``patient-view`` hook (CDS Hooks Library, hookVersion 1.0): the user has just opened a patient's
record.

Context: ``userId`` (REQUIRED, ``Practitioner|PractitionerRole|Patient|RelatedPerson/<id>``), ``patientId``
(REQUIRED) and ``encounterId`` (OPTIONAL); all three may be prefetch tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from hooks import FHIR_ID_PATTERN, EvaluationTarget, prefetch_key

NAME = "patient-view"

USER_ID_PATTERN = r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-\.]{1,64}$"


class PatientViewContext(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    userId: str = Field(pattern=USER_ID_PATTERN)
    patientId: str = Field(pattern=FHIR_ID_PATTERN)
    encounterId: str | None = Field(default=None, pattern=FHIR_ID_PATTERN)


def template_for(resource_type: str) -> str:
    """The prefetch template that fetches every resource of a type for the patient in context."""
    if resource_type == "Patient":
        return "Patient/{{context.patientId}}"
    return f"{resource_type}?patient={{{{context.patientId}}}}"


@dataclass(frozen=True)
class PatientViewHook:
    name: str = NAME

    @property
    def context_model(self) -> type[BaseModel]:
        return PatientViewContext

    def prefetch_templates(self, resource_types: Iterable[str]) -> dict[str, str]:
        """One template per resource type the trials read; the Patient read always comes first."""
        types = sorted(set(resource_types) - {"Patient"})
        return {prefetch_key(t): template_for(t) for t in ["Patient", *types]}

    def target(self, context: BaseModel) -> EvaluationTarget:
        if not isinstance(context, PatientViewContext):
            raise TypeError("patient-view needs a PatientViewContext")
        tokens = {"userId": context.userId, "patientId": context.patientId}
        if context.encounterId is not None:
            tokens["encounterId"] = context.encounterId
        return EvaluationTarget(patient_id=context.patientId, user_id=context.userId, tokens=tokens)


HOOK = PatientViewHook()
