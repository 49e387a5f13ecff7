"""Fixtures shared by the test folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from database_support import DATABASES, fresh_database


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for one test, on SQLite and on PostgreSQL (tests/database_support.py)."""
    with fresh_database(request.param, tmp_path) as url:
        yield url
