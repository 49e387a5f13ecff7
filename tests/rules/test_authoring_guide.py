"""docs/authoring-trials.md documents every field of every rule kind, with the tables the models give."""

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, TypeAdapter

from cds.authoring import FIELD_NOTES, field_name, field_table, refresh_field_tables
from cds.rules.base import LabTest
from cds.rules.kinds import LEAF_KINDS, AllRule, AnyRule, NotRule, Rule, iter_leaves, kind_tag
from cds.trials import LeftOut, Trial
from cds.valuesets import default_library

GUIDE = (Path(__file__).parents[2] / "docs" / "authoring-trials.md").read_text(encoding="utf-8")


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """The model and every model its fields hold, through the whole format."""
    if model in seen:
        return seen
    seen.add(model)
    for info in model.model_fields.values():
        for candidate in re.findall(r"\b(\w+)\b", str(info.annotation)):
            for known in (*LEAF_KINDS, AllRule, AnyRule, NotRule, *FIELD_NOTES):
                if known.__name__ == candidate:
                    _models(known, seen)
    return seen


def test_every_model_of_the_trial_format_has_a_note_for_each_of_its_fields() -> None:
    for model in _models(Trial, set()):
        assert model in FIELD_NOTES, model.__name__
        assert sorted(FIELD_NOTES[model]) == sorted(field_name(model, n) for n in model.model_fields), model.__name__


def test_the_guide_holds_the_field_table_of_every_model_as_the_models_give_it() -> None:
    for model in FIELD_NOTES:
        expected = f"<!-- fields: {model.__name__} -->\n{field_table(model)}"
        assert expected in GUIDE, f"docs/authoring-trials.md: the table of {model.__name__} differs:\n{expected}"


def test_the_guide_has_a_section_with_a_decision_table_and_an_example_for_every_rule_kind() -> None:
    for model in LEAF_KINDS:
        section = GUIDE.split(f"### `{kind_tag(model)}`\n", 1)[1].split("\n### ", 1)[0]
        assert "| met | not met | unknown |" in section, kind_tag(model)
        assert f"type: {kind_tag(model)}" in section, kind_tag(model)


def test_the_guide_says_a_lab_rule_defaults_to_the_trial_window_and_an_observation_rule_looks_back_forever() -> None:
    assert "A `lab` rule without a `window` looks back over the trial's `measurement_window`" in GUIDE
    assert "An `observation` rule without a `window` looks back **forever**" in GUIDE


def test_refreshing_the_tables_rewrites_a_stale_one_and_leaves_a_current_guide_unchanged() -> None:
    assert refresh_field_tables(GUIDE) == GUIDE
    stale = GUIDE.replace("| `min` | whole number | — | youngest", "| `min` | whole number | — | oldest", 1)
    assert stale != GUIDE
    assert refresh_field_tables(stale) == GUIDE


def _examples() -> list[dict[str, object]]:
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", GUIDE, flags=re.DOTALL)]


def test_every_example_of_the_guide_is_a_valid_rule_or_test_with_bundled_value_sets() -> None:
    examples = _examples()
    assert len(examples) >= len(LEAF_KINDS) + 2
    library = default_library()
    for example in examples:
        if "left_out" in example:
            assert [LeftOut.model_validate(item) for item in example["left_out"]]  # type: ignore[union-attr]
            continue
        if "rule" in example:
            rule = TypeAdapter(Rule).validate_python(example["rule"])
            names = [vs for leaf in iter_leaves(rule) for vs in leaf.valueset_names()]
        else:
            tests = {name: LabTest.model_validate(body) for name, body in example["tests"].items()}  # type: ignore[union-attr]
            names = [vs for test in tests.values() for vs in test.valuesets]
        assert [vs for vs in names if vs not in library] == [], example
