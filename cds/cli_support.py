"""What the commands of `trial-cds` share: the trials folder option, the portfolio it loads, the
evaluation date, and the one way a command fails (cds/cli.py, cds/prescreen/cli.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cds.portfolio import Portfolio, load_portfolio, override_lines
from cds.trials import TrialError
from cds.valuesets import ValueSetError


def fail(message: str, code: int = 2) -> None:
    """Say what is wrong on stderr and exit with ``code`` (2: a usage error)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


#: The portfolio folder option of every command that loads trials: the setting, overridden on the command line.
TrialsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--trials-dir",
        envvar="TRIAL_CDS_TRIALS_DIR",
        help="Folder of trial files (*.yaml), with optional valuesets/ layered over the bundled value sets "
        "(default: the bundled trials).",
    ),
]


def checked_portfolio(trials_dir: Path | None) -> Portfolio:
    """The portfolio of ``trials_dir`` (default: the bundled trials), its overrides said on stderr; a
    broken folder: its validation report, and exit 2."""
    try:
        portfolio = load_portfolio(trials_dir)
    except (TrialError, ValueSetError) as exc:
        fail(str(exc))
        raise  # unreachable: fail exits
    for line in override_lines(portfolio):
        typer.echo(f"note: {line}", err=True)
    return portfolio


def parse_now(now: str | None) -> datetime:
    """The evaluation date-time of ``--now`` (ISO-8601, UTC when no zone is given); None: now."""
    if now is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--now {now!r} is not an ISO-8601 date or date-time")
        raise
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
