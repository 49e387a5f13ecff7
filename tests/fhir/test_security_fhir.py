"""The fhirServer allow-list and failing FHIR servers, end to end through the API against real sockets on
127.0.0.1 (no respx): a refused fhirServer is never connected to; redirects and next links to another
server are not followed and the token goes to the allow-listed server only; a server that is down, slow,
failing or looping costs a 412 or an honest card, always within the time budget."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from api_support import (
    TOKEN,
    bare_request,
    full_request,
    is_operation_outcome,
    make_client,
    patients,
    with_server,
)
from fastapi.testclient import TestClient

from cds.demo import searchset

SERVICE = "/cds-services/trial-eligibility"

# ---------------------------------------------------------------------------------------------------
# Real local servers.


class Listener:
    """A bare listening socket that never answers: counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.accepted: list[socket.socket] = []

    def connections(self, wait_s: float = 0.3) -> int:
        """Connections made so far (pending ones sit in the backlog until accepted)."""
        self.sock.settimeout(wait_s)
        while True:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                return len(self.accepted)
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the service runs all its queries at once: no SYN dropped from the backlog


Reply = tuple[int, dict[str, str], Any]  # status, headers, JSON body (or None)


class FhirServer:
    """A real HTTP server on 127.0.0.1; ``reply(path, query)`` decides each answer. Records every request's
    path and Authorization header. ``delay_s`` holds each answer back (cut short at teardown)."""

    def __init__(self, reply: Callable[[str, dict[str, list[str]]], Reply], delay_s: float = 0.0) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Authorization")))
                if delay_s:
                    server.stop.wait(delay_s)
                parts = urlsplit(self.path)
                status, headers, body = reply(parts.path, parse_qs(parts.query))
                data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                try:
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/fhir+json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (time budget)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    sock = Listener()
    yield sock
    sock.close()


@pytest.fixture
def servers() -> Iterator[list[FhirServer]]:
    started: list[FhirServer] = []
    yield started
    for server in started:
        server.close()


def patient_replies(patient_id: str = "npc-01") -> Callable[[str, dict[str, list[str]]], Reply]:
    """Answers like the EHR's FHIR server for one demo patient (reads and patient searches)."""
    patient = patients()[patient_id]

    def reply(path: str, query: dict[str, list[str]]) -> Reply:
        parts = path.removeprefix("/fhir/").split("/")
        found = patient.resources_of(parts[0])
        if len(parts) == 2:
            hit = next((r for r in found if r.get("id") == parts[1]), None)
            return (200, {}, hit) if hit else (404, {}, None)
        return 200, {}, searchset(found if query.get("patient") == [patient.id] else [])

    return reply


def client_for(tmp_path: Path, *allowed: str, budget: float = 1.0) -> TestClient:
    return make_client(tmp_path, fhir_allowlist=list(allowed), time_budget_s=budget)


def fetch_request(base: str, patient_id: str = "npc-01") -> dict[str, Any]:
    body = with_server(bare_request(patient_id))
    body["fhirServer"] = base
    return body


# ---------------------------------------------------------------------------------------------------
# Allow-list: refused before any connection.


