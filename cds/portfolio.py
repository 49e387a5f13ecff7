"""The portfolio: the trials a server or a command runs, and the value sets they read.

By default the bundled trials (``fhir_mappings/trials``) on the bundled value sets. A hospital's folder
(``TRIAL_CDS_TRIALS_DIR`` or ``--trials-dir``) replaces the bundled trials — the folder is the portfolio —
and its optional ``valuesets/`` folder is layered over the bundled value sets: a local set of the same name
overrides the bundled one (each override is reported at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cds.trials import Trial, load_trials
from cds.valuesets import MAPPINGS_DIR, ValueSetLibrary, default_library, read_valuesets

Source = Literal["bundled", "local"]


@dataclass(frozen=True)
class Portfolio:
    #: Every trial of the folder by id, open and closed (closed ones are listed, never screened).
    trials: dict[str, Trial]
    library: ValueSetLibrary
    folder: Path
    source: Source
    #: Local value sets that replace a bundled set of the same name.
    overrides: tuple[str, ...] = ()

    @property
    def open_trials(self) -> dict[str, Trial]:
        return {tid: t for tid, t in self.trials.items() if t.status == "open"}


def load_portfolio(trials_dir: Path | None = None) -> Portfolio:
    """The trials of ``trials_dir`` (default: the bundled ones) on the layered value sets. Raises
    ``TrialError`` or ``ValueSetError`` with the validation report of a broken folder."""
    bundled = default_library()
    if trials_dir is None:
        folder = MAPPINGS_DIR / "trials"
        return Portfolio(load_trials(folder, bundled), bundled, folder, "bundled")
    local_sets = read_valuesets(trials_dir / "valuesets")
    overrides = tuple(sorted(name for name in local_sets if name in bundled))
    library = bundled.layered(local_sets) if local_sets else bundled
    return Portfolio(load_trials(trials_dir, library), library, trials_dir, "local", overrides)


def override_lines(portfolio: Portfolio) -> list[str]:
    """One sentence per local value set that replaces a bundled one, for a person at start-up."""
    return [
        f"local value set {name!r} ({portfolio.folder / 'valuesets'}) overrides the bundled one"
        for name in portfolio.overrides
    ]
