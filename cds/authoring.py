"""For the person who writes a trial file: what each field means (one note per field of every model of the
format, read by the JSON Schema, the authoring guide's tables and their test), the schema itself, a
validation report that says every problem at once, located by criterion id, and the trial in words."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from cds.rules.base import Horizons, LabTest, LeafRule, RangeBound, Window
from cds.rules.conditions import ConditionRule, SeverityMap
from cds.rules.demographics import AgeRule, SexRule
from cds.rules.events import AllergyRule, ImmunizationRule, JudgementRule, ProcedureRule
from cds.rules.kinds import LEAF_KINDS, AllRule, AnyRule, NotRule, kind_tag
from cds.rules.labs import LabRule
from cds.rules.medications import DoseLimit, MedicationRule
from cds.rules.observations import NumericRange, ObservationRule
from cds.rules.radiotherapy import CourseCount, DoseRange, RadiotherapyRule
from cds.rules.staging import StagingCombination, StagingRule
from cds.rules.therapy_lines import LineCount, TherapyLinesRule
from cds.trials import Criterion, LeftOut, Trial
from cds.units import conversion_factor
from cds.valuesets import ValueSetLibrary

_OUTCOME = "`met`, `not_met` or `unknown`"
_HORIZON = (
    "how old an entry's own dates may be for its active status to stand for the present: a window, "
    "`lifelong`, or unset for the trial's `horizons` default"
)

#: What each field of the trial format means, per model, in the words of the guide (and the schema).
FIELD_NOTES: dict[type[BaseModel], dict[str, str]] = {
    Trial: {
        "id": "the trial's id; the file is named `<id>.yaml`",
        "title": "the full title, as registered",
        "short_name": "the name on cards",
        "description": "one paragraph for the trial page",
        "source": "where the criteria were taken from (a registry record or protocol file)",
        "url": "the registry page",
        "study_drugs": "the trial's own drugs, named on the trial page",
        "status": "`open` (screened, carded) or `closed` (listed by `trial-cds trials` and its page, not screened)",
        "measurement_window": "how far back a `lab` rule without a `window` looks for the latest result",
        "horizons": "the default horizons of condition and medication rules",
        "tests": "the lab tests that `lab` rules name, by a name of the trial's choosing",
        "criteria": "the criteria, in the order of the protocol",
        "left_out": "registry criteria not screened (consent, contraception …), listed on the trial page",
    },
    LeftOut: {
        "text": "the criterion's words, as registered",
        "reason": "`administrative` (consent, visits), `permissive` (restricts nothing) or `optional`",
        "note": "why it is left out, where the reason alone does not say",
    },
    Criterion: {
        "id": "lower-case id (`inc_age`, `exc_hiv`), unique in the trial; errors and cards name it",
        "kind": "`inclusion` (met = satisfied) or `exclusion` (met = the patient is excluded)",
        "text": "the criterion's words, as in the protocol",
        "judgement": "only the investigator can decide it: never met or not met by the service",
        "rule": "how the record decides it: a composition (`all`, `any`, `not`) or a rule kind (`type:`)",
    },
    Window: {
        "days": "this many days back from the evaluation date, both ends included",
        "months": "this many calendar months back",
    },
    Horizons: {
        "condition": "for condition rules about the present",
        "medication": "for medication rules with a window",
    },
    LabTest: {
        "label": "the test's name in reasons and on the trial page",
        "valuesets": "the value sets of its codes (LOINC)",
        "unit": "the UCUM unit thresholds are written in; results are converted to it",
        "display_unit": "the unit as shown to people, if not the UCUM one",
        "molar_mass_g_per_mol": "for mass ↔ molar conversions",
        "default_range": "reference limits used where a result carries none of its own",
        "default_range_source": "where the default limits come from",
        "order": "what to order when the result is missing (said on the card)",
        "dimensionless": "a ratio (INR): a result with unit `1`, `{INR}`, `{ratio}` or none is accepted",
    },
    RangeBound: {
        "low": "lower limit, both sexes",
        "high": "upper limit, both sexes",
        "male": "`{low:, high:}` for men",
        "female": "`{low:, high:}` for women",
    },
    AllRule: {"all": "rules that must all be met"},
    AnyRule: {"any": "rules of which one met is enough"},
    NotRule: {"not": "a rule whose met and not met are swapped"},
    AgeRule: {
        "type": "`age`",
        "min": "youngest age in whole years, inclusive",
        "max": "oldest age in whole years, inclusive",
    },
    SexRule: {"type": "`sex`", "is": "the administrative genders that meet it (`male`, `female`, `other`, `unknown`)"},
    ConditionRule: {
        "type": "`condition`",
        "label": "the diagnosis in words, for reasons",
        "valuesets": "value sets of the diagnosis codes (and names)",
        "exclude_valuesets": "codes that do not count although the value sets hold them",
        "status": "`active`, `history` (resolved or inactive) or `any`",
        "clinical_status": "only these clinicalStatus codes count, if given",
        "onset_within": "only a diagnosis whose onset (else recordedDate) is within this window",
        "active_within": "active now, or abated within this window",
        "when_found": f"the outcome when a matching diagnosis is found: {_OUTCOME}",
        "names": "`uncoded`: a diagnosis's words count only where it has no standard code; `always`: words "
        "of coded diagnoses (and their notes) count too",
        "severity": "decides by a severity or CTCAE grade written on the diagnosis",
        "horizon": _HORIZON,
        "lasts_at_most": "an entry whose dates are all older than this is history whatever its status",
        "when_missing": "what a record with no matching Condition gives: `not_met` (default), `unknown` or `met`",
    },
    SeverityMap: {
        "met": "value sets of severities that meet the rule",
        "not_met": "value sets of severities that do not",
        "missing": f"outcome when no severity is recorded: {_OUTCOME}",
        "min_grade": "met from this CTCAE grade (1–5) up",
    },
    LabRule: {
        "type": "`lab`",
        "test": "a test of the trial's `tests:`",
        "op": "`>=`, `>`, `<=`, `<` against the threshold, or `outside_range` of the reference range",
        "value": "a fixed threshold",
        "unit": "the threshold's unit (default: the test's)",
        "times_uln": "threshold as a multiple of the upper limit of normal",
        "times_lln": "threshold as a multiple of the lower limit of normal",
        "window": "how far back the latest result may be (default: the trial's `measurement_window`)",
        "derive": "`ckd_epi_2021` (eGFR), `corrected_calcium` (albumin) or `cockcroft_gault` (creatinine clearance)",
        "derive_from": "the tests a derived value is computed from, by role (`creatinine`, `albumin`)",
        "when_missing": f"outcome when no usable result is found: {_OUTCOME}",
    },
    ObservationRule: {
        "type": "`observation`",
        "label": "the finding in words",
        "valuesets": "value sets of the Observation codes",
        "window": "how far back the latest observation may be (default: no limit, ever)",
        "met_values": "value sets of coded answers that meet the rule",
        "not_met_values": "value sets of coded answers that do not",
        "numeric_values": "a value set whose codes carry a number (ECOG answers), for the ranges",
        "met_range": "numbers that meet the rule",
        "not_met_range": "numbers that do not",
        "other": f"outcome for an answer in neither list nor range: {_OUTCOME}",
        "when_missing": f"outcome when no observation is found: {_OUTCOME}",
        "below_detection": f"outcome for a quantity written `<N` (below the assay's limit): {_OUTCOME}",
        "order": "what to order when it is missing (said on the card)",
        "presence": "\"has a result\": met by any final result in the window, whatever its value",
    },
    NumericRange: {
        "min": "lowest value, inclusive",
        "max": "highest value, inclusive",
        "gt": "values above this",
    },
    StagingRule: {
        "type": "`staging`",
        "label": "the staging asked for, in words",
        "edition": "the AJCC/UICC TNM edition (8 for the 8th); another edition recorded is left to confirm",
        "stage": "stage groups that meet it (`III`, `IVA`; `IV` covers `IVA` and `IVB`)",
        "t": "T categories that meet it (`T3`, `T4`; `T4` covers `T4a` and `T4b`)",
        "n": "N categories that meet it (`N0`, `N1`)",
        "m": "M categories that meet it (`M0`)",
        "except": "combinations that do not meet it although the lists above do (T3N0M0)",
        "recurrence": "read the staging of a recurrence (rTNM) instead of the staging at diagnosis",
        "cancer": "condition value sets: only staging of these cancers counts (Observation.focus, Condition.stage)",
    },
    StagingCombination: {
        "stage": "stage groups of the combination",
        "t": "T categories of the combination",
        "n": "N categories of the combination",
        "m": "M categories of the combination",
    },
    MedicationRule: {
        "type": "`medication`",
        "label": "the drug or class in words",
        "valuesets": "value sets of the drugs (RxNorm ingredients, ATC classes, names)",
        "exclude_valuesets": "drugs that do not count although the value sets hold them",
        "window": "exposure overlapping this window counts (default: ever)",
        "systemic_only": "only oral, IV, IM or SC routes count",
        "route_unknown": "with `systemic_only`, a route not recorded counts as `systemic`, or is `unknown`",
        "dose": "counts only above a daily dose equivalent",
        "horizon": _HORIZON,
        "started_by_evaluation": "a use that starts after the evaluation date is not exposure, even without a window",
        "except_for": "condition value sets: a use recorded for one of those reasons is not exposure",
    },
    DoseLimit: {
        "reference": "the drug doses are expressed in",
        "reference_mg": "the value set's `value` of a drug is the dose equal to this many mg of the reference",
        "max_mg_per_day": "met when the daily equivalent is above this",
    },
    TherapyLinesRule: {
        "type": "`therapy_lines`",
        "label": "the lines in words (\"lines of chemotherapy for metastatic disease\")",
        "valuesets": "value sets of the drugs that make up the lines (RxNorm ingredients, ATC classes, names)",
        "exclude_valuesets": "drugs that do not count although the value sets hold them",
        "after_onset_of": "condition value sets: only lines begun on or after the earliest onset of one of "
        "these diagnoses count (the setting); none recorded: no line counts",
        "onset_names": "`uncoded`: a diagnosis's words count only where it has no standard code; `always`: words "
        "of coded diagnoses count too (\"locally recurrent\", which no code says)",
        "count": "how many lines meet the rule: `{min: 2}`, `{max: 1}`, or both",
        "including": "drug value sets: at least one counted line must contain one of these drugs",
        "regimen_days": "drugs begun within this many days of a line's first drug are one regimen",
        "gap_days": "a drug begun more than this many days after the line's last exposure starts a new line, "
        "even a drug of the regimen",
        "when_missing": "outcome when none of the drugs is recorded at all: unset counts zero lines; "
        + _OUTCOME,
    },
    LineCount: {
        "min": "fewest lines, inclusive",
        "max": "most lines, inclusive",
    },
    ProcedureRule: {
        "type": "`procedure`",
        "label": "the procedure in words",
        "valuesets": "value sets of the procedure codes",
        "exclude_valuesets": "codes that do not count although the value sets hold them",
        "window": "performed within this window (default: ever)",
        "before_onset_of": "value sets of a diagnosis the procedure must precede",
        "ended_more_than_months_before_onset": "with `before_onset_of`: ended at least this long before it",
        "when_found": f"outcome when a matching procedure is found: {_OUTCOME}",
    },
    RadiotherapyRule: {
        "type": "`radiotherapy`",
        "label": "the radiotherapy in words",
        "valuesets": "value sets of the radiotherapy procedure codes",
        "exclude_valuesets": "codes that do not count although the value sets hold them",
        "course_summaries": "value sets of the codes of a course summary, whose dose is the course's",
        "course_gap_days": "a Procedure starting more than this many days after a course's last date starts another",
        "window": "a course overlapping this window (default: ever)",
        "dose": "bounds on a course's total dose delivered (not recorded: unknown)",
        "before_onset_of": "value sets of a later diagnosis (a relapse) the course must have started before",
        "onset_clinical_status": "only diagnoses of these clinicalStatus codes (`recurrence`) are that diagnosis",
        "ended_more_than_months_before_onset": "the course ended more than this many months before that diagnosis",
        "courses": "how many courses satisfying the rule are asked for (default: at least 1)",
    },
    DoseRange: {
        "gt": "doses above this",
        "min": "lowest dose, inclusive",
        "lt": "doses below this",
        "max": "highest dose, inclusive",
        "unit": "the unit of the bounds (UCUM: `Gy`, `cGy`)",
    },
    CourseCount: {
        "min": "fewest qualifying courses",
        "max": "most qualifying courses (default: no limit)",
    },
    ImmunizationRule: {
        "type": "`immunization`",
        "label": "the vaccine in words",
        "valuesets": "value sets of the vaccine codes (CVX)",
        "window": "given within this window (default: ever)",
    },
    AllergyRule: {
        "type": "`allergy`",
        "label": "the allergy in words",
        "valuesets": "value sets of the substances",
        "severe_only": "only severe reactions (or high criticality) count",
        "when_severity_unknown": f"with `severe_only`, outcome when severity is not recorded: {_OUTCOME}",
    },
    JudgementRule: {
        "type": "`judgement`",
        "label": "what the investigator decides",
        "conditions": "value sets of diagnoses the card lists for the investigator",
        "observations": "value sets of findings the card lists for the investigator",
    },
}


def field_name(model: type[BaseModel], name: str) -> str:
    """The field as a trial file spells it (``is``, ``not``: aliases of Python keywords)."""
    return model.model_fields[name].alias or name


def _type_text(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_text(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if any("Rule" in _type_text(a) or _type_text(a) == "rule" for a in members):
            return "rule"
        return " or ".join(_type_text(a) for a in members)
    if origin is list:
        return f"list of {_type_text(get_args(annotation)[0])}"
    if origin is dict:
        return f"map of {_type_text(get_args(annotation)[1])}"
    if str(origin).endswith("Literal"):
        return " / ".join(f"`{a}`" for a in get_args(annotation))
    if isinstance(annotation, type):
        if annotation.__name__ in ("AllRule", "AnyRule", "NotRule") or annotation.__name__ == "Rule":
            return "rule"
        return {"str": "text", "int": "whole number", "float": "number", "bool": "true / false"}.get(
            annotation.__name__, annotation.__name__
        )
    return "rule" if "Rule" in str(annotation) else str(annotation)


def _default_text(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is PydanticUndefined or value is None:
        return "—"
    if isinstance(value, BaseModel):
        dumped = value.model_dump(exclude_none=True)
        return "`" + yaml.safe_dump(dumped, default_flow_style=True).strip() + "`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value in ([], {}):
        return "none"
    return f"`{value}`"


def field_table(model: type[BaseModel]) -> str:
    """The model's fields as a Markdown table: field, type, default, meaning (from FIELD_NOTES)."""
    notes = FIELD_NOTES[model]
    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        shown = field_name(model, name)
        rows.append(f"| `{shown}` | {_type_text(info.annotation)} | {_default_text(model, name)} | {notes[shown]} |")
    return "\n".join(rows)


