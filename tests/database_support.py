"""The databases the store, replay-cache and feedback tests run on: SQLite always, and PostgreSQL when
TRIAL_CDS_TEST_POSTGRES_URL names a server (scripts/test.sh starts one with scripts/postgres). In CI
(CI=true) a missing PostgreSQL fails those tests instead of skipping them.

Each test gets an empty database of its own: a new SQLite file, or a new PostgreSQL database created on
the server for the test and dropped after it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL_VARIABLE = "TRIAL_CDS_TEST_POSTGRES_URL"
DATABASES = ("sqlite", "postgresql")


def postgres_server_url() -> str | None:
    return os.environ.get(POSTGRES_URL_VARIABLE) or None


def require_postgres() -> str:
    """The PostgreSQL server's URL; without one the test is skipped, or fails in CI."""
    url = postgres_server_url()
    if url is None:
        message = f"{POSTGRES_URL_VARIABLE} is not set (scripts/postgres start prints a URL)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {message}")
        pytest.skip(message)
    return url


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of ``kind`` ("sqlite" or "postgresql"), removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'cds.sqlite3'}"
        return
    server = make_url(require_postgres())
    name = f"trial_cds_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
