"""The local engine's processes: forked from the command's process when it runs no other thread, so that
they inherit the trials it loaded; the trials loaded while the workers spill the input."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing.context import BaseContext
from pathlib import Path

from prescreen_support import PATIENT_BUNDLES

from cds.portfolio import load_portfolio
from cds.prescreen.local import Screening, worker_pool
from cds.prescreen.run import Inputs, Trials, prescreen

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
TRIAL = "npc-liver-mets-ldrt"


def _set_up() -> None:
    pass


def _start_method(pool: ProcessPoolExecutor) -> str:
    context: BaseContext = getattr(pool, "_mp_context")  # noqa: B009 (private: no public accessor)
    return context.get_start_method()


_FORKED = """
from datetime import UTC, datetime
from cds.prescreen import local
from cds.prescreen.local import Screening, worker_pool

def inherited() -> bool:
    return local._WORKER is not None

if __name__ == "__main__":
    local._WORKER = local.Screener(Screening(None, ("npc-liver-mets-ldrt",), datetime(2026, 11, 1, tzinfo=UTC)))
    with worker_pool(2) as pool:
        print(pool._mp_context.get_start_method(), all(pool.submit(inherited).result() for _ in range(4)))
"""


def test_workers_are_forked_and_inherit_what_this_process_loaded(tmp_path: Path) -> None:
    # In a process of its own: one that runs no other thread, as the command's (a test process may run some).
    script = tmp_path / "forked.py"
    script.write_text(_FORKED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["fork", "True"]


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
