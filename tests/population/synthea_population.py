"""The Synthea population (scripts/synthea-population): find it, screen every patient Bundle the way
`trial-cds screen` does, and count what came out: the verdicts and, per criterion, how often it decided.

Used by tests/population/test_synthea_population.py and by scripts/population-report, so that a report
written now and one written after a change have the same shape and can be compared line by line."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from cds.assessment import Assessment, Verdict
from cds.engine import evaluate
from cds.fhir.decoding import decode_resource
from cds.portfolio import default_trials, load_trial_file
from cds.record import PatientRecord
from cds.trials import Trial

ENV = "TRIAL_CDS_SYNTHEA_POPULATION"  # the population's directory; scripts/test.sh sets it
ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "var" / "reports" / "synthea-population.md"
# Besides the bundled trials, the small test trial (adults 40–80, platelets, no HIV): the bundled trials ask
# for a nasopharyngeal carcinoma only our module's few patients have (docs/synthea-population.md), so
# "never a candidate" is checked of the dead of Synthea's ordinary modules under this one.
SECOND_TRIAL = ROOT / "tests" / "engine" / "data" / "trials" / "second-trial.yaml"
WRITTEN_REPORTS: list[Path] = []  # the reports this test run wrote, printed at its end (conftest.py here)


@dataclass(frozen=True)
class Population:
    directory: Path
    reference_date: date  # Synthea's simulation ends here (-r/-e): the population is screened on this day
    generator: str
    seed: int
    bundles: list[Path]

    @property
    def now(self) -> datetime:
        """The evaluation time: midday of the reference date, as the hand-built fixtures use."""
        d = self.reference_date
        return datetime(d.year, d.month, d.day, 12, 0, tzinfo=UTC)


class PopulationError(RuntimeError):
    pass


def load_population(directory: Path) -> Population:
    """Read population.json (written last by scripts/synthea-population) and list the Bundles."""
    manifest = directory / "population.json"
    if not manifest.is_file():
        raise PopulationError(f"{directory} is not a finished population (no population.json)")
    about = json.loads(manifest.read_text())
    bundles = sorted((directory / "fhir").glob("*.json"))
    if not bundles:
        raise PopulationError(f"{directory}/fhir holds no Bundle")
    return Population(
        directory=directory,
        reference_date=date.fromisoformat(about["reference_date"]),
        generator=str(about["generator"]),
        seed=int(about["seed"]),
        bundles=bundles,
    )


def population_from_env() -> Population | None:
    value = os.environ.get(ENV)
    return load_population(Path(value)) if value else None


def screening_trials() -> dict[str, Trial]:
    """The trials the population is screened with: every bundled trial, then the test trial."""
    second = load_trial_file(SECOND_TRIAL)
    return {**default_trials(), second.id: second}


# ---------------------------------------------------------------------------------------------------
# Screening, as `trial-cds screen` does (cds/cli.py): lean decoding, orjson where it cannot say, then
# the record of the Bundle and the engine.


def read_bundle(path: Path) -> Any:
    raw = path.read_bytes()
    data: Any = decode_resource(raw)
    return data if data is not None else orjson.loads(raw)


def screen_bundle(path: Path, trials: Mapping[str, Trial], now: datetime) -> dict[str, Assessment]:
    """One Bundle with each trial: read and recorded once, as `trial-cds screen` does for each file."""
    data = read_bundle(path)
    if not isinstance(data, Mapping) or data.get("resourceType") != "Bundle":
        raise PopulationError(f"{path.name}: not a FHIR Bundle")
    record = PatientRecord.from_bundle(data)
    return {trial_id: evaluate(trial, record, now) for trial_id, trial in trials.items()}


@dataclass(frozen=True)
class PatientFacts:
    """What the tests know of a Bundle without the engine: read from the plain JSON."""

    resources: int
    patients: int
    deceased: str | None  # the deceasedDateTime, "yes" for deceasedBoolean true, None when alive


def patient_facts(path: Path) -> PatientFacts:
    bundle = orjson.loads(path.read_bytes())
    resources = [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    deceased: str | None = None
    for p in patients:
        if p.get("deceasedDateTime"):
            deceased = str(p["deceasedDateTime"])
        elif p.get("deceasedBoolean") is True:
            deceased = "yes"
    return PatientFacts(resources=len(resources), patients=len(patients), deceased=deceased)


def bundle_resources(path: Path) -> dict[str, dict[str, Any]]:
    """The Bundle's resources by "Type/id", the form of an assessment's `evidence` references."""
    bundle = orjson.loads(path.read_bytes())
    out: dict[str, dict[str, Any]] = {}
    for e in bundle.get("entry", []):
        r = e.get("resource")
        if isinstance(r, dict) and r.get("resourceType") and r.get("id"):
            out[f"{r['resourceType']}/{r['id']}"] = r
    return out


@dataclass(frozen=True)
class Screened:
    path: Path
    facts: PatientFacts
    assessments: dict[str, Assessment]  # by trial id
    errors: dict[str, str]  # by trial id: the exception, when screening raised one


def screen_population(population: Population, trials: Mapping[str, Trial]) -> list[Screened]:
    out: list[Screened] = []
    for path in population.bundles:
        assessments: dict[str, Assessment] = {}
        errors: dict[str, str] = {}
        try:
            assessments = screen_bundle(path, trials, population.now)
        except Exception as exc:  # the test reports every crash, with its Bundle, rather than the first
            errors = dict.fromkeys(trials, f"{type(exc).__name__}: {exc}")
        out.append(Screened(path=path, facts=patient_facts(path), assessments=assessments, errors=errors))
    return out


# ---------------------------------------------------------------------------------------------------
# Counting.


@dataclass
class CriterionCounts:
    kind: str
    statuses: Counter[str] = field(default_factory=Counter)
    ruled_out: int = 0  # patients this criterion ruled out
    ruled_out_alone: int = 0  # ... with no other criterion ruling them out
    exclusion_reasons: Counter[str] = field(default_factory=Counter)  # the reasons given when an exclusion met


@dataclass
class TrialTally:
    verdicts: Counter[str] = field(default_factory=Counter)
    verdicts_deceased: Counter[str] = field(default_factory=Counter)
    criteria: dict[str, CriterionCounts] = field(default_factory=dict)
    errors: int = 0


def tally(screened: Iterable[Screened], trials: Mapping[str, Trial]) -> dict[str, TrialTally]:
    out = {
        trial_id: TrialTally(criteria={c.id: CriterionCounts(kind=c.kind) for c in trial.criteria})
        for trial_id, trial in trials.items()
    }
    for s in screened:
        for trial_id, t in out.items():
            if trial_id in s.errors:
                t.errors += 1
                continue
            a = s.assessments[trial_id]
            t.verdicts[a.verdict.value] += 1
            if s.facts.deceased:
                t.verdicts_deceased[a.verdict.value] += 1
            deciding = [c for c in a.criteria if c.rules_out]
            for c in a.criteria:
                counts = t.criteria.setdefault(c.id, CriterionCounts(kind=c.kind))
                counts.statuses[c.status.value] += 1
            for c in deciding:
                t.criteria[c.id].ruled_out += 1
                if c.kind == "exclusion":
                    t.criteria[c.id].exclusion_reasons[c.reason] += 1
                if len(deciding) == 1:
                    t.criteria[c.id].ruled_out_alone += 1
    return out


def render(population: Population, screened: list[Screened], tallies: Mapping[str, TrialTally]) -> str:
    """The report, in Markdown. Its shape stays fixed so that two reports compare with diff."""
    resources = sum(s.facts.resources for s in screened)
    deceased = sum(1 for s in screened if s.facts.deceased)
    lines = [
        "# Synthea population: verdicts and what decided them",
        "",
        f"- Population: {population.generator}, seed {population.seed}, "
        f"{len(screened)} patient Bundles ({deceased} deceased), {resources:,} resources",
        f"- Evaluated at: {population.now.isoformat()} (the population's reference date)",
    ]
    for trial_id, t in tallies.items():
        lines += ["", f"## Trial {trial_id}", "", "| verdict | patients | of them deceased |", "|---|---:|---:|"]
        for v in Verdict:
            lines.append(f"| {v.value} | {t.verdicts[v.value]} | {t.verdicts_deceased[v.value]} |")
        lines.append(f"| (screening raised an error) | {t.errors} | |")
        lines += [
            "",
            "Per criterion: how often each status came out; *rules out*: the patients it made not eligible "
            "(an inclusion not met, an exclusion met); *alone*: those it was the only criterion to rule out.",
            "",
            "| criterion | kind | met | not met | unknown | rules out | alone |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for cid, c in t.criteria.items():
            s = c.statuses
            lines.append(
                f"| {cid} | {c.kind} | {s['met']} | {s['not_met']} | {s['unknown']} | {c.ruled_out} "
                f"| {c.ruled_out_alone} |"
            )
        lines += ["", "Why the exclusions applied (each reason as given, with how many patients it was given for):"]
        for cid, c in t.criteria.items():
            if c.exclusion_reasons:
                lines += ["", f"- {cid}:"]
                for reason, n in sorted(c.exclusion_reasons.items(), key=lambda rn: (-rn[1], rn[0])):
                    lines.append(f"  - {n} × {reason}")
    return "\n".join(lines) + "\n"


def errors_of(screened: Iterable[Screened]) -> Iterator[str]:
    for s in screened:
        for trial_id, error in s.errors.items():
            yield f"{s.path.name} [{trial_id}]: {error}"


# ---------------------------------------------------------------------------------------------------
# The report as a command (scripts/population-report runs it): before and after a change, diff the two.


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path)
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    directory = args.directory
    if directory is None:
        where = subprocess.run(
            [str(ROOT / "scripts" / "synthea-population"), "--path"], capture_output=True, text=True, check=True
        )
        directory = Path(where.stdout.strip())
    population = load_population(directory)
    trials = screening_trials()
    screened = screen_population(population, trials)
    text = render(population, screened, tally(screened, trials))
    for s in screened:
        for trial_id, error in s.errors.items():
            print(f"error: {s.path.name} [{trial_id}]: {error}", file=sys.stderr)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    sys.stdout.write(text)
    return 1 if any(s.errors for s in screened) else 0


if __name__ == "__main__":
    sys.exit(main())
