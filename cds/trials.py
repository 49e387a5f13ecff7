"""Trials are data: ``fhir_mappings/trials/<trial-id>.yaml`` declares each criterion as a tree of rule
kinds with parameters (``cds.rules``). This module reads and validates those files; ``cds.engine``
evaluates them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from cds.assessment import CriterionKind
from cds.rules.base import Horizons, LabTest, StrictModel, Window
from cds.rules.kinds import Rule, iter_leaves
from cds.units import conversion_factor
from cds.valuesets import MAPPINGS_DIR, ValueSetLibrary, default_library


class Criterion(StrictModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: CriterionKind
    text: str
    judgement: bool = False
    rule: Rule


class Trial(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    short_name: str
    description: str
    source: str
    url: str | None = None
    study_drugs: list[str] = Field(default_factory=list)
    measurement_window: Window = Window(days=28)
    horizons: Horizons = Horizons()
    tests: dict[str, LabTest] = Field(default_factory=dict)
    criteria: list[Criterion] = Field(min_length=1)

    def criterion(self, criterion_id: str) -> Criterion:
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(criterion_id)

    def resource_types(self) -> frozenset[str]:
        """The FHIR resource types the criteria read (for prefetch templates and FHIR queries)."""
        types = {"Patient"}
        for c in self.criteria:
            for leaf in iter_leaves(c.rule):
                types.update(leaf.resource_types())
        return frozenset(types)


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


def load_trial_file(path: Path, library: ValueSetLibrary | None = None) -> Trial:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrialError(f"{path}: cannot read: {exc}") from exc
    try:
        trial = Trial.model_validate(raw)
    except ValidationError as exc:
        from cds.authoring import schema_problems  # the authoring module reads this one's models

        problems = schema_problems(exc, raw)
        lines = [f"{path}: not a valid trial file ({len(problems)} problems)", *(f"  {p}" for p in problems)]
        raise TrialError("\n".join(lines)) from None
    problems = list(dict.fromkeys(check_trial(trial, library or default_library())))
    if problems:
        raise TrialError(f"{path}: {len(problems)} problems\n" + "\n".join(f"  {p}" for p in problems))
    return trial


def load_trials(directory: Path | None = None, library: ValueSetLibrary | None = None) -> dict[str, Trial]:
    base = directory or (MAPPINGS_DIR / "trials")
    trials: dict[str, Trial] = {}
    for path in sorted(base.glob("*.yaml")):
        trial = load_trial_file(path, library)
        if trial.id != path.stem:
            raise TrialError(f"{path}: trial id {trial.id!r} differs from the file name")
        trials[trial.id] = trial
    if not trials:
        raise TrialError(f"no trial files in {base}")
    return trials


@lru_cache(maxsize=1)
def default_trials() -> dict[str, Trial]:
    return load_trials()
