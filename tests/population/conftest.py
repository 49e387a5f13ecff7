"""The Synthea population and its screening, shared by the population tests (once per run: screening every
Bundle with every trial takes a while); the population report, printed in the test run's summary when the
population tests wrote it."""

from __future__ import annotations

import os

import pytest
from synthea_population import (
    ENV,
    WRITTEN_REPORTS,
    Population,
    PopulationError,
    Screened,
    population_from_env,
    screen_population,
    screening_trials,
)

from cds.trials import Trial


@pytest.fixture(scope="session")
def population() -> Population:
    try:
        found = population_from_env()
    except PopulationError as exc:
        pytest.fail(f"{ENV}: {exc}")
    if found is None:
        reason = f"no Synthea population: {ENV} is not set (scripts/test.sh sets it from scripts/synthea-population)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def trials() -> dict[str, Trial]:
    return screening_trials()


@pytest.fixture(scope="session")
def screened(population: Population, trials: dict[str, Trial]) -> list[Screened]:
    return screen_population(population, trials)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in WRITTEN_REPORTS:
        terminalreporter.write_sep("=", f"Synthea population report ({path})")
        terminalreporter.write(path.read_text())