@pytest.mark.parametrize(
    "variant",
    ["not-listed", "other-path", "other-host-name", "with-prefetch", "userinfo", "https-scheme"],
)
def test_a_fhir_server_off_the_allow_list_is_never_contacted(tmp_path: Path, listener: Listener, variant: str) -> None:
    allowed = {
        "not-listed": "https://fhir.example.org/r4",
        "other-path": f"http://127.0.0.1:{listener.port}/allowed",
        "other-host-name": f"http://localhost:{listener.port}/fhir",
        "with-prefetch": "https://fhir.example.org/r4",
        "userinfo": listener.base,
        "https-scheme": listener.base,
    }[variant]
    client = client_for(tmp_path, allowed)
    body = fetch_request(listener.base)
    if variant == "with-prefetch":  # nothing to fetch: still refused, the request names the server
        body = {**full_request(client), **{k: body[k] for k in ("fhirServer", "fhirAuthorization")}}
    elif variant == "userinfo":
        body["fhirServer"] = f"http://user:pw@127.0.0.1:{listener.port}/fhir"
    elif variant == "https-scheme":
        body["fhirServer"] = f"https://127.0.0.1:{listener.port}/fhir"
    response = client.post(SERVICE, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert is_operation_outcome(response.json(), "forbidden", "invalid")
    assert TOKEN not in response.text
    assert listener.connections() == 0


def test_the_listener_does_see_an_allow_listed_connection(tmp_path: Path, listener: Listener) -> None:
    # The control for the test above: the same socket, allow-listed, is connected to (and, never
    # answering, costs a 412 at the end of the time budget).
    client = client_for(tmp_path, listener.base, budget=0.5)
    started = time.monotonic()
    response = client.post(SERVICE, json=fetch_request(listener.base))
    assert response.status_code == 412 and is_operation_outcome(response.json(), "incomplete")
    assert time.monotonic() - started < 0.5 + 1.0
    assert listener.connections() >= 1


# ---------------------------------------------------------------------------------------------------
# Redirects and next links: not followed; the token stays with the allow-listed server.


def test_a_redirect_to_another_server_is_not_followed(
    tmp_path: Path, listener: Listener, servers: list[FhirServer]
) -> None:
    target = listener.base
    redirecting = FhirServer(lambda path, _q: (302, {"Location": f"{target}{path.removeprefix('/fhir')}"}, None))
    servers.append(redirecting)
    client = client_for(tmp_path, redirecting.base, listener.base)  # both listed: still never followed
    response = client.post(SERVICE, json=fetch_request(redirecting.base))
    assert response.status_code == 412, response.text
    body = response.json()
    assert is_operation_outcome(body, "incomplete")
    assert "redirect" in response.text and TOKEN not in response.text
    assert redirecting.requests and all(auth == f"Bearer {TOKEN}" for _, auth in redirecting.requests)
    assert listener.connections() == 0


def test_a_next_link_to_another_server_is_not_followed(
    tmp_path: Path, listener: Listener, servers: list[FhirServer]
) -> None:
    honest = patient_replies()

    def reply(path: str, query: dict[str, list[str]]) -> Reply:
        status, headers, body = honest(path, query)
        if path.endswith("/Observation") and isinstance(body, dict):
            body = {**body, "link": [{"relation": "next", "url": f"{listener.base}/Observation?page=2"}]}
        return status, headers, body

    ehr = FhirServer(reply)
    servers.append(ehr)
    client = client_for(tmp_path, ehr.base, listener.base)
    response = client.post(SERVICE, json=fetch_request(ehr.base))
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert cards and "incomplete" in cards[0]["detail"].lower()  # honest: says what could not be read
    assert all(auth == f"Bearer {TOKEN}" for _, auth in ehr.requests)
    assert listener.connections() == 0


# ---------------------------------------------------------------------------------------------------
# Faults: down, slow, failing, garbage, looping - a 412 or an honest card, within the time budget.


def _closed_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def test_a_fhir_server_that_is_down_is_412(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/fhir"
    client = client_for(tmp_path, base)
    started = time.monotonic()
    response = client.post(SERVICE, json=fetch_request(base))
    assert response.status_code == 412 and is_operation_outcome(response.json(), "incomplete")
    assert "could not be reached" in response.text and TOKEN not in response.text
    assert time.monotonic() - started < 1.0 + 1.0


def test_a_slow_fhir_server_costs_at_most_the_time_budget(tmp_path: Path, servers: list[FhirServer]) -> None:
    slow = FhirServer(patient_replies(), delay_s=10.0)
    servers.append(slow)
    budget = 1.0
    client = client_for(tmp_path, slow.base, budget=budget)
    started = time.monotonic()
    response = client.post(SERVICE, json=fetch_request(slow.base))
    elapsed = time.monotonic() - started
    assert response.status_code == 412 and is_operation_outcome(response.json(), "incomplete")
    assert "time budget" in response.text
    assert elapsed < budget + 1.0, elapsed


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"resourceType": "OperationOutcome"}, "failed (HTTP 500)"),
        (503, None, "failed (HTTP 503)"),
        (401, None, "refused access (HTTP 401)"),
        (200, b"{garbage", "not JSON"),
        (200, [1, 2, 3], "not a FHIR resource"),
    ],
    ids=["500", "503", "401", "garbage", "not-a-resource"],
)
def test_failing_fhir_servers_are_412(
    tmp_path: Path, servers: list[FhirServer], status: int, body: Any, expected: str
) -> None:
    server = FhirServer(lambda _p, _q: (status, {}, body))
    servers.append(server)
    client = client_for(tmp_path, server.base)
    started = time.monotonic()
    response = client.post(SERVICE, json=fetch_request(server.base))
    assert response.status_code == 412 and is_operation_outcome(response.json(), "incomplete")
    assert expected in response.text and TOKEN not in response.text
    assert time.monotonic() - started < 1.0 + 1.0


