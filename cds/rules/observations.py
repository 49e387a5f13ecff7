"""Coded and numeric findings from Observation (performance status, stage, biomarkers)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from cds.engine.context import EvalContext
from cds.engine.formatting import number
from cds.engine.result import RuleResult
from cds.engine.rules.observations import ObservationCriterion
from cds.rules.base import OUTCOME_TEXT, Describer, LeafRule, Outcome, StrictModel, Window, span_of, window_text


class NumericRange(StrictModel):
    min: float | None = None
    max: float | None = None
    gt: float | None = None

    def describe(self) -> str:
        if self.gt is not None:
            return f"> {number(self.gt)}"
        if self.min is not None and self.max is not None:
            return f"{number(self.min)}–{number(self.max)}" if self.min != self.max else number(self.min)
        if self.min is not None:
            return f"≥ {number(self.min)}"
        if self.max is not None:
            return f"≤ {number(self.max)}"
        return ""


class ObservationRule(LeafRule):
    type: Literal["observation"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    window: Window | None = None
    met_values: list[str] = Field(default_factory=list)
    not_met_values: list[str] = Field(default_factory=list)
    numeric_values: str | None = None  # value set whose codes carry the number (ECOG answers)
    met_range: NumericRange | None = None
    not_met_range: NumericRange | None = None
    other: Outcome = "unknown"
    when_missing: Outcome = "unknown"
    below_detection: Outcome = "unknown"  # a quantity written "<N": below the assay's limit
    order: str | None = None
    # "Has a result": met by any final result in the window, whatever its value. None recorded is then
    # not met unless the rule says otherwise (`when_missing` defaults to not_met for such a rule).
    presence: bool = False

    @model_validator(mode="before")
    @classmethod
    def _presence_absence(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("presence") is True and "when_missing" not in data:
            return {**data, "when_missing": "not_met"}
        return data

    @model_validator(mode="after")
    def _presence_reads_no_value(self) -> ObservationRule:
        valued = self.met_values or self.not_met_values or self.met_range or self.not_met_range
        if self.presence and valued:
            raise ValueError("a `presence` rule is met by any result: it takes no met_/not_met_ values or ranges")
        return self

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def plan(self) -> ObservationCriterion:
        return ObservationCriterion(
            label=self.label,
            valuesets=self.valuesets,
            window=span_of(self.window),
            met_values=self.met_values,
            not_met_values=self.not_met_values,
            numeric_values=self.numeric_values,
            met_range=self.met_range,
            not_met_range=self.not_met_range,
            other=self.other,
            when_missing=self.when_missing,
            below_detection=self.below_detection,
            order=self.order,
            presence=self.presence,
        )

    def resource_types(self) -> tuple[str, ...]:
        return ("Observation",)

    def valueset_names(self) -> list[str]:
        names = self.valuesets + self.met_values + self.not_met_values
        return [*names, self.numeric_values] if self.numeric_values else names

    def describe(self, page: Describer) -> str:
        text = f"{self.label[:1].upper()}{self.label[1:]} ({page.titles(self.valuesets)})"
        if self.presence:
            window = f" within {window_text(self.window)}" if self.window is not None else " (ever)"
            return text + f": any final result{window}; none recorded: {OUTCOME_TEXT[self.when_missing]}"
        if self.window is not None:
            text += f", latest within {window_text(self.window)}"
        met = []
        if self.met_values:
            met.append(page.titles(self.met_values))
        if self.met_range is not None:
            scored = f" (scored from {page.title(self.numeric_values)})" if self.numeric_values else ""
            met.append(f"value {self.met_range.describe()}{scored}")
        not_met = []
        if self.not_met_values:
            not_met.append(page.titles(self.not_met_values))
        if self.not_met_range is not None:
            not_met.append(f"value {self.not_met_range.describe()}")
        if met:
            text += "; met when " + " or ".join(met)
        if not_met:
            text += "; not met when " + " or ".join(not_met)
        if self.other != "unknown":
            text += f"; any other answer {OUTCOME_TEXT[self.other]}"
        if self.below_detection != "unknown":
            text += f"; below the assay's detection limit {OUTCOME_TEXT[self.below_detection]}"
        if self.when_missing == "unknown":
            text += "; none recorded: to confirm" + (f" (order: {self.order})" if self.order else "")
        else:
            text += f"; none recorded: {OUTCOME_TEXT[self.when_missing]}"
        return text
