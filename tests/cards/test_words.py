"""What people read says it once, in plain words, with one date format ("7 Dec 2026") everywhere, and
counts as the card counts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from api_support import NOW as DEMO_NOW
from api_support import make_client, patients
from engine_support import NOW, assess, assess_all
from fhir_builders import condition
from typer.testing import CliRunner

from cds.assessment import Status
from cds.cards import card, clinical_dates, clinical_day, counts_line
from cds.cli import app, render_text
from cds.engine import evaluate
from cds.fhir.load import LoadResult
from cds.order_cards import order_warning_card
from cds.orders import order_impacts
from cds.portfolio import default_trials, load_trial_file
from cds.record import PatientRecord

runner = CliRunner()
ROOT = Path(__file__).parents[2]
FIXTURES = sorted((ROOT / "fixtures" / "patients").glob("*.json"))
TRIAL_FILES = sorted((ROOT / "fhir_mappings" / "trials").glob("*.yaml"))
ISO_DAY = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
PEMBROLIZUMAB_ORDER = {
    "resourceType": "MedicationRequest",
    "id": "draft-pembro",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1547545", "display": "pembrolizumab"}
        ],
        "text": "Pembrolizumab",
    },
    "subject": {"reference": "Patient/npc-01"},
}


def labels(rule: Any) -> list[str]:
    found = [rule.label] if isinstance(getattr(rule, "label", None), str) else []
    for name in ("all", "any"):
        for part in getattr(rule, name, None) or []:
            found += labels(part)
    if getattr(rule, "not_", None) is not None:
        found += labels(rule.not_)
    return found


@pytest.mark.parametrize("path", TRIAL_FILES, ids=lambda p: p.stem)
def test_no_rule_label_starts_with_an_article(path: Path) -> None:
    """Labels are read after "no …" and before ": …": "no a cancer diagnosis" is what an article gives."""
    trial = load_trial_file(path)
    with_article = [label for c in trial.criteria for label in labels(c.rule) if re.match(r"(a|an|the) ", label, re.I)]
    assert with_article == []


def test_an_absent_ambiguous_cancer_reads_no_cancer_diagnosis() -> None:
    reason = assess("exc_other_malignancy", []).reason
    assert "no cancer diagnosis that may be this NPC" in reason
    assert "no a " not in reason


def test_neuropathy_without_a_grade_names_the_diagnosis_and_what_is_missing() -> None:
    c = assess("exc_neuropathy", [condition("G62.0", "Drug-induced polyneuropathy")])
    assert c.reason == "peripheral neuropathy: Drug-induced polyneuropathy (G62.0), grade/severity not recorded"
    assert c.missing == ["grade/severity not recorded"]


def test_a_reason_shared_by_nested_rules_is_said_once() -> None:
    a = evaluate(default_trials()["npc-liver-mets-ldrt"], PatientRecord.from_resources([]), NOW)
    for c in a.criteria:
        parts = c.reason.split("; ")
        assert len(parts) == len(set(parts)), c.reason
    sex = next(c for c in a.criteria if c.id == "inc_sex_not_pregnant")
    assert sex.reason.count("no Patient resource in the record") == 1


def test_load_of_a_bundle_without_a_patient_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def uploaded(*_: Any, **__: Any) -> list[LoadResult]:
        return [LoadResult(source="orgs.json", resources=2, statuses={"201": 2}, patient_ids=[])]

    monkeypatch.setattr("cds.fhir.load.load_files", uploaded)
    result = runner.invoke(app, ["load", str(tmp_path / "orgs.json"), "--fhir", "https://fhir.example.org/r4"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "orgs.json: 2 resources (2 created, 0 unchanged or updated), no Patient resource"


# ---------------------------------------------------------------------------------------------------
# One date format for people


def test_the_one_formatter_writes_days_as_clinicians_do() -> None:
    assert clinical_dates("since 2026-12-07, ended 2026-13-01") == "since 7 Dec 2026, ended 2026-13-01"
    assert clinical_day("2026-12-07") == "7 Dec 2026"
    assert clinical_day(DEMO_NOW.date()) == "1 Nov 2026"


def test_the_order_card_writes_dates_as_the_patient_view_card_does() -> None:
    trials = list(default_trials().values())
    _, impacts = order_impacts(
        trials,
        list(patients()["npc-01"].resources),
        [PEMBROLIZUMAB_ORDER],
        patient_id="npc-01",
        now=DEMO_NOW,
        evaluate=evaluate,
    )
    detail = order_warning_card(impacts[0], base_url="https://cds.example.org", patient_id="npc-01")["detail"]
    assert "(screened 1 Nov 2026)" in detail
    assert ISO_DAY.search(detail) is None, detail


def test_screen_text_writes_dates_as_the_card_does() -> None:
    bundle = next(p for p in FIXTURES if p.name.startswith("43-"))  # cisplatin 10 days ago: dated reasons
    result = runner.invoke(app, ["screen", str(bundle), "--trial", "npc-liver-mets-ldrt", "--now", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert "(evaluated 1 Nov 2026)" in result.stdout
    assert ISO_DAY.search(result.stdout) is None, result.stdout


def test_the_activity_page_writes_days_as_the_cards_do(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    html = client.get("/trials/npc-liver-mets-ldrt/activity?days=3").text
    assert "30 Oct 2026 to 1 Nov 2026" in html
    assert ISO_DAY.search(html.split("<body>", 1)[1]) is None


# ---------------------------------------------------------------------------------------------------
# screen's counts are the card's


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_screen_text_counts_as_the_card_counts(path: Path) -> None:
    trial = default_trials()["npc-liver-mets-ldrt"]
    (record,) = PatientRecord.each_from_bundle(json.loads(path.read_bytes()))
    a = evaluate(trial, record, NOW)
    text = render_text(a, path)
    assert f"  {counts_line(a)} (evaluated 1 Nov 2026)" in text.splitlines()
    assert counts_line(a) in card(a, trial, base_url="https://cds.example.org", patient_id="p")["summary"]


def test_an_absent_exclusion_counts_as_met_in_screen_text() -> None:
    a = assess_all([])  # nothing recorded: the exclusions are satisfied, the inclusions mostly not met
    absent_exclusions = sum(1 for c in a.criteria if c.kind == "exclusion" and c.status.value == "not_met")
    met_inclusions = sum(1 for c in a.criteria if c.kind == "inclusion" and c.status.value == "met")
    assert absent_exclusions > 0
    counts = render_text(a).splitlines()[1]
    assert counts.startswith(f"  {a.count(Status.NOT_MET) - absent_exclusions} not met, ")
    assert f"{absent_exclusions + met_inclusions} of 38 criteria met" in counts
