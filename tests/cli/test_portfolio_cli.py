"""The portfolio folder on the command line: TRIAL_CDS_TRIALS_DIR or --trials-dir, for every command."""

import json
import shutil
from pathlib import Path

import pytest
from fhir_builders import bundle, condition, patient
from portfolio_support import LOCAL_TRIAL, local_trial, trial_folder, write_yaml
from typer.testing import CliRunner

import cds.api.server
from cds.cli import app
from cds.valuesets import MAPPINGS_DIR

NOW = "2026-11-01T12:00:00Z"
runner = CliRunner()


def _bundle(tmp_path: Path, *resources: dict) -> Path:
    path = tmp_path / "patient.json"
    path.write_text(json.dumps(bundle(patient(), *resources)), encoding="utf-8")
    return path


def _screen(args: list[str], env: dict[str, str] | None = None) -> dict:
    result = runner.invoke(app, ["screen", *args, "--now", NOW, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_screen_runs_a_trial_folder_outside_the_package_on_its_own_value_set(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    has_it = _bundle(tmp_path, condition("I10", "Essential (primary) hypertension"))
    screened = _screen([str(has_it), "--trials-dir", str(folder)])
    assert screened["trial"] == LOCAL_TRIAL
    assert screened["criteria"][0]["status"] == "met"


def test_screen_reads_the_folder_from_the_setting(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    without = _bundle(tmp_path, condition("E11.9", "Type 2 diabetes mellitus without complications"))
    screened = _screen([str(without)], env={"TRIAL_CDS_TRIALS_DIR": str(folder)})
    assert screened["trial"] == LOCAL_TRIAL
    assert screened["criteria"][0]["status"] == "not_met"


def test_the_option_overrides_the_setting(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    has_it = _bundle(tmp_path, condition("I10", "Essential (primary) hypertension"))
    screened = _screen(
        [str(has_it), "--trials-dir", str(MAPPINGS_DIR / "trials"), "--trial", "npc-liver-mets-ldrt"],
        env={"TRIAL_CDS_TRIALS_DIR": str(folder)},
    )
    assert screened["trial"] == "npc-liver-mets-ldrt"


@pytest.mark.parametrize("command", [["screen"], ["trials"], ["serve"], ["check"]])
def test_trials_dir_is_shown_in_help_with_its_setting(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert "--trials-dir" in result.stdout
    assert "TRIAL_CDS_TRIALS_DIR" in result.stdout


def test_trials_lists_the_portfolio_with_status_count_and_source(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    write_yaml(folder / "closed-study.yaml", local_trial("closed-study", status="closed"))
    result = runner.invoke(app, ["trials", "--trials-dir", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"{LOCAL_TRIAL} — HTN-LOCAL" in result.stdout
    assert "[open, 1 criteria, local]" in result.stdout
    assert "closed-study — HTN-LOCAL" in result.stdout and "[closed, 1 criteria, local]" in result.stdout


def test_trials_says_the_bundled_portfolio_is_bundled() -> None:
    result = runner.invoke(app, ["trials"])
    assert "npc-liver-mets-ldrt — NPC-LDRT" in result.stdout
    assert "[open, 38 criteria, bundled]" in result.stdout


def test_a_closed_trial_is_listed_but_not_screened(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path, status="closed")
    has_it = _bundle(tmp_path, condition("I10", "Essential (primary) hypertension"))
    result = runner.invoke(app, ["screen", str(has_it), "--trials-dir", str(folder), "--trial", LOCAL_TRIAL])
    assert result.exit_code == 2
    assert "is closed" in result.stderr


def test_a_local_value_set_overrides_the_bundled_one_and_says_so(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    write_yaml(folder / f"{LOCAL_TRIAL}.yaml", local_trial(valueset="cond-gilbert"))
    # A hospital's Gilbert syndrome list that holds I10 (absurd clinically, unambiguous for the test).
    shutil.copy(MAPPINGS_DIR / "valuesets" / "cond-gilbert.yaml", folder / "valuesets" / "cond-gilbert.yaml")
    text = (folder / "valuesets" / "cond-gilbert.yaml").read_text(encoding="utf-8")
    (folder / "valuesets" / "cond-gilbert.yaml").write_text(
        text.replace(
            "code: E80.4\n  display: Gilbert syndrome", "code: I10\n  display: Essential (primary) hypertension"
        ),
        encoding="utf-8",
    )
    has_it = _bundle(tmp_path, condition("I10", "Essential (primary) hypertension"))
    result = runner.invoke(app, ["screen", str(has_it), "--trials-dir", str(folder), "--now", NOW, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "local value set 'cond-gilbert'" in result.stderr and "overrides the bundled one" in result.stderr
    assert json.loads(result.stdout)["criteria"][0]["status"] == "met"


def test_a_value_set_the_folder_lacks_is_named_by_validation(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    write_yaml(folder / f"{LOCAL_TRIAL}.yaml", local_trial(valueset="local-not-there"))
    result = runner.invoke(app, ["trials", "--trials-dir", str(folder)])
    assert result.exit_code == 2
    assert "unknown value set 'local-not-there'" in result.stderr


def test_serve_refuses_a_broken_folder_with_its_report_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the service was started")

    monkeypatch.setattr(cds.api.server, "run", refuse)
    folder = trial_folder(tmp_path)
    write_yaml(folder / f"{LOCAL_TRIAL}.yaml", local_trial(valueset="local-not-there"))
    result = runner.invoke(app, ["serve", "--trials-dir", str(folder), "--port", "1"])
    assert result.exit_code == 2
    assert "unknown value set 'local-not-there'" in result.stderr


def test_check_asks_only_the_searches_of_the_folder_s_trials(tmp_path: Path) -> None:
    from cds.fhir.check import service_templates
    from cds.portfolio import load_portfolio

    local = service_templates(load_portfolio(trial_folder(tmp_path)).open_trials)
    bundled = service_templates()
    assert any(t.startswith("Condition?") for t in local.values())
    assert not any(t.startswith("Observation?") for t in local.values())
    assert any(t.startswith("Observation?") for t in bundled.values())


def test_validate_checks_a_local_trial_on_the_value_sets_beside_it(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    result = runner.invoke(app, ["trials", "validate", str(folder / f"{LOCAL_TRIAL}.yaml")])
    assert result.exit_code == 0, result.output
    assert f"trial {LOCAL_TRIAL}" in result.stdout
