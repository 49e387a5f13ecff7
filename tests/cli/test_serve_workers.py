"""`trial-cds serve --workers N`: several processes on one database (SQLite file or PostgreSQL, the
``database_url`` fixture), as a real subprocess on a free loopback port. A token's jti is refused the second
time whichever worker it reaches, because the replay cache is in the shared database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml
from joserfc import jwt
from joserfc.jwk import ECKey
from served_support import free_port

AUDIENCE = "https://cds.example.org/cds-services"
ISS = "https://ehr.example.com/"


@pytest.fixture(scope="module")
def key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": "workers-384"}, auto_kid=False)


@pytest.fixture
def jwks_url(key: ECKey) -> Iterator[str]:
    """The EHR's key set, served on loopback (plain http is accepted there, for development)."""
    body = json.dumps({"keys": [key.as_dict(private=False)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


def token(key: ECKey) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "sub": "ehr-client", "aud": AUDIENCE, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return jwt.encode({"alg": "ES384", "typ": "JWT", "kid": key.kid}, claims, key, algorithms=["ES384"])


def service_environment(tmp_path: Path, jwks_url: str, database_url: str) -> dict[str, str]:
    clients = tmp_path / "clients.yaml"
    clients.write_text(yaml.safe_dump([{"name": "Example EHR", "iss": ISS, "jwks_url": jwks_url}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAL_CDS_")}
    env.update(
        TRIAL_CDS_AUTH="jwt",
        TRIAL_CDS_CLIENTS_FILE=str(clients),
        TRIAL_CDS_AUDIENCE=AUDIENCE,
        TRIAL_CDS_DATABASE_URL=database_url,
        TRIAL_CDS_PUBLIC_BASE_URL="https://cds.example.org",
    )
    return env


def worker_pids(supervisor: int) -> list[int]:
    """uvicorn's worker processes: the supervisor's children started by multiprocessing's spawn (not its
    resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    workers = []
    for pid in pids:
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
        except OSError:
            pass  # gone meanwhile
    return workers


def wait_until_serving(base: str, process: subprocess.Popen[bytes], workers: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0].decode()[-3000:]
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200 and len(worker_pids(process.pid)) >= workers:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the service did not answer on {base} within {timeout_s} s")


def test_a_replayed_token_is_refused_by_every_worker(
    tmp_path: Path, key: ECKey, jwks_url: str, database_url: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "cds.cli", "serve", "--port", str(port), "--workers", "2"],
        env=service_environment(tmp_path, jwks_url, database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(base, process, workers=2)
        assert len(worker_pids(process.pid)) == 2
        used = token(key)
        # A new connection each time: the kernel hands each to whichever worker accepts first, so the
        # replays reach both workers, and none of them may accept the token again.
        first = httpx.get(f"{base}/cds-services", headers={"Authorization": f"Bearer {used}"})
        assert first.status_code == 200, first.text
        replays = [
            httpx.get(f"{base}/cds-services", headers={"Authorization": f"Bearer {used}"}).status_code
            for _ in range(12)
        ]
        assert replays == [401] * 12
        fresh = [
            httpx.get(f"{base}/cds-services", headers={"Authorization": f"Bearer {token(key)}"}).status_code
            for _ in range(4)
        ]
        assert fresh == [200] * 4
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
