"""The population report, printed in the test run's summary when the population tests wrote it."""

from __future__ import annotations

import pytest
from synthea_population import WRITTEN_REPORTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in WRITTEN_REPORTS:
        terminalreporter.write_sep("=", f"Synthea population report ({path})")
        terminalreporter.write(path.read_text())
