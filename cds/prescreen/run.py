"""A pre-screen from inputs to outputs: spill the inputs by patient, screen the partitions on an engine,
merge each trial's ranked rows into its outputs.

The work folder (default ``<out>/.work``) holds the spill, keyed by the inputs' fingerprint, and beside it
the results of each evaluation — keyed by the inputs, the trials (their files and value sets) and the
evaluation date — one file per partition and trial with a done marker: a re-run with the same inputs,
trials and date spills nothing and screens only the partitions without a marker."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import cds
from cds.engine import TrialSpec
from cds.prescreen.local import (
    PartitionDone,
    Screener,
    Screening,
    is_done,
    pooled_spill,
    ranked_results,
    run_local,
    worker_pool,
)
from cds.prescreen.outputs import TrialSummary, owner_only_dir, write_outputs
from cds.prescreen.progress import Progress, say
from cds.prescreen.ranking import by_trial, rank
from cds.prescreen.screening import CandidateRow
from cds.prescreen.sources import BUNDLE_SUFFIXES, NDJSON_SUFFIXES, fingerprint, input_files, total_bytes
from cds.prescreen.spill import SpillManifest, partition_files, spill
from cds.valuesets import MAPPINGS_DIR

#: An engine other than the local one: the spill folder and the screening in, every row out.
Engine = Callable[[Path, Screening], Iterable[CandidateRow]]


@dataclass(frozen=True)
class Inputs:
    folder: Path
    bundles: bool

    def files(self) -> list[Path]:
        return input_files(self.folder, BUNDLE_SUFFIXES if self.bundles else NDJSON_SUFFIXES)


@dataclass(frozen=True)
class Outcome:
    summaries: list[TrialSummary]
    manifest: SpillManifest
    partitions: int
    skipped: int
    patients: int


def trials_fingerprint(trials_dir: Path | None, trial_ids: Iterable[str]) -> str:
    """A digest of what an evaluation depends on besides the data: the trial and value-set files (the
    bundled ones and the folder's), the trials chosen and the version of this software."""
    digest = hashlib.sha256(f"{cds.__version__}\0{','.join(sorted(trial_ids))}\n".encode())
    for root in (MAPPINGS_DIR, trials_dir):
        if root is None or not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
                digest.update(f"{path.relative_to(root)}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


#: What a run is screened with, given or loaded while the input is spilled: the screening and the trials.
Trials = tuple[Screening, Mapping[str, TrialSpec]]


def prescreen(
    inputs: Inputs,
    out_dir: Path,
    screening: Screening | None = None,
    trials: Mapping[str, TrialSpec] | None = None,
    *,
    workers: int,
    work_dir: Path | None = None,
    engine: Engine | None = None,
    prepare: Callable[[], Trials] | None = None,
) -> Outcome:
    """Pre-screen ``inputs`` into ``out_dir`` with ``screening`` and ``trials``, or with those ``prepare``
    gives — called in this process while the workers spill the input (loading the trials takes seconds)."""
    files = inputs.files()
    size = total_bytes(files)
    input_key = fingerprint(files)
    work = owner_only_dir(work_dir or out_dir / ".work")
    spill_dir = work / f"spill-{input_key[:16]}"

    kind = "Bundles" if inputs.bundles else "NDJSON files"
    say(f"{len(files)} {kind}, {size / 1e6:.1f} MB")
    screener: Screener | None = None

    def load_trials() -> None:
        nonlocal screening, trials, screener
        if prepare is not None:
            screening, trials = prepare()
        if engine is None and screening is not None:
            screener = Screener(screening)

    if (spill_dir / "manifest.json").is_file():
        load_trials()
        manifest = SpillManifest.read(spill_dir)
        say(f"grouped by patient already ({manifest.partitions} partitions): not spilled again")
    else:
        with (
            worker_pool(workers) if workers > 1 else nullcontext() as pool,
            Progress("grouping by patient", size, "bytes") as progress,
        ):
            runner = pooled_spill(pool, load_trials)
            manifest = spill(files, spill_dir, bundles=inputs.bundles, progress=progress.advance, runner=runner)
    _report_spill(manifest)
    if screening is None or trials is None:
        raise ValueError("prescreen: give the screening and the trials, or prepare")
    evaluation = trials_fingerprint(screening.trials_dir, screening.trial_ids)
    run_key = hashlib.sha256(f"{input_key}\0{evaluation}\0{screening.now.isoformat()}".encode()).hexdigest()
    results_dir = owner_only_dir(work / f"spill-{input_key[:16]}-results-{run_key[:16]}")

    parts = partition_files(spill_dir)
    if engine is not None:
        rows = rank(engine(spill_dir, screening))
        patients = len({r.patient_id for r in rows})
        summaries = write_outputs(by_trial(rows), out_dir, trials=trials, evaluated_at=screening.now)
        return Outcome(summaries, manifest, len(parts), 0, patients)

    todo = [p for p in parts if not is_done(results_dir, p)]
    skipped = len(parts) - len(todo)
    if skipped:
        say(f"{skipped} of {len(parts)} partitions screened by an earlier run: skipped")
    with Progress("screening", len(todo), "partitions") as progress:
        missing = 0

        def on_done(done: PartitionDone) -> None:
            nonlocal missing
            missing += done.without_patient
            progress.advance(1, done.patients)

        if screener is not None:
            screener.read_shared(spill_dir)
        run_local(todo, spill_dir, results_dir, screening, workers, on_done, screener)
    patients = progress.patients
    if missing:
        say(f"not screened: resources of {missing} patients whose Patient resource is not in the data")

    ranked = {tid: ranked_results(results_dir / tid) for tid in screening.trial_ids}
    summaries = write_outputs(ranked, out_dir, trials=trials, evaluated_at=screening.now)
    return Outcome(summaries, manifest, len(parts), skipped, patients)


def _report_spill(manifest: SpillManifest) -> None:
    """What was set aside, by resource type and count only."""
    say(
        f"{manifest.resources_read} resources read, {manifest.resources_spilled} of the types the criteria "
        f"read grouped into {manifest.partitions} partitions, {manifest.shared} shared (Medication)"
    )
    if manifest.files_not_read:
        skipped = sum(manifest.files_not_read.values())
        say(
            f"not opened, files of types no criterion reads: {skipped / 1e6:.1f} MB "
            f"({', '.join(manifest.files_not_read)})"
        )
    if manifest.not_read:
        say(f"not read by any criterion: {sum(manifest.not_read.values())} resources ({', '.join(manifest.not_read)})")
    if manifest.no_patient:
        listed = ", ".join(f"{k} × {v}" for k, v in manifest.no_patient.items())
        say(f"left out, naming no patient that can be told: {listed}")
    if manifest.unreadable:
        say(f"left out, not JSON or not a FHIR resource: {manifest.unreadable} lines or files")
