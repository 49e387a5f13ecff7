"""The local engine's processes: forked from the command's process when it runs no other thread, so that
they inherit the trials it loaded; the trials loaded while the workers spill the input."""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing.context import BaseContext
from pathlib import Path

from prescreen_support import PATIENT_BUNDLES

from cds.portfolio import load_portfolio
from cds.prescreen import local
from cds.prescreen.local import Screening, worker_pool
from cds.prescreen.run import Inputs, Trials, prescreen

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
TRIAL = "npc-liver-mets-ldrt"


def _inherited() -> bool:
    return local._WORKER is not None


def _set_up() -> None:
    pass


def _start_method(pool: ProcessPoolExecutor) -> str:
    context: BaseContext = getattr(pool, "_mp_context")  # noqa: B009 (private: no public accessor)
    return context.get_start_method()


def test_workers_are_forked_and_inherit_what_this_process_loaded(tmp_path: Path) -> None:
    local._WORKER = local.Screener(Screening(None, (TRIAL,), NOW))
    try:
        with worker_pool(2) as pool:
            assert _start_method(pool) == "fork"
            assert all(pool.submit(_inherited).result() for _ in range(4))
    finally:
        local._WORKER = None


def test_with_another_thread_running_workers_start_from_a_clean_process() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with worker_pool(2, _set_up) as pool:
            assert _start_method(pool) != "fork"
    finally:
        stop.set()
        thread.join()


def test_the_trials_are_loaded_once_while_the_input_is_spilled(tmp_path: Path) -> None:
    calls: list[bool] = []

    def prepare() -> Trials:
        # The spill is under way: its folder exists, unfinished.
        calls.append(any(tmp_path.glob("out/.work/spill-*.tmp")))
        return Screening(None, (TRIAL,), NOW), {TRIAL: load_portfolio().trials[TRIAL]}

    outcome = prescreen(Inputs(PATIENT_BUNDLES[0].parent, bundles=True), tmp_path / "out", workers=2, prepare=prepare)
    assert calls == [True]
    assert outcome.patients == len(PATIENT_BUNDLES)