_TABLE = re.compile(r"<!-- fields: (\w+) -->\n(?:\|.*\n?)*")


def refresh_field_tables(guide: str) -> str:
    """The guide with the table after each ``<!-- fields: Model -->`` marker written again from the models
    (scripts/authoring-tables)."""
    models = {model.__name__: model for model in FIELD_NOTES}

    def table(match: re.Match[str]) -> str:
        return f"<!-- fields: {match.group(1)} -->\n{field_table(models[match.group(1)])}\n"

    return _TABLE.sub(table, guide)


# ---------------------------------------------------------------------------------------------------
# The JSON Schema, for editors.


def trial_schema() -> dict[str, Any]:
    """The trial format as JSON Schema (draft 2020-12), each field described by its note."""
    schema = Trial.model_json_schema(by_alias=True)
    defs: dict[str, Any] = schema.get("$defs", {})
    for model, notes in FIELD_NOTES.items():
        target = schema if model is Trial else defs.get(model.__name__)
        if target is None:
            continue
        for name, prop in target.get("properties", {}).items():
            if name in notes:
                prop["description"] = notes[name]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "trial-cds trial file"
    schema["description"] = "A clinical trial's eligibility criteria as rules (docs/authoring-trials.md)."
    return schema


# ---------------------------------------------------------------------------------------------------
# Validation: every problem of a file at once, each located by criterion id.

