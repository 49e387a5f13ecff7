"""A trial as the compiled engine evaluates it: its plan, built once when the trial is first evaluated
(``cds.trials.Trial.plan``) from the trial file's models, and reused by every call.

The trial file's models are pydantic: reading a parameter of one from compiled code is a generic
attribute lookup through pydantic's ``__getattr__`` hook, and each composition (``all`` / ``any`` /
``not``) and each leaf's ``evaluate`` was a Python method. A plan is plain native objects: the
compositions evaluated here, each leaf a kind's plan (``cds.engine.rules.<kind>``, its parameters as
typed fields, read directly) or, for a kind that has none, its model (:class:`ModelPlan`). The answers
are the models' own: a plan is their parameters copied, never a second reading of the trial file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from cds.assessment import CriterionKind
from cds.engine.context import EvalContext, HorizonsSpec, LabTestSpec, WindowSpec
from cds.engine.result import RuleResult, all_of, any_of, negate


class RulePlan:
    """A rule of a plan: a composition below, or a kind's leaf (``cds.engine.rules``)."""

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        raise NotImplementedError


class AllPlan(RulePlan):
    def __init__(self, parts: list[RulePlan]) -> None:
        self.parts = parts

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return all_of([part.evaluate(ctx) for part in self.parts])


class AnyPlan(RulePlan):
    def __init__(self, parts: list[RulePlan]) -> None:
        self.parts = parts

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return any_of([part.evaluate(ctx) for part in self.parts])


class NotPlan(RulePlan):
    def __init__(self, part: RulePlan) -> None:
        self.part = part

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return negate(self.part.evaluate(ctx))


class SharedPlan(RulePlan):
    """A leaf whose result every trial of a call shares: evaluated once per record and moment for all the
    trials that hold the same rule with the same settings it reads. ``key`` says what decides the result
    besides the record, the moment and the value sets (``cds.rules.base.LeafRule.result_key``): two leaves
    with one key give one answer."""

    def __init__(self, key: str, leaf: RulePlan) -> None:
        self.key = key
        self.leaf = leaf

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        shared = ctx.shared_results
        found = shared.get(self.key)
        if found is None:
            found = self.leaf.evaluate(ctx)
            shared[self.key] = found
        return found


class ModelRule(Protocol):
    """A leaf kind's model (``cds.rules.base.LeafRule``), which evaluates itself."""

    def evaluate(self, ctx: EvalContext) -> RuleResult: ...


class ModelPlan(RulePlan):
    """A leaf evaluated by its model: the plan of a kind that has no plan class of its own (a new kind
    needs none: ``cds.rules.base.LeafRule.plan``)."""

    def __init__(self, rule: ModelRule) -> None:
        self.rule = rule

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.rule.evaluate(ctx)


class Span:
    """A look-back window of a plan (``cds.rules.base.Window``: exactly one of ``days`` and ``months``),
    with its description as the model writes it."""

    def __init__(self, days: int | None, months: int | None, text: str) -> None:
        self.days = days
        self.months = months
        self.text = text

    def describe(self) -> str:
        return self.text


class HorizonSpans:
    """``cds.rules.base.Horizons`` as a plan reads it."""

    def __init__(self, condition: WindowSpec, medication: WindowSpec) -> None:
        self.condition = condition
        self.medication = medication


class PlanSettings:
    """What rules read of the trial besides their own parameters (``cds.engine.context.TrialSettings``)."""

    def __init__(
        self, tests: Mapping[str, LabTestSpec], measurement_window: WindowSpec, horizons: HorizonsSpec
    ) -> None:
        self.tests = tests
        self.measurement_window = measurement_window
        self.horizons = horizons


class CriterionPlan:
    def __init__(self, id: str, kind: CriterionKind, text: str, judgement: bool, rule: RulePlan) -> None:
        self.id = id
        self.kind: CriterionKind = kind
        self.text = text
        self.judgement = judgement
        self.rule = rule


class TrialPlan:
    def __init__(self, id: str, title: str, settings: PlanSettings, criteria: list[CriterionPlan]) -> None:
        self.id = id
        self.title = title
        self.settings = settings
        self.criteria = criteria
