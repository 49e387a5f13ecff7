"""Trials are data: ``fhir_mappings/trials/<trial-id>.yaml`` declares each criterion as a tree of rule
kinds with parameters. This module reads and validates those files; ``cds.engine`` evaluates them."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from cds.assessment import CriterionKind
from cds.units import conversion_factor
from cds.valuesets import MAPPINGS_DIR, ValueSetLibrary, default_library


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
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


class Horizons(_Strict):
    """How long a status that stands for the present ("active", "ongoing") is believed without a newer
    date of the entry's own (onset, recordedDate, abatement; start, authoredOn, dosage bounds), per rule
    kind. An entry whose every date is older than its rule's horizon is `unknown`, to confirm, never `met`
    by its status alone. Defaults and why: docs/criteria.md, "Currency"."""

    condition: Window = Window(months=60)
    medication: Window = Window(months=6)


#: A rule's horizon: how old an entry's own dates may be for its "active" status to stand for the present;
#: "lifelong" for what does not end by itself (chronic hepatitis B, diabetes), None for the trial's default.
Horizon = Window | Literal["lifelong"] | None


class RangeBound(_Strict):
    low: float | None = None
    high: float | None = None
    male: dict[str, float] | None = None
    female: dict[str, float] | None = None


class LabTest(_Strict):
    label: str
    valuesets: list[str] = Field(min_length=1)
    unit: str
    display_unit: str | None = None
    molar_mass_g_per_mol: float | None = Field(default=None, gt=0)
    default_range: RangeBound | None = None
    default_range_source: str | None = None
    order: str | None = None  # what to order when the result is missing
    dimensionless: bool = False  # a ratio such as INR: reported with "1", "{INR}", "{ratio}" or no unit


class AgeRule(_Strict):
    type: Literal["age"]
    min: int | None = None
    max: int | None = None


class SexRule(_Strict):
    type: Literal["sex"]
    is_: list[Literal["male", "female", "other", "unknown"]] = Field(alias="is", min_length=1)


Outcome = Literal["met", "not_met", "unknown"]


class SeverityMap(_Strict):
    met: list[str] = Field(default_factory=list)
    not_met: list[str] = Field(default_factory=list)
    missing: Outcome = "unknown"
    # A CTCAE grade written on the Condition ("Grade 2 peripheral neuropathy"): met from this grade up.
    min_grade: int | None = Field(default=None, ge=1, le=5)


class ConditionRule(_Strict):
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


class LabRule(_Strict):
    type: Literal["lab"]
    test: str
    op: Literal[">=", ">", "<=", "<", "outside_range"]
    value: float | None = None
    unit: str | None = None
    times_uln: float | None = None
    times_lln: float | None = None
    window: Window | None = None
    derive: Literal["ckd_epi_2021", "corrected_calcium"] | None = None
    derive_from: dict[str, str] = Field(default_factory=dict)
    when_missing: Outcome = "unknown"

    @model_validator(mode="after")
    def _threshold(self) -> LabRule:
        given = [x is not None for x in (self.value, self.times_uln, self.times_lln)]
        if self.op == "outside_range":
            if any(given):
                raise ValueError("op outside_range takes no threshold")
        elif sum(given) != 1:
            raise ValueError("a lab rule gives exactly one of `value`, `times_uln`, `times_lln`")
        return self


class NumericRange(_Strict):
    min: float | None = None
    max: float | None = None
    gt: float | None = None


class ObservationRule(_Strict):
    type: Literal["observation"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    window: Window | None = None
    met_values: list[str] = Field(default_factory=list)
    not_met_values: list[str] = Field(default_factory=list)
    numeric_values: str | None = None  # value set whose codes carry the number (ECOG answers)
    met_range: NumericRange | None = None
    not_met_range: NumericRange | None = None
    other: Outcome = "unknown"
    when_missing: Outcome = "unknown"
    below_detection: Outcome = "unknown"  # a quantity written "<N": below the assay's limit
    order: str | None = None


class DoseLimit(_Strict):
    reference: str = "prednisone"
    reference_mg: float = 5.0  # the value set's `value` is the dose equivalent to this many mg
    max_mg_per_day: float  # met when the daily equivalent is above this


class MedicationRule(_Strict):
    type: Literal["medication"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    exclude_valuesets: list[str] = Field(default_factory=list)
    window: Window | None = None  # None: ever
    systemic_only: bool = False
    route_unknown: Literal["systemic", "unknown"] = "systemic"
    dose: DoseLimit | None = None
    horizon: Horizon = None  # None: the trial's `horizons.medication`


class ProcedureRule(_Strict):
    type: Literal["procedure"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    exclude_valuesets: list[str] = Field(default_factory=list)
    window: Window | None = None
    before_onset_of: list[str] = Field(default_factory=list)
    ended_more_than_months_before_onset: int | None = None
    when_found: Outcome = "met"


class ImmunizationRule(_Strict):
    type: Literal["immunization"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    window: Window | None = None


class AllergyRule(_Strict):
    type: Literal["allergy"]
    label: str
    valuesets: list[str] = Field(min_length=1)
    severe_only: bool = False
    when_severity_unknown: Outcome = "unknown"


class JudgementRule(_Strict):
    type: Literal["judgement"]
    label: str
    conditions: list[str] = Field(default_factory=list)
    observations: list[str] = Field(default_factory=list)


class AllRule(_Strict):
    all: list[Rule] = Field(min_length=1)


class AnyRule(_Strict):
    any: list[Rule] = Field(min_length=1)


class NotRule(_Strict):
    not_: Rule = Field(alias="not")


def _rule_tag(value: Any) -> str | None:
    """Which rule a mapping is: a composition (`all`, `any`, `not`) or a leaf by its `type`."""
    if isinstance(value, dict):
        for key in ("all", "any", "not"):
            if key in value:
                return key
        kind = value.get("type")
        return kind if isinstance(kind, str) else None
    for model, tag in _TAGS.items():
        if isinstance(value, model):
            return tag
    return None


Rule = Annotated[
    Annotated[AllRule, Tag("all")]
    | Annotated[AnyRule, Tag("any")]
    | Annotated[NotRule, Tag("not")]
    | Annotated[AgeRule, Tag("age")]
    | Annotated[SexRule, Tag("sex")]
    | Annotated[ConditionRule, Tag("condition")]
    | Annotated[LabRule, Tag("lab")]
    | Annotated[ObservationRule, Tag("observation")]
    | Annotated[MedicationRule, Tag("medication")]
    | Annotated[ProcedureRule, Tag("procedure")]
    | Annotated[ImmunizationRule, Tag("immunization")]
    | Annotated[AllergyRule, Tag("allergy")]
    | Annotated[JudgementRule, Tag("judgement")],
    Discriminator(
        _rule_tag,
        custom_error_type="invalid_rule",
        custom_error_message="a rule is `all:`, `any:`, `not:` or has `type:` one of age, sex, condition, lab, "
        "observation, medication, procedure, immunization, allergy, judgement",
    ),
]


_TAGS: dict[type[BaseModel], str] = {
    AllRule: "all",
    AnyRule: "any",
    NotRule: "not",
    AgeRule: "age",
    SexRule: "sex",
    ConditionRule: "condition",
    LabRule: "lab",
    ObservationRule: "observation",
    MedicationRule: "medication",
    ProcedureRule: "procedure",
    ImmunizationRule: "immunization",
    AllergyRule: "allergy",
    JudgementRule: "judgement",
}


class Criterion(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: CriterionKind
    text: str
    judgement: bool = False
    rule: Rule


class Trial(_Strict):
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
                types.update(_LEAF_TYPES[type(leaf)])
                if isinstance(leaf, JudgementRule):
                    if leaf.conditions:
                        types.add("Condition")
                    if leaf.observations:
                        types.add("Observation")
        return frozenset(types)


_LEAF_TYPES: dict[type[BaseModel], tuple[str, ...]] = {
    AgeRule: ("Patient",),
    SexRule: ("Patient",),
    ConditionRule: ("Condition",),
    LabRule: ("Observation",),
    ObservationRule: ("Observation",),
    MedicationRule: ("MedicationStatement", "MedicationRequest", "MedicationAdministration"),
    ProcedureRule: ("Procedure", "Condition"),
    ImmunizationRule: ("Immunization",),
    AllergyRule: ("AllergyIntolerance",),
    JudgementRule: (),
}


def iter_leaves(rule: Any) -> Iterator[Any]:
    if isinstance(rule, AllRule):
        for r in rule.all:
            yield from iter_leaves(r)
    elif isinstance(rule, AnyRule):
        for r in rule.any:
            yield from iter_leaves(r)
    elif isinstance(rule, NotRule):
        yield from iter_leaves(rule.not_)
    else:
        yield rule


class TrialError(ValueError):
    """A trial file that cannot be used, with every problem found in it."""


def _valueset_names(leaf: Any) -> list[str]:
    names: list[str] = []
    for attr in (
        "valuesets",
        "exclude_valuesets",
        "before_onset_of",
        "met_values",
        "not_met_values",
        "conditions",
        "observations",
    ):
        names.extend(getattr(leaf, attr, None) or [])
    if isinstance(leaf, ObservationRule) and leaf.numeric_values:
        names.append(leaf.numeric_values)
    if isinstance(leaf, ConditionRule) and leaf.severity:
        names.extend(leaf.severity.met + leaf.severity.not_met)
    return names


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
            for vs in _valueset_names(leaf):
                if vs not in library:
                    problems.append(f"criterion {c.id}: unknown value set {vs!r}")
            if isinstance(leaf, LabRule):
                problems.extend(_check_lab(c.id, leaf, trial))
    return problems


def _check_lab(criterion_id: str, leaf: LabRule, trial: Trial) -> list[str]:
    problems: list[str] = []
    test = trial.tests.get(leaf.test)
    if test is None:
        return [f"criterion {criterion_id}: unknown test {leaf.test!r}"]
    if leaf.value is not None:
        unit = leaf.unit or test.unit
        if conversion_factor(unit, test.unit, test.molar_mass_g_per_mol) is None:
            problems.append(f"criterion {criterion_id}: unit {unit!r} does not convert to {test.unit!r}")
    for role in leaf.derive_from.values():
        if role not in trial.tests:
            problems.append(f"criterion {criterion_id}: derive_from names unknown test {role!r}")
    if leaf.derive == "ckd_epi_2021" and "creatinine" not in leaf.derive_from:
        problems.append(f"criterion {criterion_id}: ckd_epi_2021 needs derive_from.creatinine")
    if leaf.derive == "corrected_calcium" and "albumin" not in leaf.derive_from:
        problems.append(f"criterion {criterion_id}: corrected_calcium needs derive_from.albumin")
    return problems


def load_trial_file(path: Path, library: ValueSetLibrary | None = None) -> Trial:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrialError(f"{path}: cannot read: {exc}") from exc
    try:
        trial = Trial.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: not a valid trial file ({exc.error_count()} problems)"]
        for err in exc.errors()[:50]:
            where = ".".join(str(p) for p in err["loc"])
            lines.append(f"  at {where}: {err['msg']}")
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


for _model in (AllRule, AnyRule, NotRule, Criterion, Trial):
    _model.model_rebuild()
