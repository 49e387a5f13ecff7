"""The portfolio: the trials a server or a command runs, and the value sets they read.

By default the bundled trials (``fhir_mappings/trials``) on the bundled value sets. A hospital's folder
(``TRIAL_CDS_TRIALS_DIR`` or ``--trials-dir``) replaces the bundled trials — the folder is the portfolio —
and its optional ``valuesets/`` folder is layered over the bundled value sets: a local set of the same name
overrides the bundled one (each override is reported at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError

from cds.authoring import schema_problems
from cds.trials import Trial, TrialError, check_trial
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
    library, overrides = layered_library(trials_dir, bundled)
    return Portfolio(load_trials(trials_dir, library), library, trials_dir, "local", overrides)


def layered_library(
    trials_dir: Path, bundled: ValueSetLibrary | None = None
) -> tuple[ValueSetLibrary, tuple[str, ...]]:
    """The bundled value sets with those of ``trials_dir/valuesets`` over them, and the names a local set
    overrides. A folder without value sets of its own reads the bundled ones alone."""
    base = bundled or default_library()
    local_sets = read_valuesets(trials_dir / "valuesets")
    overrides = tuple(sorted(name for name in local_sets if name in base))
    return (base.layered(local_sets) if local_sets else base), overrides


def override_lines(portfolio: Portfolio) -> list[str]:
    """One sentence per local value set that replaces a bundled one, for a person at start-up."""
    return [
        f"local value set {name!r} ({portfolio.folder / 'valuesets'}) overrides the bundled one"
        for name in portfolio.overrides
    ]


def load_trial_file(path: Path, library: ValueSetLibrary | None = None) -> Trial:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TrialError(f"{path}: cannot read: {exc}") from exc
    try:
        trial = Trial.model_validate(raw)
    except ValidationError as exc:
        problems = schema_problems(exc, raw)
        lines = [f"{path}: not a valid trial file ({len(problems)} problems)", *(f"  {p}" for p in problems)]
        raise TrialError("\n".join(lines)) from None
    problems = list(dict.fromkeys(check_trial(trial, library or default_library())))
    if problems:
        raise TrialError(f"{path}: {len(problems)} problems\n" + "\n".join(f"  {p}" for p in problems))
    return trial


def load_trials(directory: Path | None = None, library: ValueSetLibrary | None = None) -> dict[str, Trial]:
    base = directory or (MAPPINGS_DIR / "trials")
    trials: dict[str, Trial] = {}
    for path in sorted(base.glob("*.yaml")):
        trial = load_trial_file(path, library)
        if trial.id != path.stem:
            raise TrialError(f"{path}: trial id {trial.id!r} differs from the file name")
        trials[trial.id] = trial
    if not trials:
        raise TrialError(f"no trial files in {base}")
    return trials


@lru_cache(maxsize=1)
def default_trials() -> dict[str, Trial]:
    return load_trials()
