"""A FHIR server that is slow, fails, rate-limits or pages its own way, over a real socket.

A small HTTP server on 127.0.0.1 (a thread of this test process, no FHIR_BASE_URL needed) serves one
fixture patient under several base URLs, each with one misbehaviour. The service must answer 412 within
its time budget when the data cannot be had, and retry (bounded, inside the budget) when the server asks
it to with Retry-After.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from itest_support import FIXTURES, SERVICE, card_assessments, hook_request, make_app_client, read_json, screen_offline

from cds.fhir.load import bundle_resources

pytestmark = pytest.mark.integration

BUDGET_S = 1.5
#: The budget of the retry test: room for one Retry-After: 1 wait.
RETRY_BUDGET_S = 4.0
#: How much later than the budget a 412 may come (scheduling, the engine, the test client).
SLACK_S = 1.0
PATIENT = "npc-01"
FIXTURE = FIXTURES / "01-base-male-eligible.json"


class _Stub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.resources = resources
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Stub

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the slow mode)
            pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        # /<mode>/fhir/<Type>[/<id>]
        if len(segments) < 3 or segments[1] != "fhir":
            self._send(404, _outcome("not-found"))
            return
        mode, rest = segments[0], segments[2:]
        with self.server.lock:
            self.server.requests[mode] += 1
            first_time = self.server.requests[f"{mode} {self.path}"] == 0
            self.server.requests[f"{mode} {self.path}"] += 1
        if mode == "slow":
            time.sleep(5)
        elif mode == "fail503":
            self._send(503, _outcome("transient"))
            return
        elif mode == "ratelimit":
            self._send(429, _outcome("throttled"), {"Retry-After": "120"})
            return
        elif mode == "retry" and first_time:
            self._send(503, _outcome("transient"), {"Retry-After": "1"})
            return
        self._serve(mode, rest, parse_qs(parts.query))

    def _serve(self, mode: str, rest: list[str], query: dict[str, list[str]]) -> None:
        rtype = rest[0]
        if len(rest) == 2:
            if mode == "gone":
                self._send(410, _outcome("deleted"))
                return
            for r in self.server.resources:
                if r["resourceType"] == rtype and r["id"] == rest[1]:
                    self._send(200, r)
                    return
            self._send(404, _outcome("not-found"))
            return
        patient = (query.get("patient") or [""])[0]
        matches = [
            r
            for r in self.server.resources
            if r["resourceType"] == rtype and mode != "gone" and json.dumps(r).find(f'"Patient/{patient}"') >= 0
        ]
        if mode == "offset":
            # _offset paging of at most 2 per page whatever _count says, and no Bundle.total.
            offset = int((query.get("_offset") or ["0"])[0])
            page = matches[offset : offset + 2]
            links = [
                {
                    "relation": "self",
                    "url": f"{self.server.root}/offset/fhir/{rtype}?patient={patient}&_offset={offset}",
                }
            ]
            if offset + 2 < len(matches):
                links.append(
                    {
                        "relation": "next",
                        "url": f"{self.server.root}/offset/fhir/{rtype}?patient={patient}&_offset={offset + 2}",
                    }
                )
            self._send(
                200,
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "link": links,
                    "entry": [{"resource": r} for r in page],
                },
            )
            return
        self._send(
            200,
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(matches),
                "entry": [{"resource": r} for r in matches],
            },
        )


def _outcome(code: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code}]}


MODES = ("ok", "slow", "fail503", "ratelimit", "offset", "gone")


@pytest.fixture(scope="module")
def stub() -> Iterator[_Stub]:
    server = _Stub(bundle_resources(read_json(FIXTURE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def service(stub: _Stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    bases = [f"{stub.root}/{mode}/fhir" for mode in MODES]
    database = tmp_path_factory.mktemp("service") / "cds.sqlite3"
    with make_app_client(bases, database, time_budget_s=BUDGET_S) as client:
        yield client


@pytest.fixture(scope="module")
def patient_service(stub: _Stub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The service with a budget long enough for one retry after Retry-After: 1."""
    database = tmp_path_factory.mktemp("service") / "cds.sqlite3"
    with make_app_client([f"{stub.root}/retry/fhir"], database, time_budget_s=RETRY_BUDGET_S) as client:
        yield client


def _call(service: TestClient, stub: _Stub, mode: str) -> tuple[Any, float]:
    started = time.perf_counter()
    response = service.post(SERVICE, json=hook_request(PATIENT, f"{stub.root}/{mode}/fhir", None))
    return response, time.perf_counter() - started


def test_well_behaved_stub_gives_the_offline_answer(stub: _Stub, service: TestClient, trials: dict[str, Any]) -> None:
    response, _ = _call(service, stub, "ok")
    assert response.status_code == 200, response.text
    assert card_assessments(response.json()) == screen_offline(trials, read_json(FIXTURE))


@pytest.mark.parametrize("mode", ["slow", "fail503", "ratelimit"])
def test_unavailable_data_is_412_within_the_budget(stub: _Stub, service: TestClient, mode: str) -> None:
    response, elapsed = _call(service, stub, mode)
    assert response.status_code == 412, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert elapsed < BUDGET_S + SLACK_S, f"{mode}: answered after {elapsed:.2f} s (budget {BUDGET_S} s)"


def test_rate_limit_beyond_the_budget_is_not_waited_for(stub: _Stub, service: TestClient) -> None:
    """Retry-After: 120 does not fit in the budget: no retry, a quick 412."""
    with stub.lock:
        before = stub.requests["ratelimit"]
    response, elapsed = _call(service, stub, "ratelimit")
    assert response.status_code == 412
    assert elapsed < BUDGET_S
    with stub.lock:
        made = stub.requests["ratelimit"] - before
    assert made <= 9, f"one request per prefetch key, no retries ({made} requests)"


def test_503_with_retry_after_is_retried_within_the_budget(
    stub: _Stub, patient_service: TestClient, trials: dict[str, Any]
) -> None:
    """Each first request answers 503 with Retry-After: 1; the service waits, asks again, and answers."""
    response, elapsed = _call(patient_service, stub, "retry")
    assert response.status_code == 200, response.text
    assert 1.0 <= elapsed < RETRY_BUDGET_S + SLACK_S
    assert card_assessments(response.json()) == screen_offline(trials, read_json(FIXTURE))


def test_offset_paging_without_total(stub: _Stub, service: TestClient, trials: dict[str, Any]) -> None:
    response, _ = _call(service, stub, "offset")
    assert response.status_code == 200, response.text
    assert card_assessments(response.json()) == screen_offline(trials, read_json(FIXTURE))
    with stub.lock:
        assert stub.requests["offset"] > 9, "several pages were read"


def test_gone_patient_is_a_412(stub: _Stub, service: TestClient) -> None:
    """Patient read → 410 Gone, empty searches: no Patient to screen, so 412 with an OperationOutcome
    (the service never gives a verdict on a record without its patient)."""
    response, _ = _call(service, stub, "gone")
    assert response.status_code == 412, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
