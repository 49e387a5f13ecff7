"""The `trial-cds` command line: screen prints the documented shapes; bad input gets a clear error."""

import itertools
import json
from pathlib import Path

from typer.testing import CliRunner

from cds.cli import app

FIXTURES = sorted((Path(__file__).parents[2] / "fixtures" / "patients").glob("*.json"))
NOW = "2026-11-01T12:00:00Z"
SEED = ["--trial", "npc-liver-mets-ldrt"]  # several trials are bundled: screen names the one
runner = CliRunner()


def test_screen_json_prints_one_object_per_bundle_with_all_38_criteria() -> None:
    result = runner.invoke(app, ["screen", *map(str, FIXTURES), *SEED, "--now", NOW, "--format", "json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(FIXTURES)
    for line in lines:
        obj = json.loads(line)
        assert set(obj) == {"patient", "trial", "verdict", "criteria"}
        assert obj["patient"].startswith("Patient/")
        assert obj["trial"] == "npc-liver-mets-ldrt"
        assert obj["verdict"] in ("likely_eligible", "needs_review", "not_eligible")
        assert len(obj["criteria"]) == 38
        for c in obj["criteria"]:
            assert set(c) == {"id", "kind", "status", "reason", "evidence"}
            assert c["kind"] in ("inclusion", "exclusion")
            assert c["status"] in ("met", "not_met", "unknown")
            assert c["reason"]


def test_screen_json_matches_the_expected_outcome_of_a_fixture() -> None:
    bundle = next(p for p in FIXTURES if p.name.startswith("01-"))
    result = runner.invoke(app, ["screen", str(bundle), *SEED, "--now", NOW, "--format", "json"])
    assert json.loads(result.stdout)["verdict"] == "likely_eligible"


def test_screen_text_is_a_checklist() -> None:
    bundle = next(p for p in FIXTURES if p.name.startswith("01-"))
    result = runner.invoke(app, ["screen", str(bundle), *SEED, "--now", NOW])
    assert result.exit_code == 0
    assert "LIKELY ELIGIBLE" in result.stdout
    assert "[x] inc_anc: ANC" in result.stdout


def test_screen_rejects_a_file_that_is_not_a_bundle(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Patient", "id": "x"}')
    result = runner.invoke(app, ["screen", str(bad), *SEED])
    assert result.exit_code == 1
    assert "not a FHIR Bundle" in result.output


def test_screen_rejects_malformed_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert runner.invoke(app, ["screen", str(bad), *SEED]).exit_code == 1


def test_screen_rejects_an_unknown_trial() -> None:
    result = runner.invoke(app, ["screen", str(FIXTURES[0]), "--trial", "nope"])
    assert result.exit_code == 2
    assert "unknown trial" in result.output


def test_screen_rejects_a_bad_evaluation_date() -> None:
    result = runner.invoke(app, ["screen", str(FIXTURES[0]), "--now", "yesterday"])
    assert result.exit_code == 2


def test_trials_lists_every_criterion() -> None:
    result = runner.invoke(app, ["trials"])
    assert result.exit_code == 0
    # One block per trial of the portfolio: its heading line, then one indented line per criterion.
    assert "\nnpc-liver-mets-ldrt " in result.stdout
    after = result.stdout.split("\nnpc-liver-mets-ldrt ", 1)[1].split("\n")[1:]
    assert len(list(itertools.takewhile(lambda line: line.startswith("  "), after))) == 38
