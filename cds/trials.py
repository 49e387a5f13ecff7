"""Trials are data: ``fhir_mappings/trials/<trial-id>.yaml`` declares each criterion as a tree of rule
kinds with parameters (``cds.rules``). This module holds the format and its checks; ``cds.portfolio``
reads the files; ``cds.engine`` evaluates them."""

from __future__ import annotations

import weakref
from typing import Literal

from pydantic import Field

from cds.assessment import CriterionKind
from cds.engine.plan import CriterionPlan, PlanSettings, TrialPlan
from cds.rules.base import Horizons, LabTest, SettingsKeys, StrictModel, Window
from cds.rules.kinds import Rule, iter_leaves, plan_of
from cds.units import conversion_factor
from cds.valuesets import ValueSetLibrary


class Criterion(StrictModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: CriterionKind
    text: str
    judgement: bool = False
    rule: Rule


class LeftOut(StrictModel):
    """A criterion of the registry text that the service does not screen: administrative (consent,
    contraception), permissive ("prior platinum allowed") or optional. Listed on the trial page so that a
    reader sees nothing was silently dropped."""

    text: str
    reason: Literal["administrative", "permissive", "optional"]
    note: str | None = None


class Trial(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    short_name: str
    description: str
    source: str
    url: str | None = None
    #: Closed trials stay listed (``trial-cds trials``, the trial pages) but are not screened: no card, no
    #: discovery entry, refused by ``screen``, so that a trial is closed by editing one line.
    status: Literal["open", "closed"] = "open"
    study_drugs: list[str] = Field(default_factory=list)
    measurement_window: Window = Window(days=28)
    horizons: Horizons = Horizons()
    tests: dict[str, LabTest] = Field(default_factory=dict)
    criteria: list[Criterion] = Field(min_length=1)
    left_out: list[LeftOut] = Field(default_factory=list)

    def criterion(self, criterion_id: str) -> Criterion:
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(criterion_id)

    def plan(self) -> TrialPlan:
        """The trial as the compiled engine evaluates it (``cds.engine.plan``): built on the first
        evaluation and kept for the trial's life, beside the model rather than on it (a trial is pickled
        for the pre-screen's workers, its plan is not)."""
        found = _PLANS.get(id(self))
        if found is None:
            settings = PlanSettings(self.tests, self.measurement_window.span(), self.horizons.spans())
            keys = SettingsKeys(
                tests={name: test.model_dump_json() for name, test in self.tests.items()},
                measurement_window=self.measurement_window.model_dump_json(),
                condition_horizon=self.horizons.condition.model_dump_json(),
                medication_horizon=self.horizons.medication.model_dump_json(),
            )
            criteria = [CriterionPlan(c.id, c.kind, c.text, c.judgement, plan_of(c.rule, keys)) for c in self.criteria]
            found = _PLANS[id(self)] = TrialPlan(self.id, self.title, settings, criteria)
            weakref.finalize(self, _PLANS.pop, id(self), None)
        return found

    def resource_types(self) -> frozenset[str]:
        """The FHIR resource types the criteria read (for prefetch templates and FHIR queries)."""
        types = {"Patient"}
        for c in self.criteria:
            for leaf in iter_leaves(c.rule):
                types.update(leaf.resource_types())
        return frozenset(types)


#: Each live trial's plan, by the trial's id(): a trial is frozen, and its entry goes with it.
_PLANS: dict[int, TrialPlan] = {}


class TrialError(ValueError):
    """A trial file that cannot be used, with every problem found in it."""


def check_trial(trial: Trial, library: ValueSetLibrary) -> list[str]:
    """Problems that the schema cannot see: unknown value sets and tests, duplicate ids, units."""
    problems: list[str] = []
    seen: set[str] = set()
    for name, test in trial.tests.items():
        for vs in test.valuesets:
            if vs not in library:
                problems.append(f"test {name}: unknown value set {vs!r}")
        if conversion_factor(test.unit, test.unit) is None:
            problems.append(f"test {name}: unit {test.unit!r} is not UCUM")
    for c in trial.criteria:
        if c.id in seen:
            problems.append(f"criterion {c.id}: id used twice")
        seen.add(c.id)
        for leaf in iter_leaves(c.rule):
            for vs in leaf.valueset_names():
                if vs not in library:
                    problems.append(f"criterion {c.id}: unknown value set {vs!r}")
            problems.extend(f"criterion {c.id}: {problem}" for problem in leaf.problems(trial.tests))
    return problems
