"""The local engine: a process pool over this machine's cores that spills the input's chunks, then another
that screens the spill's partitions. The trials are loaded once, in this process, while the workers spill:
the screening's workers are forked from it and inherit them (a fresh process would pay some 4 s to import
and load them). A partition's results are written by its worker, atomically, then its done marker: a re-run
skips every partition with a marker (cds.prescreen.run)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import orjson

import cds
from cds.engine import TrialSpec
from cds.portfolio import load_portfolio
from cds.prescreen.outputs import FILE_MODE, owner_only_dir
from cds.prescreen.ranking import merge_ranked, rank
from cds.prescreen.screening import CandidateRow, screen_entries
from cds.prescreen.shared import SharedResources
from cds.prescreen.spill import (
    Chunk,
    ChunkCounts,
    ChunkRunner,
    Partition,
    partition_name,
    read_partition,
    shared_files,
    spill_chunk,
    spill_in_order,
)
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

    def __init__(self, screening: Screening, spill_dir: Path | None = None) -> None:
        portfolio = load_portfolio(screening.trials_dir)
        self.trials: Sequence[TrialSpec] = [portfolio.trials[tid] for tid in screening.trial_ids]
        self.library: ValueSetLibrary = portfolio.library
        self.now = screening.now
        self.shared = SharedResources() if spill_dir is None else load_shared(spill_dir)
        # As `trial-cds screen`: the long-lived trials out of the cyclic collector's sight, and fewer
        # young collections while thousands of a record's containers are made and freed.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*cds.GC_THRESHOLDS)

    def read_shared(self, spill_dir: Path) -> None:
        """The spill's shared resources, once it is complete (the trials were loaded while it ran)."""
        self.shared = load_shared(spill_dir)

    def screen_partition(self, part: Partition, results_dir: Path) -> PartitionDone:
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
        index = part.index
        write_results(results_dir, index, rank(rows), [t.id for t in self.trials])
        done = PartitionDone(index, patients, resources, without_patient)
        _write_atomic(results_dir / f"{partition_name(index)}{DONE_SUFFIX}", orjson.dumps(done))
        return done


def load_shared(spill_dir: Path) -> SharedResources:
    def resources() -> Iterator[dict[str, object]]:
        for path in shared_files(spill_dir):
            with path.open("rb") as handle:
                yield from (orjson.loads(line) for line in handle if line.strip())

    return SharedResources.from_resources(resources())


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


def is_done(results_dir: Path, part: Partition) -> bool:
    return (results_dir / f"{part.name}{DONE_SUFFIX}").is_file()


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


def _screen_in_worker(part: Partition, results_dir: Path) -> PartitionDone:
    assert _WORKER is not None, "forked from the process that loaded the trials, or loaded by the initializer"
    return _WORKER.screen_partition(part, results_dir)


def _started() -> int:
    return os.getpid()


@contextmanager
def worker_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> Iterator[ProcessPoolExecutor]:
    """``workers`` processes, started now. Forked from this process when it runs no other thread: they
    inherit what it has loaded. Else (a progress bar's thread, which may hold a lock at the moment of a
    fork that a forked worker would then wait on forever) started from a clean process — forkserver, else
    spawn — and set up by ``initializer``."""
    methods = multiprocessing.get_all_start_methods()
    # (Linux only: macOS's system libraries are not safe to use in a forked child, Python's reason for spawn
    # being its default there.)
    if threading.active_count() == 1 and "fork" in methods and sys.platform == "linux":
        context: BaseContext = multiprocessing.get_context("fork")
        initializer = None
        initargs = ()
    else:
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        pool.submit(_started)  # forks every worker now, before any thread of this process starts
        try:
            yield pool
        except BaseException:
            # (A bad option found while the workers spill: what is not begun is not waited for.)
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def pooled_spill(pool: ProcessPoolExecutor | None, meanwhile: Callable[[], None]) -> ChunkRunner:
    """A :data:`cds.prescreen.spill.ChunkRunner` on ``pool`` (None: in this process) that runs ``meanwhile``
    in this process once the chunks are handed out (loading the trials while the workers spill)."""

    def run(chunks: list[Chunk], folder: Path, partitions: int, bundles: bool) -> Iterator[tuple[Chunk, ChunkCounts]]:
        if pool is None:
            meanwhile()
            yield from spill_in_order(chunks, folder, partitions, bundles)
            return
        futures = {pool.submit(spill_chunk, chunk, folder, partitions, bundles): chunk for chunk in chunks}
        meanwhile()
        for future in as_completed(futures):
            yield futures[future], future.result()

    return run


def run_local(
    parts: Sequence[Partition],
    spill_dir: Path,
    results_dir: Path,
    screening: Screening,
    workers: int,
    on_done: Callable[[PartitionDone], None],
    screener: Screener | None = None,
) -> None:
    """Screen ``parts`` on ``workers`` processes (one: in this process), calling ``on_done`` as each ends.
    ``screener``: the trials already loaded in this process (else loaded here), which forked workers
    inherit."""
    global _WORKER
    if not parts:
        return
    if screener is None:
        screener = Screener(screening, spill_dir)
    if workers <= 1:
        for part in parts:
            on_done(screener.screen_partition(part, results_dir))
        return
    _WORKER = screener
    try:
        with worker_pool(min(workers, len(parts)), _start_worker, (screening, spill_dir)) as pool:
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
    finally:
        _WORKER = None
