"""Progress of a pre-screen for the person running it: a rich progress bar with rate and ETA on a
terminal, plain log lines otherwise (a job's log). Counts only: never a patient id or any other PHI."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

#: Seconds between two plain progress lines.
LOG_EVERY = 10.0


def say(message: str, stream: TextIO | None = None) -> None:
    print(f"prescreen: {message}", file=stream or sys.stderr, flush=True)


class Progress:
    """Counts ``total`` steps (bytes spilled, partitions screened) and the patients screened."""

    def __init__(self, label: str, total: int, unit: str, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.patients = 0
        self.started = time.monotonic()
        self.logged = self.started
        self.bar: Any = None
        self._advance: Callable[[int, int], None] | None = None

    def __enter__(self) -> Progress:
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn() if self.unit == "bytes" else MofNCompleteColumn(),
                TextColumn("" if self.unit == "bytes" else self.unit),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
                # Redrawn on each step rather than by a thread: the engine's workers are forked from this
                # process, which a thread holding a lock at that moment would leave locked in them.
                auto_refresh=False,
            )
            bar.start()
            task = bar.add_task(self.label, total=self.total, rate="")

            def advance(steps: int, patients: int) -> None:
                bar.update(task, advance=steps, rate=self._rate())
                bar.refresh()

            self.bar = bar
            self._advance = advance
        return self

    def advance(self, steps: int, patients: int = 0) -> None:
        self.done += steps
        self.patients += patients
        if self._advance is not None:
            self._advance(steps, patients)
            return
        now = time.monotonic()
        if now - self.logged >= LOG_EVERY or self.done >= self.total:
            self.logged = now
            done = (
                f"{self.done / 1e6:.0f}/{self.total / 1e6:.0f} MB"
                if self.unit == "bytes"
                else f"{self.done}/{self.total} {self.unit}"
            )
            rate = self._rate()
            say(f"{self.label}: {done}{', ' + rate if rate else ''}, ETA {self._eta()}", self.stream)

    def _rate(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{self.patients} patients ({self.patients / elapsed:.1f}/s)" if self.patients else ""

    def _eta(self) -> str:
        if not self.done:
            return "unknown"
        elapsed = time.monotonic() - self.started
        left = elapsed * (self.total - self.done) / self.done
        return time.strftime("%H:%M:%S", time.gmtime(left))

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()
