"""Diagnoses from Condition."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cds.engine.context import EvalContext
from cds.engine.result import RuleResult
from cds.engine.rules.conditions import ConditionCriterion
from cds.rules.base import (
    OUTCOME_TEXT,
    Describer,
    Horizon,
    LeafRule,
    Outcome,
    SettingsKeys,
    StrictModel,
    Window,
    horizon_span,
    horizon_text,
    span_of,
    window_text,
)

_STATUS_TEXT = {
    "active": "active",
    "history": "past (resolved or inactive)",
    "any": "active or past",
}


class SeverityMap(StrictModel):
    met: list[str] = Field(default_factory=list)
    not_met: list[str] = Field(default_factory=list)
    missing: Outcome = "unknown"
    # A CTCAE grade written on the Condition ("Grade 2 peripheral neuropathy"): met from this grade up.
    min_grade: int | None = Field(default=None, ge=1, le=5)


class ConditionRule(LeafRule):
    type: Literal["condition"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    exclude_valuesets: list[str] = Field(default_factory=list)
    status: Literal["active", "history", "any"] = "any"
    clinical_status: list[str] = Field(default_factory=list)  # only these clinicalStatus codes, if given
    onset_within: Window | None = None
    active_within: Window | None = None  # active now, or abated within the window
    when_found: Outcome = "met"
    # "uncoded": a diagnosis's words count only when it has no standard code; "always": for concepts no
    # code expresses (e.g. "locally recurrent"), read the words of coded diagnoses too.
    names: Literal["always", "uncoded"] = "uncoded"
    severity: SeverityMap | None = None
    horizon: Horizon = None  # None: the trial's `horizons.condition`
    # What nature bounds (a pregnancy lasts at most ~10 months): an entry whose dates are all older than
    # this is history, whatever its status says.
    lasts_at_most: Window | None = None
    # No entry of the diagnosis at all: not met (absence is the answer), or left to confirm.
    when_missing: Outcome = "not_met"

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def result_key(self, settings: SettingsKeys) -> str:
        # The trial's condition horizon, read only where the rule has none of its own.
        return f"condition:{self.model_dump_json()}|{settings.condition_horizon if self.horizon is None else ''}"

    def plan(self) -> ConditionCriterion:
        return ConditionCriterion(
            label=self.label,
            valuesets=self.valuesets,
            exclude_valuesets=self.exclude_valuesets,
            status=self.status,
            clinical_status=self.clinical_status,
            onset_within=span_of(self.onset_within),
            active_within=span_of(self.active_within),
            when_found=self.when_found,
            names=self.names,
            severity=self.severity,
            horizon=horizon_span(self.horizon),
            lasts_at_most=span_of(self.lasts_at_most),
            when_missing=self.when_missing,
        )

    def resource_types(self) -> tuple[str, ...]:
        return ("Condition",)

    def valueset_names(self) -> list[str]:
        names = self.valuesets + self.exclude_valuesets
        if self.severity:
            names = names + self.severity.met + self.severity.not_met
        return names

    def logic_fields(self) -> dict[str, Any]:
        # The severity value sets are named in the text, not listed under the rule.
        names = list(dict.fromkeys(self.valuesets + self.exclude_valuesets))
        return {"valuesets": names}

    def describe(self, page: Describer) -> str:
        text = f"Diagnosis of {self.label}, {_STATUS_TEXT[self.status]} ({page.titles(self.valuesets)})"
        if self.clinical_status:
            text += f"; clinical status {' or '.join(self.clinical_status)}"
        if self.onset_within is not None:
            text += f"; onset within {window_text(self.onset_within)}"
        if self.lasts_at_most is not None:
            text += f"; over {window_text(self.lasts_at_most)} after it began, whatever its status"
        text += horizon_text(self.horizon)
        if self.exclude_valuesets:
            text += f"; not counting {page.titles(self.exclude_valuesets)}"
        if self.severity is not None:
            if self.severity.met:
                text += f"; counts when severity is {page.titles(self.severity.met)}"
            if self.severity.not_met:
                text += f"; not when severity is {page.titles(self.severity.not_met)}"
            text += f"; severity not recorded: {OUTCOME_TEXT[self.severity.missing]}"
        if self.when_found != "met":
            text += f"; if found, {OUTCOME_TEXT[self.when_found]}"
        if self.when_missing != "not_met":
            text += f"; none recorded: {OUTCOME_TEXT[self.when_missing]}"
        return text
