"""The ``patient-view`` hook (CDS Hooks Library, hookVersion 1.0): the user has just opened a patient's
record.

Context: ``userId`` (REQUIRED, ``Practitioner|PractitionerRole|Patient|RelatedPerson/<id>``), ``patientId``
(REQUIRED) and ``encounterId`` (OPTIONAL); all three may be prefetch tokens.

The use case: read every resource type the trials need (prefetched, else fetched), screen the patient
against every trial, and return a card per trial the patient may be eligible for: at most
``TRIAL_CDS_MAX_CARDS`` of them, likely eligible first, then those with the fewest criteria to confirm,
and one card naming the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cds.cards import capped_cards
from cds.record import PatientRecord
from hooks.base import (
    FHIR_ID_PATTERN,
    SERVICE_ID,
    HookAnswer,
    HookCall,
    Screening,
    ServiceText,
    prefetch_key,
    run,
)

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
    context_model: type[BaseModel] = PatientViewContext

    def prefetch_templates(self, resource_types: Iterable[str]) -> dict[str, str]:
        """One template per resource type the trials read; the Patient read always comes first."""
        types = sorted(set(resource_types) - {"Patient"})
        return {prefetch_key(t): template_for(t) for t in ["Patient", *types]}

    def service_text(self, trial_count: int, trial_names: str) -> ServiceText:
        plural = "s" if trial_count != 1 else ""
        return ServiceText(
            id=SERVICE_ID,
            title="Clinical trial eligibility screening",
            description=(
                "Screens the patient in context against the eligibility criteria of "
                f"{trial_count} clinical trial{plural} from coded FHIR R4 data, and "
                "returns a card for each trial the patient may be eligible for, the most promising first "
                f"(beyond a few, the others are named on one card): {trial_names}."
            ),
        )

    async def answer(self, call: HookCall) -> HookAnswer:
        """The use case: screen the patient in context against every trial, a card per trial the patient
        may be eligible for (and, when settings say so, per trial the patient is not)."""
        context = call.context
        if not isinstance(context, PatientViewContext):
            raise TypeError("patient-view needs a PatientViewContext")

        def decide(resources: list[Mapping[str, Any]]) -> Screening:
            # One record for every trial of the call; the engine keeps its index on it (built by the first
            # trial's evaluation, read by the others: cds.engine.context.RecordIndex).
            record = PatientRecord.from_resources(resources, patient_id=context.patientId, deduplicated=True)
            results = [(trial, call.evaluate(trial, record, call.now)) for trial in call.trials.values()]
            chosen, overview = capped_cards(
                results,
                max_cards=call.settings.max_cards,
                base_url=call.base_url,
                patient_id=context.patientId,
                user_id=context.userId,
                show_not_eligible=call.settings.show_not_eligible,
            )
            return results, chosen, overview

        return await run(call, user_id=context.userId, decide=decide)


HOOK = PatientViewHook()
