"""CDS Hooks hooks: one module per hook, each the use case of its hook (what it reads, how it evaluates,
which cards it returns), written against :mod:`hooks.base`. A new hook is a module with a ``HOOK`` and its
line in :data:`HOOKS`; the HTTP layer serves every hook registered here, with no edit of its own.
"""

from __future__ import annotations

from hooks.base import HookDefinition
from hooks.order_select import HOOK as ORDER_SELECT
from hooks.order_sign import HOOK as ORDER_SIGN
from hooks.patient_view import HOOK as PATIENT_VIEW

#: The hooks this server answers, by name; patient-view first (the demo uses the first service).
HOOKS: dict[str, HookDefinition] = {h.name: h for h in (PATIENT_VIEW, ORDER_SELECT, ORDER_SIGN)}

__all__ = ["HOOKS"]
