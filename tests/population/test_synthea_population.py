"""Over a population nobody here wrote: every patient Bundle Synthea generated (scripts/synthea-population),
screened with every bundled trial on the population's reference date.

scripts/test.sh generates (or reuses) the population and names it in TRIAL_CDS_SYNTHEA_POPULATION. Without
it these tests skip, except in CI (CI=true), where a missing population is a failure (the fixtures:
conftest.py here)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import orjson
import pytest
from api_support import assert_spec_card
from population_checks import stale_exclusions
from synthea_population import (
    REPORT,
    SECOND_TRIAL,
    WRITTEN_REPORTS,
    Population,
    Screened,
    errors_of,
    read_bundle,
    render,
    tally,
)

from cds.assessment import Assessment, Status, Verdict
from cds.cards import card
from cds.portfolio import default_trials
from cds.record import PatientRecord
from cds.trials import Trial

pytestmark = pytest.mark.population


def assessments(screened: list[Screened], trials: dict[str, Trial]) -> Iterator[tuple[Screened, Trial, Assessment]]:
    for s in screened:
        for trial_id, a in s.assessments.items():
            yield s, trials[trial_id], a


def test_the_population_is_a_few_hundred_patient_bundles(population: Population, screened: list[Screened]) -> None:
    assert len(population.bundles) >= 100
    assert all(s.facts.patients == 1 for s in screened), "Synthea writes one patient per Bundle"
    assert any(s.facts.deceased for s in screened), "the population keeps the dead (only_alive_patients = false)"


def test_no_bundle_makes_screening_raise(screened: list[Screened]) -> None:
    assert list(errors_of(screened)) == []


def test_every_assessment_is_well_formed(
    screened: list[Screened], population: Population, trials: dict[str, Trial]
) -> None:
    for s, trial, a in assessments(screened, trials):
        where = f"{s.path.name} [{trial.id}]"
        assert Assessment.model_validate(a.model_dump()) == a, where
        assert a.trial_id == trial.id and a.evaluated_at == population.now, where
        assert a.patient.startswith("Patient/") and a.patient != "Patient/", where
        assert [c.id for c in a.criteria] == [c.id for c in trial.criteria], where
        for c in a.criteria:
            assert c.status in (Status.MET, Status.NOT_MET, Status.UNKNOWN), f"{where} {c.id}"
            assert c.reason.strip(), f"{where} {c.id}: empty reason"


def test_every_patient_view_card_follows_the_spec(screened: list[Screened], trials: dict[str, Trial]) -> None:
    for s, trial, a in assessments(screened, trials):
        patient_id = a.patient.removeprefix("Patient/")
        c = card(a, trial, base_url="https://cds.example.org", patient_id=patient_id, user_id="Practitioner/dr-1")
        try:
            assert_spec_card(c)
        except AssertionError as exc:
            raise AssertionError(f"{s.path.name} [{trial.id}]: {exc}") from exc


def test_a_deceased_patient_is_never_a_candidate(screened: list[Screened], trials: dict[str, Trial]) -> None:
    candidates = [
        f"{s.path.name} [{trial.id}] died {s.facts.deceased}: {a.verdict.value}"
        for s, trial, a in assessments(screened, trials)
        if s.facts.deceased and a.verdict in (Verdict.LIKELY_ELIGIBLE, Verdict.NEEDS_REVIEW)
    ]
    assert candidates == []


def test_no_exclusion_rests_on_an_entry_older_than_its_rules_horizon(
    screened: list[Screened], trials: dict[str, Trial]
) -> None:
    """Real exports leave entries "active" for decades: an exclusion must never be decided by such an entry
    alone (population_checks reads currency apart from the engine, so that it can catch the engine)."""
    stale: list[str] = []
    for s, trial, a in assessments(screened, trials):
        if any(c.rules_out for c in a.criteria):
            record = PatientRecord.from_bundle(read_bundle(s.path))
            stale += [f"{s.path.name} [{trial.id}]: {x}" for x in stale_exclusions(record, trial, a)]
    assert stale == []


def test_trial_cds_screen_gives_the_same_verdicts(
    screened: list[Screened], population: Population, trials: dict[str, Trial]
) -> None:
    """The command itself, over the whole population in one run per trial: exit 0, one JSON line per Bundle."""
    bundled = default_trials()
    for trial_id in trials:
        if trials[trial_id].status == "closed":
            continue  # listed, not screened: `screen --trial` refuses it (tests/cli)
        # The test trial is not bundled: the command reads it from its folder (the hidden --trials-dir).
        folder = [] if trial_id in bundled else ["--trials-dir", str(SECOND_TRIAL.parent)]
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                "from cds.cli import main; main()",
                "screen",
                *folder,
                "--trial",
                trial_id,
                "--now",
                population.now.isoformat(),
                "--format",
                "json",
                *map(str, population.bundles),
            ],
            capture_output=True,
            timeout=600,
            check=False,
        )
        assert run.returncode == 0, run.stderr.decode()[-2000:]
        lines = run.stdout.decode().splitlines()
        assert len(lines) == len(population.bundles), trial_id
        verdicts = [orjson.loads(line)["verdict"] for line in lines]
        assert verdicts == [s.assessments[trial_id].verdict.value for s in screened], trial_id


def test_the_verdicts_and_exclusions_are_counted_and_reported(
    screened: list[Screened], population: Population, trials: dict[str, Trial]
) -> None:
    tallies = tally(screened, trials)
    for trial_id, t in tallies.items():
        assert sum(t.verdicts.values()) + t.errors == len(screened), trial_id
        assessed = sum(t.verdicts.values())
        for criterion_id, c in t.criteria.items():
            assert sum(c.statuses.values()) == assessed, f"{trial_id} {criterion_id}"
            assert c.ruled_out_alone <= c.ruled_out <= c.statuses["not_met" if c.kind == "inclusion" else "met"]
        assert sum(c.ruled_out_alone for c in t.criteria.values()) <= t.verdicts[Verdict.NOT_ELIGIBLE.value]
    text = render(population, screened, tallies)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    WRITTEN_REPORTS.append(REPORT)
