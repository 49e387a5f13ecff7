"""`trial-cds serve` as a process reloads its trial folder on SIGHUP: a new trial appears, and a broken folder
is refused (an error with the validation report) while the running portfolio keeps answering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from portfolio_support import LOCAL_TRIAL, local_trial, trial_folder, write_yaml
from served_support import free_port

TRIAL_CDS = Path(sys.executable).with_name("trial-cds")


def _until(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return 0


@pytest.fixture
def served_folder(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    folder = trial_folder(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAL_CDS_")}
    env |= {
        "TRIAL_CDS_AUTH": "none",
        "TRIAL_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'served.sqlite3'}",
        "TRIAL_CDS_TRIALS_DIR": str(folder),
    }
    port = free_port()
    process = subprocess.Popen(
        [str(TRIAL_CDS), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: process.poll() is not None or _status(f"{url}/health") == 200, "the server to start")
        assert process.poll() is None, process.communicate()[1]
        yield url, folder, process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_sighup_serves_a_trial_added_to_the_folder(served_folder: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, folder, process = served_folder
    assert _status(f"{url}/trials/second-study") == 404
    write_yaml(folder / "second-study.yaml", local_trial("second-study"))
    process.send_signal(signal.SIGHUP)
    _until(lambda: _status(f"{url}/trials/second-study") == 200, "the new trial after SIGHUP")
    assert process.poll() is None


def test_sighup_on_a_broken_folder_keeps_the_old_portfolio_and_logs_the_report(
    served_folder: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    url, folder, process = served_folder
    write_yaml(folder / "second-study.yaml", local_trial("second-study", valueset="local-not-there"))
    process.send_signal(signal.SIGHUP)
    time.sleep(3)  # the reload runs off the event loop; a refused one changes nothing to wait for
    assert _status(f"{url}/trials/{LOCAL_TRIAL}") == 200
    assert _status(f"{url}/trials/second-study") == 404
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    refused = [json.loads(line) for line in stderr.splitlines() if "portfolio.reload_refused" in line]
    assert refused and refused[0]["level"] == "error"
    assert "unknown value set 'local-not-there'" in refused[0]["report"]
