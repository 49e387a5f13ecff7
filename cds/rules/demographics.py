"""Age on the evaluation date and administrative sex, from Patient."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cds.engine.context import EvalContext
from cds.engine.result import RuleResult
from cds.engine.rules.demographics import AgeCriterion, SexCriterion
from cds.rules.base import Describer, LeafRule


class AgeRule(LeafRule):
    type: Literal["age"]
    min: int | None = None
    max: int | None = None

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def plan(self) -> AgeCriterion:
        return AgeCriterion(min=self.min, max=self.max)

    def resource_types(self) -> tuple[str, ...]:
        return ("Patient",)

    def valueset_names(self) -> list[str]:
        return []

    def describe(self, page: Describer) -> str:
        if self.min is not None and self.max is not None:
            return f"Age {self.min} to {self.max} years inclusive, from the birth date"
        if self.min is not None:
            return f"Age ≥ {self.min} years, from the birth date"
        return f"Age ≤ {self.max} years, from the birth date"


class SexRule(LeafRule):
    type: Literal["sex"]
    is_: list[Literal["male", "female", "other", "unknown"]] = Field(alias="is", min_length=1)

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def plan(self) -> SexCriterion:
        return SexCriterion(is_=self.is_)

    def resource_types(self) -> tuple[str, ...]:
        return ("Patient",)

    def valueset_names(self) -> list[str]:
        return []

    def describe(self, page: Describer) -> str:
        return "Sex recorded as " + " or ".join(self.is_)
