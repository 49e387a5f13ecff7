"""Medication exposure from MedicationStatement, MedicationRequest and MedicationAdministration."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from cds.engine.context import EvalContext
from cds.engine.formatting import number
from cds.engine.result import RuleResult
from cds.engine.rules.medications import MedicationCriterion
from cds.rules.base import (
    Describer,
    Horizon,
    LeafRule,
    SettingsKeys,
    StrictModel,
    Window,
    horizon_span,
    horizon_text,
    span_of,
    window_text,
)


class DoseLimit(StrictModel):
    reference: str = "prednisone"
    reference_mg: float = 5.0  # the value set's `value` is the dose equivalent to this many mg
    max_mg_per_day: float  # met when the daily equivalent is above this


class MedicationRule(LeafRule):
    type: Literal["medication"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    exclude_valuesets: list[str] = Field(default_factory=list)
    window: Window | None = None  # None: ever
    systemic_only: bool = False
    route_unknown: Literal["systemic", "unknown"] = "systemic"
    dose: DoseLimit | None = None
    horizon: Horizon = None  # None: the trial's `horizons.medication`
    # Only a use that has begun by the evaluation date is exposure (a course dated to start later is not).
    started_by_evaluation: bool = False
    # Condition value sets naming uses that do not count: a use whose reason (reasonCode, or the Condition
    # its reasonReference names) is in one of them is not exposure (replacement steroids).
    except_for: list[str] = Field(default_factory=list)

    orders_read: ClassVar[frozenset[str]] = frozenset({"MedicationRequest"})

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def result_key(self, settings: SettingsKeys) -> str:
        # The trial's medication horizon, read only where the rule has none of its own.
        return f"medication:{self.model_dump_json()}|{settings.medication_horizon if self.horizon is None else ''}"

    def plan(self) -> MedicationCriterion:
        return MedicationCriterion(
            label=self.label,
            valuesets=self.valuesets,
            exclude_valuesets=self.exclude_valuesets,
            window=span_of(self.window),
            systemic_only=self.systemic_only,
            route_unknown=self.route_unknown,
            dose=self.dose,
            horizon=horizon_span(self.horizon),
            started_by_evaluation=self.started_by_evaluation,
            except_for=self.except_for,
        )

    def resource_types(self) -> tuple[str, ...]:
        return ("MedicationStatement", "MedicationRequest", "MedicationAdministration")

    def valueset_names(self) -> list[str]:
        return self.valuesets + self.exclude_valuesets + self.except_for

    def order_window(self) -> Window | None:
        return self.window

    def describe(self, page: Describer) -> str:
        window = f" within {window_text(self.window)}" if self.window else " (ever)"
        text = f"Medication: {self.label}{window} ({page.titles(self.valuesets)})"
        if self.exclude_valuesets:
            text += f"; not counting {page.titles(self.exclude_valuesets)}"
        if self.window is not None:
            text += horizon_text(self.horizon)
        if self.systemic_only:
            unknown = "counts as systemic" if self.route_unknown == "systemic" else "left to confirm"
            text += f"; systemic routes only (oral, IV, IM, SC; route not recorded: {unknown})"
        if self.started_by_evaluation:
            text += "; only once started (a start dated after the evaluation date is not exposure)"
        if self.except_for:
            text += f"; not when taken for {page.titles(self.except_for)}"
        if self.dose is not None:
            text += (
                f"; only above {number(self.dose.max_mg_per_day)} mg/day {self.dose.reference}-equivalent "
                f"(equivalence: the dose equal to {number(self.dose.reference_mg)} mg {self.dose.reference})"
            )
        return text
