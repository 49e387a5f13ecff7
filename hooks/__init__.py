"""CDS Hooks hook definitions: one module per hook.

A hook module knows CDS Hooks (its context, its prefetch templates) and turns a validated context into an
:class:`EvaluationTarget` — *what* to evaluate. It knows nothing of how criteria are evaluated.
``patient-view`` asks for the patient to be screened; ``order-select`` and ``order-sign`` ask what their
draft orders would change (``EvaluationTarget.orders``). A new hook is a module registered in :data:`HOOKS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

# A FHIR resource id (FHIR R4 `id` datatype), used for ids that end up in URLs and prefetch queries.
FHIR_ID_PATTERN = r"^[A-Za-z0-9\-\.]{1,64}$"


@dataclass(frozen=True)
class EvaluationTarget:
    """What a hook call asks the service to evaluate."""

    patient_id: str
    user_id: str
    # Context fields eligible as prefetch tokens (root-level primitives), e.g. {"patientId": "123"}.
    tokens: Mapping[str, str]
    # Resources the context carries itself (e.g. Medications in draftOrders), added to the record.
    extra_resources: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    # None: screen the patient. A tuple (possibly empty): warn about what these draft orders would change.
    orders: tuple[Mapping[str, Any], ...] | None = None


class HookDefinition(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def context_model(self) -> type[BaseModel]: ...

    def prefetch_templates(self, resource_types: Iterable[str]) -> dict[str, str]: ...

    def target(self, context: BaseModel) -> EvaluationTarget: ...


def prefetch_key(resource_type: str) -> str:
    """The prefetch key for a resource type: ``Patient`` → ``patient``, ``MedicationRequest`` →
    ``medicationRequest``."""
    return resource_type[:1].lower() + resource_type[1:]


def smart_scopes(resource_types: Iterable[str]) -> list[str]:
    """SMART App Launch v2 patient-level read+search scopes (``patient/Observation.rs``) for the types."""
    return [f"patient/{t}.rs" for t in sorted(set(resource_types))]


def smart_v1_scopes(resource_types: Iterable[str]) -> list[str]:
    """The SMART v1 equivalents (``patient/Observation.read``)."""
    return [f"patient/{t}.read" for t in sorted(set(resource_types))]


def _registry() -> dict[str, HookDefinition]:
    from hooks.order_select import HOOK as ORDER_SELECT
    from hooks.order_sign import HOOK as ORDER_SIGN
    from hooks.patient_view import HOOK as PATIENT_VIEW

    return {h.name: h for h in (PATIENT_VIEW, ORDER_SELECT, ORDER_SIGN)}


HOOKS: dict[str, HookDefinition] = _registry()

__all__ = [
    "FHIR_ID_PATTERN",
    "HOOKS",
    "EvaluationTarget",
    "HookDefinition",
    "prefetch_key",
    "smart_scopes",
    "smart_v1_scopes",
]
