"""TNM staging (T, N, M categories and stage group, with the edition) from Observations and Condition.stage."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from cds.engine.context import EvalContext
from cds.engine.result import RuleResult
from cds.engine.rules.staging import STAGING_VALUESETS, edition_name, evaluate_staging, wanted_category
from cds.rules.base import Describer, LeafRule, StrictModel


def _check_axes(model: StagingCombination | StagingRule) -> None:
    for values, axis in ((model.stage, "G"), (model.t, "T"), (model.n, "N"), (model.m, "M")):
        for value in values:
            wanted_category(value, axis)  # a ValueError, reported by pydantic at the rule
    if not (model.stage or model.t or model.n or model.m):
        raise ValueError("give at least one of `stage`, `t`, `n`, `m`")


def _either(values: list[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def _describe_axes(model: StagingCombination | StagingRule) -> str:
    parts = []
    if model.stage:
        parts.append("stage " + _either(model.stage))
    parts.extend(_either(values) for values in (model.t, model.n, model.m) if values)
    return "; ".join(parts) if any(len(v) > 1 for v in (model.t, model.n, model.m)) else " ".join(parts)


class StagingCombination(StrictModel):
    """Categories that match together (an exception such as T3N0M0): each axis given lists the categories
    that match it; an axis not given matches any."""

    stage: list[str] = Field(default_factory=list)
    t: list[str] = Field(default_factory=list)
    n: list[str] = Field(default_factory=list)
    m: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _axes(self) -> StagingCombination:
        _check_axes(self)
        return self


class StagingRule(LeafRule):
    """`type: staging`: the latest staging assessment's categories against the ones asked for."""

    type: Literal["staging"]
    label: str
    edition: int | None = Field(default=None, ge=1, le=20)
    stage: list[str] = Field(default_factory=list)
    t: list[str] = Field(default_factory=list)
    n: list[str] = Field(default_factory=list)
    m: list[str] = Field(default_factory=list)
    except_: list[StagingCombination] = Field(default_factory=list, alias="except")
    recurrence: bool = False
    cancer: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _axes(self) -> StagingRule:
        _check_axes(self)
        return self

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_staging(self, ctx)

    def resource_types(self) -> tuple[str, ...]:
        return ("Observation", "Condition")

    def valueset_names(self) -> list[str]:
        return [*STAGING_VALUESETS, *self.cancer]

    def logic_fields(self) -> dict[str, Any]:
        return {"valuesets": list(self.cancer)} if self.cancer else {}

    def describe(self, page: Describer) -> str:
        edition = f" ({edition_name(self.edition)})" if self.edition is not None else ""
        which = "recurrence staging (rTNM)" if self.recurrence else "TNM staging at diagnosis"
        text = f"Latest {which}{edition}: {_describe_axes(self)}"
        if self.except_:
            text += ", except " + " and ".join(_describe_axes(c) for c in self.except_)
        if self.cancer:
            text += f"; staging of {page.titles(self.cancer)} only"
        text += "; a category not recorded: to confirm"
        if self.edition is not None:
            text += f"; another edition recorded: to confirm; none recorded: read as {edition_name(self.edition)}"
        return text