_TAGS: dict[str, type[BaseModel]] = {"all": AllRule, "any": AnyRule, "not": NotRule}
_TAGS.update((kind_tag(model), model) for model in LEAF_KINDS)


def _models_of(annotation: Any) -> list[Any]:
    """The types a field may hold, wrappers (Annotated, Optional) removed."""
    if get_origin(annotation) is Annotated:
        return _models_of(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _models_of(a)]
    return [annotation]


def _model_at(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model that the location of an error (pydantic's ``loc``) is inside, if one is."""
    current: list[Any] = [Trial]
    for step in path:
        if isinstance(step, str) and step in _TAGS and sum(_is_rule(c) for c in current) > 1:  # the union's tag
            current = [_TAGS[step]]
            continue
        following: list[Any] = []
        for candidate in current:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and isinstance(step, str):
                for name, info in candidate.model_fields.items():
                    if step in (name, info.alias):
                        following.extend(_models_of(info.annotation))
            elif get_origin(candidate) in (list, dict):
                following.extend(_models_of(get_args(candidate)[-1]))
        current = [c for f in following for c in _models_of(f)]
        if not current:
            return None
    models = [c for c in current if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _is_rule(candidate: Any) -> bool:
    return isinstance(candidate, type) and candidate in _TAGS.values()


def _where(loc: tuple[str | int, ...], raw: Any) -> str:
    """``criteria.2.rule.any.any.0.medication.window`` → ``exc_hiv: rule.any[0].medication.window``."""
    steps = list(loc)
    prefix = ""
    if len(steps) >= 2 and steps[0] == "criteria" and isinstance(steps[1], int):
        criteria = raw.get("criteria") if isinstance(raw, Mapping) else None
        item = criteria[steps[1]] if isinstance(criteria, list) and steps[1] < len(criteria) else None
        cid = item.get("id") if isinstance(item, Mapping) else None
        prefix = f"{cid}: " if isinstance(cid, str) else f"criterion {steps[1] + 1}: "
        steps = steps[2:]
    text = ""
    for i, step in enumerate(steps):
        if isinstance(step, int):
            text += f"[{step}]"
        elif step in ("all", "any", "not") and i + 1 < len(steps) and steps[i + 1] == step:
            continue  # the composition's tag, followed by its field of the same name
        else:
            text += f".{step}" if text else str(step)
    if prefix:
        return prefix + text if text else prefix.removesuffix(": ")
    return text or "(the file)"


def _schema_message(err: Mapping[str, Any], raw: Any) -> str:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        unknown = str(loc[-1])
        message = f"unknown field {unknown!r}"
        if model is not None:
            allowed = [field_name(model, n) for n in model.model_fields]
            message += "; allowed: " + ", ".join(allowed)
            close = difflib.get_close_matches(unknown, allowed, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        return f"{_where(loc[:-1], raw)}: {message}"
    message = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if err["type"] == "invalid_rule" and isinstance(value, Mapping) and isinstance(value.get("type"), str):
        close = difflib.get_close_matches(value["type"], list(_TAGS), n=1)
        message = f"unknown rule type {value['type']!r}; " + message.removeprefix("a rule is ")
        if close:
            message += f"; did you mean {close[0]!r}?"
    elif err["type"] == "missing":
        model = _model_at(loc[:-1])
        message = f"field {str(loc[-1])!r} is required"
        if model is not None and model in FIELD_NOTES:
            message += f" ({FIELD_NOTES[model].get(str(loc[-1]), '')})".replace(" ()", "")
        return f"{_where(loc[:-1], raw)}: {message}"
    return f"{_where(loc, raw)}: {message}"


def schema_problems(exc: ValidationError, raw: Any) -> list[str]:
    """The schema errors of a trial file, each located by criterion id, unknown fields with the allowed ones."""
    return list(dict.fromkeys(_schema_message(err, raw) for err in exc.errors()))


def _semantic_problems(raw: Mapping[str, Any], library: ValueSetLibrary) -> list[str]:
    """Value sets, tests and units of every test and rule that passes the schema on its own, and ids used twice."""
    problems: list[str] = []
    raw_tests = raw.get("tests") or {}
    tests: dict[str, LabTest] = {}
    invalid_tests: set[str] = set()  # reported by the schema; lab rules naming them are not checked against them
    for name, body in raw_tests.items() if isinstance(raw_tests, Mapping) else ():
        try:
            test = LabTest.model_validate(body)
        except ValidationError:
            invalid_tests.add(str(name))
            written = body.get("valuesets") if isinstance(body, Mapping) else None
            valuesets = [vs for vs in written if isinstance(vs, str)] if isinstance(written, list) else []
        else:
            tests[str(name)] = test
            valuesets = test.valuesets
            if conversion_factor(test.unit, test.unit) is None:
                problems.append(f"tests.{name}: unit {test.unit!r} is not UCUM")
        problems.extend(
            f"tests.{name}: unknown value set {vs!r}{_suggest(vs, library)}" for vs in valuesets if vs not in library
        )
    seen: set[str] = set()
    raw_criteria = raw.get("criteria")
    for number, item in enumerate(raw_criteria if isinstance(raw_criteria, list) else (), start=1):
        if not isinstance(item, Mapping):
            continue
        raw_id = item.get("id")
        cid = raw_id if isinstance(raw_id, str) else f"criterion {number}"
        if cid in seen:
            problems.append(f"{cid}: id used twice")
        seen.add(cid)
        for leaf in _leaves(item.get("rule")):
            for vs in dict.fromkeys(leaf.valueset_names()):
                if vs not in library:
                    problems.append(f"{cid}: {leaf.type}: unknown value set {vs!r}{_suggest(vs, library)}")
            if isinstance(leaf, LabRule) and invalid_tests & {leaf.test, *leaf.derive_from.values()}:
                continue
            problems.extend(f"{cid}: {leaf.type}: {problem}" for problem in leaf.problems(tests))
    return problems


def _leaves(rule: Any) -> Iterator[LeafRule]:
    """The leaf rules of a rule tree as written, each that passes the schema on its own: a criterion with a
    schema error elsewhere still has its value sets and tests checked."""
    if not isinstance(rule, Mapping):
        return
    for key in ("all", "any"):
        if isinstance(rule.get(key), list):
            for part in rule[key]:
                yield from _leaves(part)
            return
    if "not" in rule:
        yield from _leaves(rule["not"])
        return
    model = _TAGS.get(str(rule.get("type")))
    if model is None or not issubclass(model, LeafRule):
        return
    try:
        yield model.model_validate(rule)
    except ValidationError:
        return  # reported by the schema


def _suggest(name: str, library: ValueSetLibrary) -> str:
    close = difflib.get_close_matches(name, library.ids(), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def validation_report(path: Path, library: ValueSetLibrary) -> list[str]:
    """Every problem of a trial file (none: it loads): unreadable YAML, schema errors, unknown value sets
    and tests, units, duplicate ids, and an id that differs from the file name."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        return [f"cannot read: {exc}"]
    if not isinstance(raw, Mapping):
        return ["not a trial file: a mapping of `id`, `title`, … `criteria` is expected"]
    problems: list[str] = []
    try:
        Trial.model_validate(raw)
    except ValidationError as exc:
        problems.extend(schema_problems(exc, raw))
    problems.extend(_semantic_problems(raw, library))
    trial_id = raw.get("id")
    if isinstance(trial_id, str) and trial_id != path.stem:
        problems.append(f"id: the trial id {trial_id!r} differs from the file name: name the file {trial_id}.yaml")
    return list(dict.fromkeys(problems))


# ---------------------------------------------------------------------------------------------------
# The trial in words, for proofreading.


def explain(trial: Trial, library: ValueSetLibrary) -> str:
    """The trial as a person reads it: title, source, and each criterion with its rule in words (the
    trial page's descriptions)."""
    from cds.api.pages import describe_trial  # the page's describer: the same words as the trial page

    page = describe_trial(trial, library)
    lines = [f"{trial.title} ({trial.short_name}, {trial.id})", f"Source: {trial.source}"]
    if trial.url:
        lines.append(f"Registry: {trial.url}")
    lines.append(
        f"Lab results: the latest within {trial.measurement_window.describe()}, unless a rule gives its own window"
    )
    lines.append(
        f"Active entries stand without a newer date for {trial.horizons.condition.describe()} (diagnoses), "
        f"{trial.horizons.medication.describe()} (medicines), unless a rule gives its own horizon"
    )
    for kind in ("inclusion", "exclusion"):
        lines.append("")
        lines.append(
            "Inclusion criteria (all must be met)" if kind == "inclusion" else "Exclusion criteria (any met excludes)"
        )
        for item in page["criteria"]:
            if item["kind"] != kind:
                continue
            flag = " [investigator's judgement]" if item["judgement"] else ""
            lines.append(f"  {item['id']}{flag}: {item['text']}")
            lines.extend(_logic_lines(item["logic"], "      "))
    return "\n".join(lines)


def _logic_lines(node: Mapping[str, Any], indent: str) -> list[str]:
    for key, heading in (("all", "all of:"), ("any", "any of:")):
        if key in node:
            return [f"{indent}{heading}"] + [line for part in node[key] for line in _logic_lines(part, indent + "  ")]
    if "not" in node:
        return [f"{indent}not:", *_logic_lines(node["not"], indent + "  ")]
    return [f"{indent}- {node['text']}"]
