"""What ``order-select`` and ``order-sign`` share: the ``draftOrders`` Bundle, the context fields both hooks
define (``userId``, ``patientId``, ``encounterId``, ``draftOrders``), and the hook object that turns such a
context into warnings about what these draft orders would change for the trials the patient may join.

CDS Hooks Library, order-select and order-sign (hookVersion 1.0): ``draftOrders`` is a FHIR Bundle of
request resources (MedicationRequest, ServiceRequest, NutritionOrder, VisionPrescription, …), usually with
status ``draft``; ``userId``, ``patientId`` and ``encounterId`` may be prefetch tokens, ``selections`` and
``draftOrders`` may not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cds.order_cards import order_warning_cards
from cds.orders import order_impacts
from hooks.base import FHIR_ID_PATTERN, SERVICE_ID, Decision, HookAnswer, HookCall, ServiceText, run
from hooks.patient_view import HOOK as PATIENT_VIEW
from hooks.patient_view import USER_ID_PATTERN

# Resources in draftOrders that are not orders but what orders refer to (MedicationRequest.medicationReference).
SUPPORTING_TYPES = frozenset({"Medication"})
# The fields that say whom a request resource is for (subject: MedicationRequest, ServiceRequest,
# DeviceRequest …; patient: NutritionOrder, VisionPrescription).
_SUBJECT_FIELDS = ("subject", "patient")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_FHIR_ID = re.compile(FHIR_ID_PATTERN)


class BundleEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    fullUrl: str | None = None
    resource: dict[str, Any]

    @field_validator("resource")
    @classmethod
    def _is_a_resource(cls, value: dict[str, Any]) -> dict[str, Any]:
        rtype = value.get("resourceType")
        if not isinstance(rtype, str) or not _RESOURCE_TYPE.match(rtype):
            raise ValueError("must be a FHIR resource with a resourceType")
        rid = value.get("id")
        if rid is not None and (not isinstance(rid, str) or not _FHIR_ID.match(rid)):
            raise ValueError("id must be a FHIR id")
        return value

    @property
    def reference(self) -> str | None:
        """``ResourceType/id``, as ``selections`` names it; None without an id."""
        rid = self.resource.get("id")
        return f"{self.resource['resourceType']}/{rid}" if isinstance(rid, str) else None


class DraftOrdersBundle(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    resourceType: Literal["Bundle"]
    entry: list[BundleEntry] = Field(default_factory=list)

    def resources(self) -> list[dict[str, Any]]:
        return [e.resource for e in self.entry]


def _subject_patient(resource: Mapping[str, Any]) -> str | None:
    """The Patient id a resource names as its subject; None when it names none (or a urn: reference)."""
    for name in _SUBJECT_FIELDS:
        ref = resource.get(name)
        target = ref.get("reference") if isinstance(ref, Mapping) else None
        if isinstance(target, str) and target and not target.startswith("urn:"):
            parts = target.rstrip("/").rsplit("/", 2)[-2:]
            return parts[1] if len(parts) == 2 and parts[0] == "Patient" else ""
    return None


class OrderContext(BaseModel):
    """The context fields order-select and order-sign share."""

    model_config = ConfigDict(extra="allow", frozen=True)

    userId: str = Field(pattern=USER_ID_PATTERN)
    patientId: str = Field(pattern=FHIR_ID_PATTERN)
    encounterId: str | None = Field(default=None, pattern=FHIR_ID_PATTERN)
    draftOrders: DraftOrdersBundle

    @model_validator(mode="after")
    def _orders_are_for_this_patient(self) -> OrderContext:
        for i, entry in enumerate(self.draftOrders.entry):
            subject = _subject_patient(entry.resource)
            if subject is not None and subject != self.patientId:
                raise ValueError(f"draftOrders.entry[{i}] is not for the patient in context (patientId)")
        return self

    def orders(self) -> list[dict[str, Any]]:
        """The draft orders the service should look at (order-sign: all of them)."""
        return [r for r in self.draftOrders.resources() if r["resourceType"] not in SUPPORTING_TYPES]

    def supporting(self) -> list[dict[str, Any]]:
        return [r for r in self.draftOrders.resources() if r["resourceType"] in SUPPORTING_TYPES]


@dataclass(frozen=True)
class OrderHook:
    """A hook whose context carries draft orders: same prefetch as patient-view, and a target that asks
    what those orders would change."""

    name: str
    context_model: type[OrderContext]
    #: What the clinician is doing when the hook is called ("selects", "is about to sign").
    doing: str

    def prefetch_templates(self, resource_types: Iterable[str]) -> dict[str, str]:
        return PATIENT_VIEW.prefetch_templates(resource_types)

    def service_text(self, trial_count: int, trial_names: str) -> ServiceText:
        plural = "s" if trial_count != 1 else ""
        return ServiceText(
            id=f"{SERVICE_ID}-{self.name}",
            title="Clinical trial eligibility: order check",
            description=(
                f"When the clinician {self.doing} an order (a MedicationRequest coded with RxNorm "
                "or CVX, or a ServiceRequest), warns if carrying it out would make a patient who may be "
                f"eligible for a clinical trial ineligible, naming the criterion and for how long ({trial_count} "
                f"trial{plural}: {trial_names})."
            ),
        )

    async def answer(self, call: HookCall) -> HookAnswer:
        """The use case: read the patient's data as patient-view does, evaluate every trial on the record as
        it is and as it would be with each draft order carried out, and warn about each order that would
        rule out a patient who is not ruled out now."""
        context = call.context
        if not isinstance(context, OrderContext):
            raise TypeError(f"{self.name} needs an OrderContext")
        orders = context.orders()

        def decide(resources: list[Mapping[str, Any]]) -> Decision:
            results, impacts = order_impacts(
                list(call.trials.values()),
                resources,
                orders,
                patient_id=context.patientId,
                now=call.now,
                evaluate=call.evaluate,
            )
            chosen = order_warning_cards(
                impacts, base_url=call.base_url, patient_id=context.patientId, user_id=context.userId
            )
            return results, chosen

        # The Medications draftOrders carries (what its orders refer to) join the record.
        return await run(call, user_id=context.userId, decide=decide, extra_resources=context.supporting())