@pytest.mark.parametrize("loop", ["same-page", "two-page-cycle", "endless"])
def test_a_page_loop_ends_within_the_budget_with_an_honest_card(
    tmp_path: Path, servers: list[FhirServer], loop: str
) -> None:
    honest = patient_replies()

    def reply(path: str, query: dict[str, list[str]]) -> Reply:
        status, headers, body = honest(path, query)
        if path.endswith("/Observation") and isinstance(body, dict):
            page = int(query.get("page", ["0"])[0])
            following = {"same-page": page, "two-page-cycle": 1 - page, "endless": page + 1}[loop]
            if page:  # later pages repeat nothing new
                body = {**body, "entry": []}
            next_url = f"Observation?patient=npc-01&page={following}"
            body = {**body, "link": [{"relation": "next", "url": next_url}]}
        return status, headers, body

    ehr = FhirServer(reply)
    servers.append(ehr)
    client = client_for(tmp_path, ehr.base)
    started = time.monotonic()
    response = client.post(SERVICE, json=fetch_request(ehr.base))
    assert time.monotonic() - started < 1.0 + 1.0
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert cards and "incomplete" in cards[0]["detail"].lower()
    observation_pages = [p for p, _ in ehr.requests if "/Observation" in p]
    assert len(observation_pages) <= 20  # settings.max_pages


# ---------------------------------------------------------------------------------------------------
# Paged prefetch: a CDS client that pages its prefetch (the reference sandbox: 20 a page) sends the first
# page with its next link; the other pages are read from its fhirServer.


def paged_prefetch(body: dict[str, Any], key: str, per_page: int, base: str) -> tuple[dict[str, Any], Reply]:
    """``body`` with the prefetched search ``key`` cut to its first page of ``per_page`` resources and a
    next link to ``base``; and the FHIR server's answers for the other pages."""
    entries = body["prefetch"][key]["entry"]

    def page(offset: int) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": entries[offset : offset + per_page],
        }
        if offset + per_page < len(entries):
            bundle["link"] = [{"relation": "next", "url": f"{base}?_getpages=p1&_getpagesoffset={offset + per_page}"}]
        return bundle

    def reply(path: str, query: dict[str, list[str]]) -> Reply:
        if path != "/fhir" or "_getpagesoffset" not in query:
            return 404, {}, None
        return 200, {}, page(int(query["_getpagesoffset"][0]))

    first = {**body, "prefetch": {**body["prefetch"], key: page(0)}}
    return first, reply


def test_a_paged_prefetch_is_completed_from_the_fhir_server(tmp_path: Path, servers: list[FhirServer]) -> None:
    client = client_for(tmp_path)
    whole = client.post(SERVICE, json=full_request(client)).json()["cards"]
    pages: list[Callable[[str, dict[str, list[str]]], Reply]] = []  # known once the server has its port
    ehr = FhirServer(lambda path, query: pages[0](path, query))
    servers.append(ehr)
    body, reply = paged_prefetch(with_server(full_request(client)), "observation", 5, ehr.base)
    pages.append(reply)
    body["fhirServer"] = ehr.base
    client = client_for(tmp_path, ehr.base)
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert [c["summary"] for c in cards] == [c["summary"] for c in whole]
    assert all("Incomplete record" not in c["detail"] for c in cards)
    assert [auth for _, auth in ehr.requests] == [f"Bearer {TOKEN}"] * 3  # 17 Observations: 5 + 5 + 5 + 2


def test_a_paged_prefetch_without_fhir_server_gives_a_card_that_says_the_record_is_incomplete(
    tmp_path: Path,
) -> None:
    client = client_for(tmp_path)
    body, _ = paged_prefetch(full_request(client), "observation", 5, "https://ehr.example.org/fhir")
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.text
    cards = response.json()["cards"]
    assert cards and all("Incomplete record" in c["detail"] for c in cards)
