"""The CDS services this server offers and the state the routes share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import httpx

from cds.demo import DemoData
from cds.settings import Settings
from cds.store import FeedbackStore
from cds.valuesets import ValueSetLibrary, default_library
from hooks.base import SERVICE_ID, Evaluator, HookDefinition, resource_types, smart_scopes, smart_v1_scopes

__all__ = [
    "SERVICE_ID",
    "AppState",
    "Evaluator",
    "ServedPortfolio",
    "ServiceDefinition",
    "served_portfolio",
    "trial_eligibility_services",
]


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


@dataclass(frozen=True)
class ServedPortfolio:
    """What the routes read of the trials, made whole before it is served: a reload builds a new one and
    swaps :attr:`AppState.served`, so a request that took the old one finishes on it."""

    #: Every trial by id, closed ones too (the trial pages list them).
    trials: Mapping[str, Any]
    #: The trials screened and carded (``status: open``); the services describe these.
    open_trials: Mapping[str, Any]
    services: dict[str, ServiceDefinition]
    evaluate: Evaluator
    library: ValueSetLibrary


def served_portfolio(
    hooks: Mapping[str, HookDefinition],
    trials: Mapping[str, Any],
    library: ValueSetLibrary,
    evaluate: Evaluator | None = None,
) -> ServedPortfolio:
    """``evaluate`` defaults to the engine on ``library`` (the bundled one passed as the engine's default)."""
    if evaluate is None:
        from cds.engine import evaluate as engine_evaluate

        evaluate = engine_evaluate if library is default_library() else partial(engine_evaluate, library=library)
    open_trials = {tid: t for tid, t in trials.items() if getattr(t, "status", "open") == "open"}
    return ServedPortfolio(
        trials=dict(trials),
        open_trials=open_trials,
        services=trial_eligibility_services(hooks, open_trials),  # patient-view first: the demo uses the first
        evaluate=evaluate,
        library=library,
    )


@dataclass
class AppState:
    settings: Settings
    #: The one reference a reload swaps (cds.api.reload); read it once per request.
    served: ServedPortfolio
    store: FeedbackStore
    #: The evaluator given to create_app (tests), kept across reloads; None: the engine.
    custom_evaluate: Evaluator | None = None
    demo: DemoData | None = None
    #: The FHIR client shared by all requests, open while the app runs (its lifespan); None outside it,
    #: and then each request that fetches opens its own.
    http: httpx.AsyncClient | None = None

    @property
    def trials(self) -> Mapping[str, Any]:
        return self.served.trials

    @property
    def services(self) -> dict[str, ServiceDefinition]:
        return self.served.services

    @property
    def evaluate(self) -> Evaluator:
        return self.served.evaluate

    @evaluate.setter
    def evaluate(self, evaluate: Evaluator) -> None:
        """A stand-in evaluator (tests, tracing) for this portfolio and the ones a reload builds."""
        self.custom_evaluate = evaluate
        self.served = replace(self.served, evaluate=evaluate)
