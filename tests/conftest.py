"""Test helpers live in modules beside the tests (builders, engine_support, api_support)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config: pytest.Config) -> None:
    # The `browser` marker: tests/browser (headless Chromium).
    config.addinivalue_line("markers", "browser: drives headless Chromium (/usr/bin/chromium) with Playwright")
