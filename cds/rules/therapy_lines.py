"""Lines of prior therapy, counted from MedicationStatement, MedicationRequest and MedicationAdministration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cds.engine.context import EvalContext
from cds.engine.result import RuleResult
from cds.engine.rules.therapy_lines import evaluate_therapy_lines
from cds.rules.base import Describer, LeafRule, Outcome, StrictModel


class LineCount(StrictModel):
    """How many lines meet the rule, both bounds included; at least one bound."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> LineCount:
        if self.min is None and self.max is None:
            raise ValueError("a count gives `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("`min` is above `max`")
        return self

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min} to {self.max}" if self.min != self.max else f"exactly {self.min}"
        if self.min is not None:
            return f"at least {self.min}"
        return f"at most {self.max}"


class TherapyLinesRule(LeafRule):
    """`type: therapy_lines`: the number of lines of a class of drugs (optionally begun after the onset of a
    diagnosis), and whether one of them contained a drug of `including`."""

    type: Literal["therapy_lines"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    exclude_valuesets: list[str] = Field(default_factory=list)
    after_onset_of: list[str] = Field(default_factory=list)
    onset_names: Literal["always", "uncoded"] = "uncoded"
    count: LineCount
    including: list[str] = Field(default_factory=list)
    regimen_days: int = Field(default=28, ge=0)
    gap_days: int = Field(default=120, ge=1)
    when_missing: Outcome | None = None  # None: no exposure recorded is zero lines

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_therapy_lines(self, ctx)

    def resource_types(self) -> tuple[str, ...]:
        types = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
        return (*types, "Condition") if self.after_onset_of else types

    def valueset_names(self) -> list[str]:
        return self.valuesets + self.exclude_valuesets + self.after_onset_of + self.including

    def describe(self, page: Describer) -> str:
        text = f"Lines of therapy: {self.label} ({page.titles(self.valuesets)}), {self.count.describe()}"
        if self.after_onset_of:
            text += f", begun on or after the onset of {page.titles(self.after_onset_of)}"
        if self.including:
            text += f"; at least one of them with {page.titles(self.including)}"
        if self.exclude_valuesets:
            text += f"; not counting {page.titles(self.exclude_valuesets)}"
        text += (
            f"; drugs begun within {self.regimen_days} days of a line's start are one regimen, a drug of the"
            f" regimen continues it, a new drug later or any drug after {self.gap_days} days without one starts"
            " the next line"
        )
        if self.when_missing is not None:
            text += f"; none of these drugs recorded: {self.when_missing.replace('_', ' ')}"
        return text
