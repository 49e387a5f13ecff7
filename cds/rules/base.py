"""What every rule kind has: the strict model base, look-back windows, the trial's lab tests (``tests:``,
named by lab rules and read by rule descriptions), and the interface of a leaf kind (what it reads, which
value sets it names, how it is evaluated, described and affected by orders)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cds.engine.context import EvalContext
from cds.engine.plan import HorizonSpans, ModelPlan, RulePlan, Span
from cds.engine.result import Outcome as Outcome  # the trial file's outcomes: the kinds' models name it here
from cds.engine.result import RuleResult


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(StrictModel):
    """How far back from the evaluation date a rule looks. Both ends are included."""

    days: int | None = Field(default=None, ge=0)
    months: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one(self) -> Window:
        if (self.days is None) == (self.months is None):
            raise ValueError("a window gives exactly one of `days` or `months`")
        return self

    def describe(self) -> str:
        if self.days is not None:
            if self.days % 7 == 0 and self.days >= 14 and self.days != 28:
                return f"{self.days // 7} weeks"
            return f"{self.days} days"
        return f"{self.months} months"

    def span(self) -> Span:
        """The window as a plan reads it (``cds.engine.plan``)."""
        return Span(self.days, self.months, self.describe())


class Horizons(StrictModel):
    """How long a status that stands for the present ("active", "ongoing") is believed without a newer
    date of the entry's own (onset, recordedDate, abatement; start, authoredOn, dosage bounds), per rule
    kind. An entry whose every date is older than its rule's horizon is `unknown`, to confirm, never `met`
    by its status alone. Defaults and why: docs/criteria.md, "Currency"."""

    condition: Window = Window(months=60)
    medication: Window = Window(months=6)

    def spans(self) -> HorizonSpans:
        return HorizonSpans(self.condition.span(), self.medication.span())


#: A rule's horizon: how old an entry's own dates may be for its "active" status to stand for the present;
#: "lifelong" for what does not end by itself (chronic hepatitis B, diabetes), None for the trial's default.
Horizon = Window | Literal["lifelong"] | None


def span_of(window: Window | None) -> Span | None:
    """A rule's optional window as its plan reads it."""
    return window.span() if window is not None else None


def horizon_span(horizon: Horizon) -> Span | Literal["lifelong"] | None:
    """A rule's horizon as its plan reads it: a window, "lifelong" or None."""
    return horizon.span() if isinstance(horizon, Window) else horizon


def horizon_text(horizon: Horizon) -> str:
    if horizon is None:
        return ""
    if horizon == "lifelong":
        return "; an active entry stands however old (lifelong)"
    return f"; an active entry with no date of its own within {horizon.describe()} is to confirm"

#: An outcome as the trial page words it.
OUTCOME_TEXT: dict[str, str] = {"met": "counts as met", "not_met": "counts as not met", "unknown": "left to confirm"}


class RangeBound(StrictModel):
    low: float | None = None
    high: float | None = None
    male: dict[str, float] | None = None
    female: dict[str, float] | None = None


class LabTest(StrictModel):
    label: str
    valuesets: list[str] = Field(min_length=1)
    unit: str
    display_unit: str | None = None
    molar_mass_g_per_mol: float | None = Field(default=None, gt=0)
    default_range: RangeBound | None = None
    default_range_source: str | None = None
    order: str | None = None  # what to order when the result is missing
    dimensionless: bool = False  # a ratio such as INR: reported with "1", "{INR}", "{ratio}" or no unit


def window_text(window: Window | None) -> str:
    return window.describe() if window is not None else ""


@dataclass(frozen=True)
class SettingsKeys:
    """The trial's settings a rule may read (``cds.engine.context.TrialSettings``), each written as JSON:
    what a rule's result key (``LeafRule.result_key``) names of them besides its own parameters."""

    tests: Mapping[str, str]
    measurement_window: str
    condition_horizon: str
    medication_horizon: str

    def everything(self) -> str:
        tests = ",".join(f"{name}={text}" for name, text in sorted(self.tests.items()))
        horizons = f"{self.condition_horizon},{self.medication_horizon}"
        return f"tests[{tests}];window={self.measurement_window};horizons={horizons}"


class Describer(Protocol):
    """What a rule's description for the trial page may ask of the page: value-set titles and the trial's
    lab tests, each noted as used by the criterion being described."""

    @property
    def measurement_window(self) -> Window: ...

    def title(self, name: str) -> str: ...

    def titles(self, names: list[str]) -> str: ...

    def test(self, name: str) -> LabTest: ...


class LeafRule(StrictModel, ABC):
    """A rule kind that reads the record (not a composition of rules). A kind is registered by one entry
    in ``cds.rules.kinds.LeafRules``; everything else about it is here, on its model."""

    type: str  # the kind's `type:` in the trial file, a Literal in each kind

    #: Resource types of a draft order carried out (``cds.orders``) that this kind reads: such an order
    #: can rule the patient out through it, for ``order_window()``.
    orders_read: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def evaluate(self, ctx: EvalContext) -> RuleResult:
        """The rule on a record: the kind's evaluator in ``cds.engine.rules`` called with this model, which
        mypy checks against the evaluator's protocol of what it reads."""

    def plan(self) -> RulePlan:
        """The rule as the compiled engine evaluates it (``cds.engine.plan``), built once per trial: a
        kind with a plan class of its own in ``cds.engine.rules`` returns it, its parameters copied;
        any other kind is evaluated by its model, as here."""
        return ModelPlan(self)

    def result_key(self, settings: SettingsKeys) -> str:
        """What decides the rule's result besides the record, the moment and the value sets: its kind, its
        parameters, and what it reads of the trial's settings. Trials of one call whose rules have one key
        share one evaluation (``cds.engine.plan.SharedPlan``). By default every setting: a kind that
        reads fewer of them may say so, and share more."""
        return f"{self.type}:{self.model_dump_json()}|{settings.everything()}"

    @abstractmethod
    def resource_types(self) -> tuple[str, ...]:
        """The FHIR resource types the rule reads (prefetch templates and FHIR queries)."""

    @abstractmethod
    def valueset_names(self) -> list[str]:
        """Every value set the rule names (checked against the library when a trial is loaded)."""

    @abstractmethod
    def describe(self, page: Describer) -> str:
        """The rule in plain language, for the trial page."""

    def problems(self, tests: Mapping[str, LabTest]) -> list[str]:
        """What the schema cannot see wrong in the rule, given the trial's lab tests (``tests:``)."""
        return []

    def logic_fields(self) -> dict[str, Any]:
        """What the trial page's logic tree shows of this rule besides its text: the value sets it lists."""
        names = list(dict.fromkeys(self.valueset_names()))
        return {"valuesets": names} if names else {}

    def order_window(self) -> Window | None:
        """How far back the rule looks at an order's resource (None: for ever); read only for a kind that
        has ``orders_read``."""
        return None
