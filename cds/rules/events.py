"""Procedures, immunizations, allergies, and the investigator's judgement calls."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from cds.engine.context import EvalContext
from cds.engine.result import RuleResult
from cds.engine.rules.events import AllergyCriterion, ImmunizationCriterion, JudgementCriterion, ProcedureCriterion
from cds.rules.base import OUTCOME_TEXT, Describer, LeafRule, Outcome, Window, span_of, window_text


class ProcedureRule(LeafRule):
    type: Literal["procedure"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    exclude_valuesets: list[str] = Field(default_factory=list)
    window: Window | None = None
    before_onset_of: list[str] = Field(default_factory=list)
    ended_more_than_months_before_onset: int | None = None
    when_found: Outcome = "met"

    orders_read: ClassVar[frozenset[str]] = frozenset({"Procedure"})

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def plan(self) -> ProcedureCriterion:
        return ProcedureCriterion(
            label=self.label,
            valuesets=self.valuesets,
            exclude_valuesets=self.exclude_valuesets,
            window=span_of(self.window),
            before_onset_of=self.before_onset_of,
            ended_more_than_months_before_onset=self.ended_more_than_months_before_onset,
            when_found=self.when_found,
        )

    def resource_types(self) -> tuple[str, ...]:
        return ("Procedure", "Condition")

    def valueset_names(self) -> list[str]:
        return self.valuesets + self.exclude_valuesets + self.before_onset_of

    def order_window(self) -> Window | None:
        return self.window

    def describe(self, page: Describer) -> str:
        window = f" within {window_text(self.window)}" if self.window else " (ever)"
        text = f"Procedure: {self.label}{window} ({page.titles(self.valuesets)})"
        if self.exclude_valuesets:
            text += f"; not counting {page.titles(self.exclude_valuesets)}"
        if self.before_onset_of:
            text += f"; before the onset of {page.titles(self.before_onset_of)}"
        if self.ended_more_than_months_before_onset is not None:
            text += f", ended more than {self.ended_more_than_months_before_onset} months before it"
        if self.when_found != "met":
            text += f"; if found, {OUTCOME_TEXT[self.when_found]}"
        return text


class ImmunizationRule(LeafRule):
    type: Literal["immunization"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    window: Window | None = None

    orders_read: ClassVar[frozenset[str]] = frozenset({"Immunization"})

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def plan(self) -> ImmunizationCriterion:
        return ImmunizationCriterion(label=self.label, valuesets=self.valuesets, window=span_of(self.window))

    def resource_types(self) -> tuple[str, ...]:
        return ("Immunization",)

    def valueset_names(self) -> list[str]:
        return list(self.valuesets)

    def order_window(self) -> Window | None:
        return self.window

    def describe(self, page: Describer) -> str:
        window = f" within {window_text(self.window)}" if self.window else " (ever)"
        return f"Immunization: {self.label}{window} ({page.titles(self.valuesets)})"


class AllergyRule(LeafRule):
    type: Literal["allergy"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    severe_only: bool = False
    when_severity_unknown: Outcome = "unknown"

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def plan(self) -> AllergyCriterion:
        return AllergyCriterion(
            label=self.label,
            valuesets=self.valuesets,
            severe_only=self.severe_only,
            when_severity_unknown=self.when_severity_unknown,
        )

    def resource_types(self) -> tuple[str, ...]:
        return ("AllergyIntolerance",)

    def valueset_names(self) -> list[str]:
        return list(self.valuesets)

    def describe(self, page: Describer) -> str:
        text = f"Allergy or intolerance: {self.label} ({page.titles(self.valuesets)})"
        if self.severe_only:
            text += f"; severe reactions only (severity not recorded: {OUTCOME_TEXT[self.when_severity_unknown]})"
        return text


class JudgementRule(LeafRule):
    type: Literal["judgement"]
    label: str
    conditions: list[str] = Field(default_factory=list)
    observations: list[str] = Field(default_factory=list)

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def plan(self) -> JudgementCriterion:
        return JudgementCriterion(label=self.label, conditions=self.conditions, observations=self.observations)

    def resource_types(self) -> tuple[str, ...]:
        # What the card lists for the investigator: the diagnoses and findings the rule names.
        types: list[str] = []
        if self.conditions:
            types.append("Condition")
        if self.observations:
            types.append("Observation")
        return tuple(types)

    def valueset_names(self) -> list[str]:
        return self.conditions + self.observations

    def describe(self, page: Describer) -> str:
        text = f"Investigator's judgement: {self.label}. The service never decides it"
        shown = self.conditions + self.observations
        if shown:
            text += f"; the card lists what the record holds ({page.titles(shown)})"
        return text
