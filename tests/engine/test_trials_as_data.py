"""Trials are data: a second trial needs no code change, and a broken trial file is refused clearly."""

from pathlib import Path

import pytest
from engine_support import NOW
from fhir_builders import condition, immunization, lab, patient
from typer.testing import CliRunner

from cds.cli import app
from cds.engine import evaluate
from cds.portfolio import load_trial_file, load_trials
from cds.record import PatientRecord
from cds.trials import TrialError

DATA = Path(__file__).parent / "data" / "trials"
SHARED_IDS = [
    "inc_age",
    "inc_sex_not_pregnant",
    "inc_histology",
    "inc_stage_ivb",
    "inc_liver_metastasis",
    "inc_ecog",
    "inc_measurable_lesion",
    "inc_anc",
    "inc_platelets",
    "inc_hemoglobin",
    "inc_coagulation",
    "inc_renal",
    "inc_bilirubin",
    "inc_transaminases",
    "exc_local_recurrence",
    "exc_major_vessel_invasion",
    "exc_recent_anticancer_therapy",
    "exc_prior_checkpoint_inhibitor",
    "exc_autoimmune",
    "exc_other_malignancy",
    "exc_immunosuppression",
    "exc_uncontrolled_diabetes",
    "exc_electrolytes",
    "exc_hypoalbuminemia",
    "exc_lung_disease",
    "exc_active_infection",
    "exc_hiv",
    "exc_hepatitis",
    "exc_major_surgery",
    "exc_transplant",
    "exc_cardiovascular",
    "exc_bleeding",
    "exc_hypersensitivity",
    "exc_neuropathy",
    "exc_live_vaccine",
    "exc_substance_or_condition",
    "exc_pregnant_breastfeeding",
    "exc_investigator_judgement",
]
JUDGEMENT = {
    "inc_measurable_lesion",
    "exc_major_vessel_invasion",
    "exc_substance_or_condition",
    "exc_investigator_judgement",
}


def test_the_seed_trial_declares_exactly_the_38_criteria_of_the_criteria_file() -> None:
    trial = load_trials()["npc-liver-mets-ldrt"]
    assert [c.id for c in trial.criteria] == SHARED_IDS
    assert {c.id for c in trial.criteria if c.judgement} == JUDGEMENT


def test_a_second_trial_loads_and_evaluates_with_no_code_change() -> None:
    trial = load_trial_file(DATA / "second-trial.yaml")
    record = PatientRecord.from_resources(
        [
            patient(birth_date="1960-01-01"),
            lab("777-3", "Platelets", 180, "10*3/uL", "2026-10-25"),
            immunization("21", "varicella", "2026-09-20"),
        ]
    )
    a = evaluate(trial, record, NOW)
    statuses = {c.id: c.status.value for c in a.criteria}
    assert statuses == {
        "inc_adult_40_80": "met",
        "inc_platelets_150": "met",
        "exc_hiv_or_vaccine": "met",
        "exc_judgement": "unknown",
    }
    assert a.verdict.value == "not_eligible"


def test_second_trial_without_exclusions_is_likely_eligible() -> None:
    trial = load_trial_file(DATA / "second-trial.yaml")
    record = PatientRecord.from_resources(
        [patient(birth_date="1960-01-01"), lab("777-3", "Platelets", 180, "10*3/uL", "2026-10-25")]
    )
    assert evaluate(trial, record, NOW).verdict.value == "likely_eligible"


def test_hiv_condition_excludes_in_the_second_trial() -> None:
    trial = load_trial_file(DATA / "second-trial.yaml")
    record = PatientRecord.from_resources([patient(), condition("B20", "HIV disease")])
    assert next(c for c in evaluate(trial, record, NOW).criteria if c.id == "exc_hiv_or_vaccine").status == "met"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = """id: broken
title: t
short_name: b
description: d
source: s
criteria:
  - id: inc_x
    kind: inclusion
    text: x
    rule: {RULE}
"""


def test_unknown_rule_kind_is_refused_located_by_its_criterion_id(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("{RULE}", "{type: horoscope}"))
    with pytest.raises(TrialError) as err:
        load_trial_file(path)
    assert "inc_x: rule: unknown rule type 'horoscope'" in str(err.value)


def test_unknown_value_set_is_refused_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("{RULE}", "{type: condition, label: x, valuesets: [no-such-set]}"))
    with pytest.raises(TrialError, match="no-such-set"):
        load_trial_file(path)


def test_lab_threshold_in_a_unit_that_does_not_convert_is_refused(tmp_path: Path) -> None:
    text = BASE.replace("{RULE}", "{type: lab, test: plt, op: '>=', value: 100, unit: mg/dL}") + (
        "tests:\n  plt: {label: Platelets, valuesets: [lab-platelets], unit: 10*9/L}\n"
    )
    with pytest.raises(TrialError, match="does not convert"):
        load_trial_file(_write(tmp_path, text))


def test_cli_trials_validate_accepts_a_good_file_and_rejects_a_bad_one(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(app, ["trials", "validate", str(DATA / "second-trial.yaml")])
    assert good.exit_code == 0, good.output
    bad = runner.invoke(app, ["trials", "validate", str(_write(tmp_path, BASE.replace("{RULE}", "{type: horoscope}")))])
    assert bad.exit_code == 1
