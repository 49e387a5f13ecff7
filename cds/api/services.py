"""The CDS services this server offers and the state the routes share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from cds.demo import DemoData
from cds.settings import Settings
from cds.store import FeedbackStore
from hooks.base import SERVICE_ID, Evaluator, HookDefinition, resource_types, smart_scopes, smart_v1_scopes

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


def trial_eligibility_service(hook: HookDefinition, trials: Mapping[str, Any]) -> ServiceDefinition:
    names = "; ".join(f"{t.short_name} ({t.title})" for t in trials.values())
    text = hook.service_text(len(trials), names)
    return ServiceDefinition(
        id=text.id,
        hook=hook,
        title=text.title,
        description=text.description,
        resource_types=resource_types(trials),
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
