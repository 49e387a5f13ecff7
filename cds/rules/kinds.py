"""The table of rule kinds and their compositions. A rule in a trial file is a composition (``all:``,
``any:``, ``not:``, here) or one of the leaf kinds listed in ``LeafRules``; each kind's module holds the
rest (see docs/architecture.md, "Adding a rule kind")."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, Union, assert_never, get_args

from pydantic import Discriminator, Field, Tag

from cds.engine.context import EvalContext
from cds.engine.plan import AllPlan, AnyPlan, NotPlan, RulePlan, SharedPlan
from cds.engine.result import RuleResult, all_of, any_of, negate
from cds.rules.base import LeafRule, SettingsKeys, StrictModel
from cds.rules.conditions import ConditionRule
from cds.rules.demographics import AgeRule, SexRule
from cds.rules.events import AllergyRule, ImmunizationRule, JudgementRule, ProcedureRule
from cds.rules.labs import LabRule
from cds.rules.medications import MedicationRule
from cds.rules.observations import ObservationRule
from cds.rules.radiotherapy import RadiotherapyRule
from cds.rules.staging import StagingRule
from cds.rules.therapy_lines import TherapyLinesRule

# The table: one entry per leaf kind, in the order the error message lists them.
LeafRules = (
    AgeRule
    | SexRule
    | ConditionRule
    | LabRule
    | ObservationRule
    | StagingRule
    | MedicationRule
    | TherapyLinesRule
    | ProcedureRule
    | RadiotherapyRule
    | ImmunizationRule
    | AllergyRule
    | JudgementRule
)

LEAF_KINDS: tuple[type[LeafRule], ...] = get_args(LeafRules)


class AllRule(StrictModel):
    all: list[Rule] = Field(min_length=1)

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return all_of([rule.evaluate(ctx) for rule in self.all])


class AnyRule(StrictModel):
    any: list[Rule] = Field(min_length=1)

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return any_of([rule.evaluate(ctx) for rule in self.any])


class NotRule(StrictModel):
    not_: Rule = Field(alias="not")

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return negate(self.not_.evaluate(ctx))


def kind_tag(model: type[LeafRule]) -> str:
    """A kind's `type:` in the trial file: the one value of its model's `type` Literal."""
    (tag,) = get_args(model.model_fields["type"].annotation)
    return str(tag)


_COMPOSITIONS: dict[str, type[AllRule | AnyRule | NotRule]] = {"all": AllRule, "any": AnyRule, "not": NotRule}


def _rule_tag(value: Any) -> str | None:
    """Which rule a mapping is: a composition (`all`, `any`, `not`) or a leaf by its `type`."""
    if isinstance(value, dict):
        for key in _COMPOSITIONS:
            if key in value:
                return key
        kind = value.get("type")
        return kind if isinstance(kind, str) else None
    if isinstance(value, LeafRule):
        return value.type
    for key, model in _COMPOSITIONS.items():
        if isinstance(value, model):
            return key
    return None


if TYPE_CHECKING:
    Rule = AllRule | AnyRule | NotRule | LeafRules
else:  # the same union, each member tagged for pydantic's discriminator, built from the table
    Rule = Annotated[
        Union[  # noqa: UP007 (a union built from a tuple of members)
            tuple(Annotated[model, Tag(tag)] for tag, model in _COMPOSITIONS.items())
            + tuple(Annotated[model, Tag(kind_tag(model))] for model in LEAF_KINDS)
        ],
        Discriminator(
            _rule_tag,
            custom_error_type="invalid_rule",
            custom_error_message="a rule is `all:`, `any:`, `not:` or has `type:` one of "
            + ", ".join(kind_tag(model) for model in LEAF_KINDS),
        ),
    ]

for _model in (AllRule, AnyRule, NotRule):  # their fields name `Rule`, built after them from the table
    _model.model_rebuild()


def plan_of(rule: Rule, settings: SettingsKeys) -> SharedPlan:
    """A rule tree as the compiled engine evaluates it (``cds.engine.plan``): the compositions as native
    nodes, each leaf its kind's plan, every node shared by the trials of a call under its result key (a
    composition's: its parts' keys). Keys are interned: trials holding the same rule hold one key object."""
    if isinstance(rule, AllRule | AnyRule):
        parts = [plan_of(r, settings) for r in (rule.all if isinstance(rule, AllRule) else rule.any)]
        name = "all" if isinstance(rule, AllRule) else "any"
        node: RulePlan = AllPlan(list(parts)) if isinstance(rule, AllRule) else AnyPlan(list(parts))
        return SharedPlan(_composed(name, [p.key for p in parts]), node)
    if isinstance(rule, NotRule):
        part = plan_of(rule.not_, settings)
        return SharedPlan(_composed("not", [part.key]), NotPlan(part))
    if isinstance(rule, LeafRule):
        return SharedPlan(sys.intern(rule.result_key(settings)), rule.plan())
    assert_never(rule)


def _composed(name: str, keys: list[str]) -> str:
    """A composition's key: its name and its parts' keys, each prefixed by its length (no part's text can
    pass for a boundary)."""
    return sys.intern(f"{name}[" + "".join(f"{len(k)}:{k}" for k in keys) + "]")


def iter_leaves(rule: Rule) -> Iterator[LeafRules]:
    """The leaf rules of a rule tree, in order."""
    if isinstance(rule, AllRule):
        for r in rule.all:
            yield from iter_leaves(r)
    elif isinstance(rule, AnyRule):
        for r in rule.any:
            yield from iter_leaves(r)
    elif isinstance(rule, NotRule):
        yield from iter_leaves(rule.not_)
    elif isinstance(rule, LeafRule):
        yield rule
    else:
        assert_never(rule)
