"""`trial-cds serve` as a process: what a hospital's log collector reads on stderr is JSON, line by line (the
plain start-up summary aside), uvicorn's own lines included, and the header cap holds at the socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from served_support import free_port

TRIAL_CDS = Path(sys.executable).with_name("trial-cds")
MAX_HEADER_BYTES = 4096


@dataclass
class Served:
    url: str
    port: int
    process: subprocess.Popen[str]

    def stop(self) -> str:
        """Stops the service (as Ctrl-C does) and returns everything it wrote to stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=30)
        return err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAL_CDS_")}
    env |= {
        "TRIAL_CDS_AUTH": "none",
        "TRIAL_CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'served.sqlite3'}",
        "TRIAL_CDS_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    }
    port = free_port()
    process = subprocess.Popen(
        [str(TRIAL_CDS), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    service = Served(f"http://127.0.0.1:{port}", port, process)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"trial-cds serve exited: {service.stop()}")
        try:
            if httpx.get(f"{service.url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            service.stop()
            pytest.fail("trial-cds serve did not start")
        time.sleep(0.2)
    try:
        yield service
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def json_lines(stderr: str) -> tuple[list[dict[str, object]], list[str]]:
    """The JSON log lines, and every other line (the plain start-up summary is the only one allowed)."""
    records, others = [], []
    for line in stderr.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            others.append(line)
    return records, others


def test_every_log_line_of_a_served_process_is_json_uvicorns_included(served: Served) -> None:
    raw_exchange(served.port, b"NOT HTTP AT ALL\r\n\r\n")  # uvicorn itself warns about this one
    stderr = served.stop()
    records, others = json_lines(stderr)
    summary = [line for line in others if line.strip()]
    assert summary and summary[0].startswith("trial-cds"), stderr
    assert all(line.startswith("  ") for line in summary[1:]), summary  # the summary block, nothing else
    uvicorn_lines = [r for r in records if str(r.get("logger", "")).startswith("uvicorn")]
    events = [str(r["event"]) for r in uvicorn_lines]
    assert any("Uvicorn running on" in e for e in events), events
    assert any("Invalid HTTP request" in e for e in events), events
    assert any(r["event"] == "service.start" for r in records)


def test_headers_over_the_cap_are_refused_at_the_socket_with_a_431_outcome(served: Served) -> None:
    padding = b"X-Padding: " + b"p" * (64 * 1024) + b"\r\n"
    request = b"GET /cds-services HTTP/1.1\r\nHost: localhost\r\n" + padding + b"\r\n"
    answer = raw_exchange(served.port, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), head
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "too-long"
    response = httpx.get(f"{served.url}/cds-services", headers={"X-Small": "ok"})  # still serving
    assert response.status_code == 200
    records, _ = json_lines(served.stop())
    # Refused by the protocol before the headers were all read: the app never saw this request.
    assert not any(r["event"] == "request_headers_too_large" for r in records)


def test_the_socket_and_the_app_draw_the_header_cap_at_the_same_byte(served: Served) -> None:
    host = b"Host: localhost\r\n"  # counted as sent: name + value + ": " + CRLF = 17 bytes

    def get_with_padding(size: int) -> bytes:
        padding = b"X-Padding: " + b"p" * size + b"\r\n"
        return raw_exchange(served.port, b"GET /health HTTP/1.1\r\n" + host + padding + b"Connection: close\r\n\r\n")

    fixed = len(host) + len(b"X-Padding: \r\n") + len(b"Connection: close\r\n")
    assert get_with_padding(MAX_HEADER_BYTES - fixed).startswith(b"HTTP/1.1 200")
    assert get_with_padding(MAX_HEADER_BYTES - fixed + 1).startswith(b"HTTP/1.1 431")
