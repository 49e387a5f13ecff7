"""Reloading the portfolio in a running server (SIGHUP): the new trials and value sets are built whole,
then one reference is swapped; a broken folder is refused with its validation report and the running
portfolio kept."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from cds.api.services import AppState, served_portfolio
from cds.logging_setup import get_logger
from cds.portfolio import Portfolio, load_portfolio
from cds.trials import TrialError
from cds.valuesets import ValueSetError
from hooks import HOOKS

log = get_logger("trial-cds.api")


def log_overrides(portfolio: Portfolio) -> None:
    for name in portfolio.overrides:
        log.info("portfolio.valueset_override", valueset=name, folder=str(portfolio.folder / "valuesets"))


def reload_portfolio(state: AppState) -> bool:
    """Load the trial folder of the settings again; serve it if it is valid (True), else log the report
    and keep serving the old one (False)."""
    folder = state.settings.trials_dir
    try:
        portfolio = load_portfolio(folder)
    except (TrialError, ValueSetError) as exc:
        log.error("portfolio.reload_refused", folder=str(folder) if folder else "bundled", report=str(exc))
        return False
    log_overrides(portfolio)
    # Built whole before the swap: a request reads ``state.served`` once and finishes on what it read.
    state.served = served_portfolio(HOOKS, portfolio.trials, portfolio.library, state.custom_evaluate)
    log.info("portfolio.reloaded", trials=sorted(portfolio.trials), open=sorted(portfolio.open_trials))
    return True


def install_sighup(state: AppState) -> bool:
    """Reload on SIGHUP (off the event loop: loading value sets takes a while). False where signals cannot
    be handled here: not the main thread (a test client), or no SIGHUP (Windows)."""
    loop = asyncio.get_running_loop()

    def on_hup() -> None:
        loop.run_in_executor(None, reload_portfolio, state)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        return False
    return True


def remove_sighup() -> None:
    loop: Any = asyncio.get_running_loop()
    with contextlib.suppress(AttributeError, NotImplementedError, RuntimeError, ValueError):
        loop.remove_signal_handler(signal.SIGHUP)
