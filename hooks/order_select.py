"""The ``order-select`` hook (CDS Hooks Library, hookVersion 1.0): the clinician has just selected one or
more orders, not yet signed.

Context: ``userId`` (REQUIRED, ``Practitioner|PractitionerRole|Patient|RelatedPerson/<id>``), ``patientId``
(REQUIRED), ``encounterId`` (OPTIONAL) — all three may be prefetch tokens — ``selections`` (REQUIRED,
``ResourceType/id`` of the newly selected orders) and ``draftOrders`` (REQUIRED, a Bundle of every unsigned
order of the session, the selected ones included). Decision support looks at the selected orders only;
each selection must name an entry of ``draftOrders``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from hooks.draft_orders import SUPPORTING_TYPES, OrderContext, OrderHook

NAME = "order-select"

SELECTION_PATTERN = r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-\.]{1,64}$"


class OrderSelectContext(OrderContext):
    selections: Annotated[list[Annotated[str, Field(pattern=SELECTION_PATTERN)]], Field(min_length=1)]

    @model_validator(mode="after")
    def _selections_are_draft_orders(self) -> OrderSelectContext:
        known = {e.reference for e in self.draftOrders.entry if e.reference is not None}
        for i, selection in enumerate(self.selections):
            if selection not in known:
                raise ValueError(f"selections[{i}] names no resource in draftOrders")
        return self

    def orders(self) -> list[dict[str, Any]]:
        chosen = set(self.selections)
        return [
            e.resource
            for e in self.draftOrders.entry
            if e.reference in chosen and e.resource["resourceType"] not in SUPPORTING_TYPES
        ]


HOOK = OrderHook(name=NAME, context_model=OrderSelectContext, doing="selects")
