"""The ``order-sign`` hook (CDS Hooks Library, hookVersion 1.0): the clinician is about to sign one or more
orders.

Context: ``userId`` (REQUIRED, ``Practitioner|PractitionerRole/<id>``), ``patientId`` (REQUIRED),
``encounterId`` (OPTIONAL) — all three may be prefetch tokens — and ``draftOrders`` (REQUIRED, a Bundle of
the orders to be signed; not a prefetch token). Every order in the Bundle is looked at.
"""

from __future__ import annotations

from pydantic import Field

from hooks.draft_orders import OrderContext, OrderHook

NAME = "order-sign"

USER_ID_PATTERN = r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-\.]{1,64}$"


class OrderSignContext(OrderContext):
    userId: str = Field(pattern=USER_ID_PATTERN)


HOOK = OrderHook(name=NAME, context_model=OrderSignContext, doing="is about to sign")
