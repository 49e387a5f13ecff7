"""The local engine: the partitions of a spill screened by a process pool over this machine's cores, each
worker loading the trials once. A partition's results are written by its worker, atomically, then its done
marker: a re-run skips every partition with a marker (cds.prescreen.run)."""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

import cds
from cds.engine import TrialSpec
from cds.portfolio import load_portfolio
from cds.prescreen.outputs import FILE_MODE, owner_only_dir
from cds.prescreen.ranking import merge_ranked, rank
from cds.prescreen.screening import CandidateRow, screen_entries
from cds.prescreen.shared import SharedResources
from cds.prescreen.spill import SHARED_FILE, partition_name, read_partition
from cds.valuesets import ValueSetLibrary

DONE_SUFFIX = ".done"


@dataclass(frozen=True)
class PartitionDone:
    """A screened partition, without PHI: its index and counts."""

    index: int
    patients: int
    resources: int
    #: Patient ids that resources name but no Patient resource of the data has: not screened.
    without_patient: int = 0


@dataclass(frozen=True)
class Screening:
    """What every partition is screened with: the portfolio folder and trials, the evaluation date."""

    trials_dir: Path | None
    trial_ids: tuple[str, ...]
    now: datetime


class Screener:
    """A worker's state: the trials, the value sets and the shared resources, loaded once."""

    def __init__(self, screening: Screening, spill_dir: Path) -> None:
        portfolio = load_portfolio(screening.trials_dir)
        self.trials: Sequence[TrialSpec] = [portfolio.trials[tid] for tid in screening.trial_ids]
        self.library: ValueSetLibrary = portfolio.library
        self.now = screening.now
        self.shared = load_shared(spill_dir / SHARED_FILE)
        # As `trial-cds screen`: the long-lived trials out of the cyclic collector's sight, and fewer
        # young collections while thousands of a record's containers are made and freed.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*cds.GC_THRESHOLDS)

    def screen_partition(self, part: Path, results_dir: Path) -> PartitionDone:
        rows: list[CandidateRow] = []
        patients = resources = without_patient = 0
        for _, entries, medication_refs in read_partition(part):
            resources += len(entries)
            screened = screen_entries(entries, medication_refs, self.shared, self.trials, self.library, self.now)
            if screened:
                patients += 1
                rows.extend(screened)
            else:  # resources naming a Patient the data does not hold: nobody to screen
                without_patient += 1
        index = int(part.stem.rsplit("-", 1)[1])
        write_results(results_dir, index, rank(rows), [t.id for t in self.trials])
        done = PartitionDone(index, patients, resources, without_patient)
        _write_atomic(results_dir / f"{partition_name(index)}{DONE_SUFFIX}", orjson.dumps(done))
        return done


def load_shared(path: Path) -> SharedResources:
    if not path.is_file():
        return SharedResources()
    with path.open("rb") as handle:
        return SharedResources.from_resources(orjson.loads(line) for line in handle if line.strip())


def write_results(results_dir: Path, index: int, ranked: list[CandidateRow], trial_ids: Sequence[str]) -> None:
    """A partition's rows, ranked, one file per trial: ``<trial>/part-NNNNN.jsonl``."""
    per_trial: dict[str, list[bytes]] = {tid: [] for tid in trial_ids}
    for row in ranked:
        per_trial.setdefault(row.trial_id, []).append(orjson.dumps(row) + b"\n")
    for tid, lines in per_trial.items():
        folder = owner_only_dir(results_dir / tid)
        _write_atomic(folder / f"{partition_name(index)}.jsonl", b"".join(lines))


def read_results(path: Path) -> Iterator[CandidateRow]:
    with path.open("rb") as handle:
        for line in handle:
            yield CandidateRow.from_json(orjson.loads(line))


#: Result files merged at once: more partitions are merged in rounds through intermediate files, so that
#: the open files stay well under a process's limit.
MERGE_FANIN = 256


def ranked_results(folder: Path) -> Iterator[CandidateRow]:
    """A trial's rows from its partitions' result files (``folder/part-*.jsonl``, each ranked), merged into
    one ranking, read lazily; intermediate files of a merge in rounds are removed once read."""
    runs = sorted(folder.glob("part-*.jsonl"))
    intermediate: list[Path] = []
    level = 0
    while len(runs) > MERGE_FANIN:
        merged: list[Path] = []
        for start in range(0, len(runs), MERGE_FANIN):
            target = folder / f"merge-{level}-{start // MERGE_FANIN:05d}.jsonl"
            rows = merge_ranked(read_results(path) for path in runs[start : start + MERGE_FANIN])
            _write_atomic(target, (orjson.dumps(row) + b"\n" for row in rows))
            merged.append(target)
        intermediate.extend(merged)
        runs, level = merged, level + 1
    yield from merge_ranked(read_results(path) for path in runs)
    for path in intermediate:
        path.unlink(missing_ok=True)


def is_done(results_dir: Path, part: Path) -> bool:
    return (results_dir / f"{part.stem}{DONE_SUFFIX}").is_file()


def _write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """``data`` written beside ``path`` (owner-only), then renamed to it: a file is whole or absent."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with open(fd, "wb") as handle:
        if isinstance(data, bytes):
            handle.write(data)
        else:
            handle.writelines(data)
    os.replace(tmp, path)


_WORKER: Screener | None = None


def _start_worker(screening: Screening, spill_dir: Path) -> None:
    global _WORKER
    _WORKER = Screener(screening, spill_dir)


def _screen_in_worker(part: Path, results_dir: Path) -> PartitionDone:
    assert _WORKER is not None, "the pool's initializer loads the trials"
    return _WORKER.screen_partition(part, results_dir)


def run_local(
    parts: Sequence[Path],
    spill_dir: Path,
    results_dir: Path,
    screening: Screening,
    workers: int,
    on_done: Callable[[PartitionDone], None],
) -> None:
    """Screen ``parts`` on ``workers`` processes (one: in this process), calling ``on_done`` as each ends."""
    if not parts:
        return
    if workers <= 1:
        screener = Screener(screening, spill_dir)
        for part in parts:
            on_done(screener.screen_partition(part, results_dir))
        return
    # Workers started from a clean process (forkserver, else spawn), not forked from this one: the progress
    # bar's thread may hold a lock at the moment of a fork, which a forked worker would then wait on forever.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(
        max_workers=min(workers, len(parts)),
        mp_context=multiprocessing.get_context(method),
        initializer=_start_worker,
        initargs=(screening, spill_dir),
    ) as pool:
        # A bounded number in flight: submitted as workers free up, so that an interrupted run leaves
        # little half-done work and the order of completion stays close to the partitions' order.
        pending = iter(parts)
        running: set[Future[PartitionDone]] = set()
        for part in pending:
            running.add(pool.submit(_screen_in_worker, part, results_dir))
            if len(running) >= 2 * workers:
                break
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                on_done(future.result())
                following = next(pending, None)
                if following is not None:
                    running.add(pool.submit(_screen_in_worker, following, results_dir))
