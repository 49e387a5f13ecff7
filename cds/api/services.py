"""The CDS services this server offers and the state the routes share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from cds.demo import DemoData
from cds.settings import Settings
from cds.store import FeedbackStore
from hooks.base import Evaluator, HookDefinition, resource_types, smart_scopes, smart_v1_scopes

SERVICE_ID = "trial-eligibility"

__all__ = ["SERVICE_ID", "AppState", "Evaluator", "ServiceDefinition", "trial_eligibility_services"]


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: HookDefinition
    title: str
    description: str
    resource_types: frozenset[str]
    #: The hook's prefetch templates for these resource types (made once, read by every call).
    templates: dict[str, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "templates", self.hook.prefetch_templates(self.resource_types))

    def usage_requirements(self) -> str:
        types = self.resource_types | {"Patient"}
        return (
            "Read access to the patient's record, as prefetch data or through fhirServer with a "
            "fhirAuthorization token granting the SMART scopes "
            + " ".join(smart_scopes(types))
            + " (SMART v1: "
            + " ".join(smart_v1_scopes(types))
            + ")."
        )

    def discovery(self) -> dict[str, Any]:
        return {
            "hook": self.hook.name,
            "title": self.title,
            "description": self.description,
            "id": self.id,
            "prefetch": self.templates,
            "usageRequirements": self.usage_requirements(),
        }


# The order hooks: the service id's suffix and what the clinician is doing when it is called.
_ORDER_HOOKS: dict[str, str] = {"order-select": "selects", "order-sign": "is about to sign"}


def trial_eligibility_service(hook: HookDefinition, trials: Mapping[str, Any]) -> ServiceDefinition:
    types = resource_types(trials)
    names = "; ".join(f"{t.short_name} ({t.title})" for t in trials.values())
    plural = "s" if len(trials) != 1 else ""
    if hook.name in _ORDER_HOOKS:
        return ServiceDefinition(
            id=f"{SERVICE_ID}-{hook.name}",
            hook=hook,
            title="Clinical trial eligibility: order check",
            description=(
                f"When the clinician {_ORDER_HOOKS[hook.name]} an order (a MedicationRequest coded with RxNorm "
                "or CVX, or a ServiceRequest), warns if carrying it out would make a patient who may be "
                f"eligible for a clinical trial ineligible, naming the criterion and for how long ({len(trials)} "
                f"trial{plural}: {names})."
            ),
            resource_types=types,
        )
    return ServiceDefinition(
        id=SERVICE_ID,
        hook=hook,
        title="Clinical trial eligibility screening",
        description=(
            "Screens the patient in context against the eligibility criteria of "
            f"{len(trials)} clinical trial{plural} from coded FHIR R4 data, and "
            f"returns a card for each trial the patient may be eligible for: {names}."
        ),
        resource_types=types,
    )


def trial_eligibility_services(
    hooks: Mapping[str, HookDefinition], trials: Mapping[str, Any]
) -> dict[str, ServiceDefinition]:
    """One service per hook, by id, on the same trials: patient-view screens, the order hooks warn."""
    services = [trial_eligibility_service(hook, trials) for hook in hooks.values()]
    return {s.id: s for s in services}


@dataclass
class AppState:
    settings: Settings
    trials: Mapping[str, Any]
    store: FeedbackStore
    services: dict[str, ServiceDefinition]
    evaluate: Evaluator
    demo: DemoData | None = None
    #: The FHIR client shared by all requests, open while the app runs (its lifespan); None outside it,
    #: and then each request that fetches opens its own.
    http: httpx.AsyncClient | None = None
