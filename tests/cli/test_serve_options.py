"""`trial-cds serve` refuses options it cannot honour, before anything is started (exit 2)."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

import cds.api.server
from cds.cli import app


@pytest.fixture(autouse=True)
def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the service was started")

    monkeypatch.setattr(cds.api.server, "run", refuse)


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1"])
def test_a_port_outside_1_to_65535_is_refused(port: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--demo", "--port", port])
    assert result.exit_code == 2
    assert "--port" in result.output


def test_several_workers_on_a_database_in_memory_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAL_CDS_DATABASE_URL", "sqlite://")
    result = CliRunner().invoke(app, ["serve", "--demo", "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers 2 needs one database for every worker" in result.output


def test_no_workers_is_refused() -> None:
    result = CliRunner().invoke(app, ["serve", "--demo", "--workers", "0"])
    assert result.exit_code == 2
    assert "--workers" in result.output


def test_a_port_in_use_is_named_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--demo", "--port", str(port)])
    assert result.exit_code == 2
    assert f"port {port} is in use on 127.0.0.1" in result.output
