"""`trial-cds trials validate / schema / explain`: an author sees every problem at once, located by criterion
id, gets a JSON Schema for the editor, and can proofread the trial in words."""

import json
from pathlib import Path

import jsonschema
import yaml
from typer.testing import CliRunner

from cds.cli import app

TRIALS = sorted((Path(__file__).parents[2] / "fhir_mappings" / "trials").glob("*.yaml"))
runner = CliRunner()


SEED = next(p for p in TRIALS if p.stem == "npc-liver-mets-ldrt")


def _bundled() -> dict:
    return yaml.safe_load(SEED.read_text(encoding="utf-8"))


def _write(tmp_path: Path, trial: dict, name: str | None = None) -> Path:
    path = tmp_path / f"{name or trial['id']}.yaml"
    path.write_text(yaml.safe_dump(trial, sort_keys=False), encoding="utf-8")
    return path


def _criterion(trial: dict, criterion_id: str) -> dict:
    return next(c for c in trial["criteria"] if c["id"] == criterion_id)


def test_validate_says_ok_for_the_bundled_trials() -> None:
    result = runner.invoke(app, ["trials", "validate", *map(str, TRIALS)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": ok") == len(TRIALS)


def test_validate_names_an_unknown_field_with_the_allowed_ones_and_a_suggestion(tmp_path: Path) -> None:
    trial = _bundled()
    first = trial["criteria"][0]
    first["rule"] = {"any": [{"type": "medication", "label": "x", "valuesets": ["cond-hiv"], "windw": {"days": 3}}]}
    result = runner.invoke(app, ["trials", "validate", str(_write(tmp_path, trial))])
    assert result.exit_code == 1
    assert (
        f"{first['id']}: rule.any[0].medication: unknown field 'windw'; allowed: type, label, valuesets"
        in result.stderr
    )
    assert "did you mean 'window'?" in result.stderr


def test_validate_reports_schema_and_semantic_problems_of_several_criteria_at_once(tmp_path: Path) -> None:
    trial = _bundled()
    first, second, third = trial["criteria"][:3]
    first["rule"] = {"type": "labb", "test": "anc"}
    second["rule"] = {"type": "lab", "test": "no_such_test", "op": ">=", "value": 1}
    third["rule"] = {"type": "condition", "label": "x", "valuesets": ["no-such-value-set"]}
    result = runner.invoke(app, ["trials", "validate", str(_write(tmp_path, trial))])
    assert result.exit_code == 1
    assert "3 problems" in result.stderr
    assert f"{first['id']}: rule: unknown rule type 'labb'" in result.stderr
    assert "did you mean 'lab'?" in result.stderr
    assert f"{second['id']}: lab: unknown test 'no_such_test'" in result.stderr
    assert f"{third['id']}: condition: unknown value set 'no-such-value-set'" in result.stderr


def test_validate_refuses_a_file_named_otherwise_than_its_trial_id(tmp_path: Path) -> None:
    result = runner.invoke(app, ["trials", "validate", str(_write(tmp_path, _bundled(), name="renamed"))])
    assert result.exit_code == 1
    assert "differs from the file name: name the file npc-liver-mets-ldrt.yaml" in result.stderr


def test_validate_locates_a_wrong_value_inside_a_composition_by_criterion_id(tmp_path: Path) -> None:
    trial = _bundled()
    age = _criterion(trial, "inc_age")
    age["rule"] = {"all": [{"not": {"type": "age", "min": "eighteen"}}]}
    result = runner.invoke(app, ["trials", "validate", str(_write(tmp_path, trial))])
    assert "inc_age: rule.all[0].not.age.min: Input should be a valid integer" in result.stderr


def _schema() -> dict:
    result = runner.invoke(app, ["trials", "schema"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_schema_accepts_every_bundled_trial() -> None:
    schema = _schema()
    for path in TRIALS:
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), schema)


def test_schema_rejects_an_unknown_field_in_a_rule() -> None:
    trial = _bundled()
    trial["criteria"][0]["rule"] = {"type": "age", "min": 18, "mni": 3}
    errors = list(jsonschema.Draft202012Validator(_schema()).iter_errors(trial))
    assert errors


def test_schema_describes_the_fields_for_editors() -> None:
    schema = _schema()
    window = schema["$defs"]["ObservationRule"]["properties"]["window"]
    assert "ever" in window["description"]
    assert schema["properties"]["criteria"]["description"]


def test_explain_prints_each_criterion_with_its_rule_in_words() -> None:
    result = runner.invoke(app, ["trials", "explain", str(SEED)])
    assert result.exit_code == 0, result.output
    trial = _bundled()
    assert result.stdout.startswith(trial["title"])
    assert f"Source: {trial['source']}" in result.stdout
    for criterion in trial["criteria"]:
        assert f"  {criterion['id']}" in result.stdout
    assert "Age 18 to 70 years inclusive, from the birth date" in result.stdout


def test_explain_of_a_broken_file_points_to_validate(tmp_path: Path) -> None:
    trial = _bundled()
    trial["criteria"][0]["rule"] = {"type": "labb"}
    result = runner.invoke(app, ["trials", "explain", str(_write(tmp_path, trial))])
    assert result.exit_code == 1
    assert "trials validate" in result.stderr


def test_validate_checks_the_value_sets_of_a_criterion_that_also_has_a_schema_error(tmp_path: Path) -> None:
    trial = _bundled()
    first = trial["criteria"][0]
    del first["text"]
    first["rule"] = {
        "all": [
            {"type": "condition", "label": "x", "valuesets": ["cond-hivv"]},
            {"type": "age", "min": 18, "max": 70, "mni": 3},
        ]
    }
    result = runner.invoke(app, ["trials", "validate", str(_write(tmp_path, trial))])
    assert f"  {first['id']}: field 'text' is required" in result.stderr
    assert f"{first['id']}: rule.all[1].age: unknown field 'mni'" in result.stderr
    assert f"{first['id']}: condition: unknown value set 'cond-hivv'; did you mean 'cond-hiv'?" in result.stderr


def test_validate_finds_an_id_used_twice_and_a_window_with_both_days_and_months(tmp_path: Path) -> None:
    trial = _bundled()
    second = trial["criteria"][1]
    second["id"] = trial["criteria"][0]["id"]
    second["rule"] = {
        "type": "immunization",
        "label": "x",
        "valuesets": ["vax-live"],
        "window": {"days": 3, "months": 1},
    }
    result = runner.invoke(app, ["trials", "validate", str(_write(tmp_path, trial))])
    assert f"{second['id']}: id used twice" in result.stderr
    assert (
        f"{second['id']}: rule.immunization.window: a window gives exactly one of `days` or `months`" in result.stderr
    )


def test_explain_says_the_lab_window_and_the_horizons_the_rules_default_to() -> None:
    result = runner.invoke(app, ["trials", "explain", str(SEED)])
    assert "Lab results: the latest within 28 days, unless a rule gives its own window" in result.stdout
    assert "for 60 months (diagnoses), 6 months (medicines)" in result.stdout
