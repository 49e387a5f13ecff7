"""cds.prescreen.bulk_export: FHIR Bulk Data $export (kick-off, polling, download, delete) and paged search
where a server has no $export, against scripted HTTP answers (httpx.MockTransport)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir_builders import patient, vital_sign

from cds.portfolio import load_trials
from cds.prescreen.bulk_export import (
    DEFAULT_TYPES,
    BulkAuth,
    BulkExportError,
    ExportProgress,
    export_to_ndjson,
    retry_after_s,
)
from hooks.base import resource_types

BASE = "https://fhir.example.org/r4"
STATUS = f"{BASE}/$export-poll-status?_jobId=job-1"
TOKEN = "secret-token-1"

P1 = patient(pid="p1")
P2 = patient(gender="female", birth_date="1961-02-03", pid="p2")
HR1 = vital_sign("8867-4", "Heart rate", 72, "/min", "2026-10-01", rid="hr-1", pid="p1")
HR2 = vital_sign("8867-4", "Heart rate", 80, "/min", "2026-10-02", rid="hr-2", pid="p2")


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in resources)


def outcome(text: str, *, severity: str = "error", code: str = "processing") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": text}]}


def capability(*, system_export: bool = True, patient_export: bool = True) -> dict[str, Any]:
    export = {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}
    return {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "operation": [export] if system_export else [],
                "resource": [
                    {"type": "Patient", "operation": [export] if patient_export else []},
                    {"type": "Observation"},
                ],
            }
        ],
    }


def manifest(
    outputs: list[tuple[str, str]], *, requires_token: bool = False, errors: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "transactionTime": "2026-11-01T12:00:00Z",
        "request": f"{BASE}/$export",
        "requiresAccessToken": requires_token,
        "output": [{"type": t, "url": u} for t, u in outputs],
        "error": [{"type": "OperationOutcome", "url": u} for u in errors],
    }


class Server:
    """Scripted answers: ``routes[(method, url)]`` is a list of answers given one after the other (the last
    one repeated), or a function of the request. Every request is recorded."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[httpx.Response] | Callable[[httpx.Request], httpx.Response]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, url: str, *answers: httpx.Response) -> None:
        self.routes[(method, url)] = list(answers)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, str(request.url))
        route = self.routes.get(key)
        if route is None:
            path_key = (request.method, str(request.url.copy_with(query=None)))
            route = self.routes.get(path_key)
        if route is None:
            return httpx.Response(404, json=outcome(f"no route for {key}"))
        if callable(route):
            return route(request)
        return route.pop(0) if len(route) > 1 else route[0]

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle), follow_redirects=False)

    def sent(self, method: str, url_start: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and str(r.url).startswith(url_start)]


def bulk_server(
    outputs: dict[str, bytes], *, requires_token: bool = False, polls: list[httpx.Response] | None = None
) -> Server:
    """A server whose $export finishes after ``polls`` (202 answers) with one file per entry of ``outputs``
    (``name`` → NDJSON; the type is the name up to the first '-')."""
    server = Server()
    server.on("GET", f"{BASE}/metadata", httpx.Response(200, json=capability()))
    server.on("GET", f"{BASE}/$export", httpx.Response(202, headers={"Content-Location": STATUS}))
    files = [(name.split("-")[0], f"{BASE}/files/{name}") for name in outputs]
    done = httpx.Response(200, json=manifest(files, requires_token=requires_token))
    server.on("GET", STATUS, *(polls or []), done)
    server.on("DELETE", STATUS, httpx.Response(202))
    for name, body in outputs.items():
        server.on("GET", f"{BASE}/files/{name}", httpx.Response(200, content=body))
    return server


def run(server: Server, out: Path, **kwargs: Any) -> tuple[Any, list[float], list[ExportProgress]]:
    sleeps: list[float] = []
    seen: list[ExportProgress] = []
    with server.client() as http:
        result = export_to_ndjson(
            BASE, out, kwargs.pop("auth", None), kwargs.pop("since", None), kwargs.pop("types", None),
            seen.append, http=http, sleep=sleeps.append, **kwargs,
        )
    return result, sleeps, seen


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------------------------------
# Kick-off
# --------------------------------------------------------------------------------------------------


def test_kick_off_asks_for_an_async_ndjson_export_of_the_types_since_the_given_time(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)})
    since = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
    run(server, tmp_path, since=since, types=["Patient", "Observation"])
    (kick_off,) = server.sent("GET", f"{BASE}/$export?")
    assert kick_off.headers["Accept"] == "application/fhir+json"
    assert kick_off.headers["Prefer"] == "respond-async"
    assert kick_off.url.params["_type"] == "Patient,Observation"
    assert kick_off.url.params["_outputFormat"] == "application/fhir+ndjson"
    assert kick_off.url.params["_since"] == "2026-10-01T08:30:00.000Z"


def test_a_naive_since_is_taken_as_utc(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)})
    run(server, tmp_path, since=datetime(2026, 10, 1, 8, 30))
    (kick_off,) = server.sent("GET", f"{BASE}/$export?")
    assert kick_off.url.params["_since"] == "2026-10-01T08:30:00.000Z"


def test_a_server_with_patient_level_export_only_is_asked_at_patient_level(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)})
    server.on("GET", f"{BASE}/metadata", httpx.Response(200, json=capability(system_export=False)))
    server.on("GET", f"{BASE}/Patient/$export", httpx.Response(202, headers={"Content-Location": STATUS}))
    result, _, _ = run(server, tmp_path)
    assert server.sent("GET", f"{BASE}/Patient/$export") and not server.sent("GET", f"{BASE}/$export?")
    assert result.counts == {"Patient": 1}


def test_a_refused_kick_off_names_the_servers_answer(tmp_path: Path) -> None:
    server = bulk_server({})
    server.on("GET", f"{BASE}/$export", httpx.Response(400, json=outcome("Invalid _type parameter: Foo")))
    with pytest.raises(BulkExportError) as refused:
        run(server, tmp_path)
    assert "HTTP 400" in str(refused.value) and "Invalid _type parameter: Foo" in str(refused.value)


def test_a_kick_off_without_content_location_is_an_error(tmp_path: Path) -> None:
    server = bulk_server({})
    server.on("GET", f"{BASE}/$export", httpx.Response(202))
    with pytest.raises(BulkExportError, match="no Content-Location"):
        run(server, tmp_path)


def test_a_status_url_on_another_host_is_refused(tmp_path: Path) -> None:
    server = bulk_server({})
    server.on(
        "GET", f"{BASE}/$export", httpx.Response(202, headers={"Content-Location": "https://evil.example/status"})
    )
    with pytest.raises(BulkExportError, match="not on the FHIR server"):
        run(server, tmp_path, auth=BulkAuth(token=TOKEN))
    assert not server.sent("GET", "https://evil.example")


# --------------------------------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------------------------------


def test_polling_waits_as_long_as_retry_after_says_and_reports_x_progress(tmp_path: Path) -> None:
    polls = [
        httpx.Response(202, headers={"Retry-After": "7", "X-Progress": "Patient 40%"}),
        httpx.Response(202, headers={"Retry-After": "3", "X-Progress": "Observation 10%"}),
    ]
    server = bulk_server({"Patient-1": ndjson(P1)}, polls=polls)
    _, sleeps, seen = run(server, tmp_path)
    assert sleeps == [7.0, 3.0]
    assert [p.detail for p in seen if p.stage == "waiting"] == ["Patient 40%", "Observation 10%"]
    assert len(server.sent("GET", STATUS)) == 3


def test_retry_after_may_be_an_http_date() -> None:
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s(format_datetime(now + timedelta(seconds=45), usegmt=True), now) == 45.0
    assert retry_after_s(format_datetime(now - timedelta(seconds=5), usegmt=True), now) == 0.0
    assert retry_after_s("120", now) == 120.0
    assert retry_after_s(None, now) is None
    assert retry_after_s("soon", now) is None


def test_polling_honours_a_retry_after_date(tmp_path: Path) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server = bulk_server({"Patient-1": ndjson(P1)}, polls=[httpx.Response(202, headers={"Retry-After": later})])
    _, sleeps, _ = run(server, tmp_path)
    assert len(sleeps) == 1 and 27.0 <= sleeps[0] <= 30.0


def test_without_retry_after_the_waits_double_up_to_a_bound(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)}, polls=[httpx.Response(202)] * 9)
    _, sleeps, _ = run(server, tmp_path)
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_cap_shortens_the_servers_retry_after(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)}, polls=[httpx.Response(202, headers={"Retry-After": "120"})])
    _, sleeps, _ = run(server, tmp_path, max_retry_after_s=5.0)
    assert sleeps == [5.0]


def test_an_export_that_does_not_finish_in_time_is_cancelled(tmp_path: Path) -> None:
    server = bulk_server({}, polls=[httpx.Response(202, headers={"Retry-After": "600"})] * 3)
    with pytest.raises(BulkExportError, match="did not finish within 1000 s"):
        run(server, tmp_path, max_wait_s=1000.0)
    assert server.sent("DELETE", STATUS)


def test_a_failed_job_names_the_servers_operation_outcome(tmp_path: Path) -> None:
    failed = httpx.Response(500, json=outcome("HAPI-2041: job step write-to-binaries failed"))
    server = bulk_server({}, polls=[failed])
    with pytest.raises(BulkExportError) as failure:
        run(server, tmp_path)
    assert "HTTP 500" in str(failure.value) and "HAPI-2041: job step write-to-binaries failed" in str(failure.value)


def test_a_transient_status_failure_is_retried(tmp_path: Path) -> None:
    transient = httpx.Response(500, json=outcome("busy", code="transient"), headers={"Retry-After": "2"})
    too_often = httpx.Response(429, headers={"Retry-After": "4"})
    server = bulk_server({"Patient-1": ndjson(P1)}, polls=[transient, too_often])
    result, sleeps, _ = run(server, tmp_path)
    assert sleeps == [2.0, 4.0]
    assert result.counts == {"Patient": 1}


# --------------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------------


def test_every_output_is_downloaded_and_files_of_one_type_are_concatenated(tmp_path: Path) -> None:
    server = bulk_server(
        {"Patient-1": ndjson(P1, P2), "Observation-1": ndjson(HR1), "Observation-2": ndjson(HR2).rstrip(b"\n")}
    )
    result, _, _ = run(server, tmp_path / "out")
    assert result.method == "bulk"
    assert result.counts == {"Patient": 2, "Observation": 2}
    assert result.transaction_time == "2026-11-01T12:00:00Z"
    assert lines(tmp_path / "out" / "Patient.ndjson") == [P1, P2]
    assert lines(tmp_path / "out" / "Observation.ndjson") == [HR1, HR2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Observation.ndjson", "Patient.ndjson"]


def test_the_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    result, _, _ = run(bulk_server({"Patient-1": ndjson(P1)}), tmp_path / "out")
    assert stat.S_IMODE(result.files["Patient"].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700


def test_downloads_carry_the_token_when_the_manifest_requires_it(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)}, requires_token=True)
    run(server, tmp_path, auth=BulkAuth(token=TOKEN))
    (download,) = server.sent("GET", f"{BASE}/files/")
    assert download.headers["Authorization"] == f"Bearer {TOKEN}"
    assert download.headers["Accept"] == "application/fhir+ndjson"
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in server.sent("GET", STATUS))


def test_downloads_go_without_the_token_when_the_manifest_does_not_require_it(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)}, requires_token=False)
    run(server, tmp_path, auth=BulkAuth(token=TOKEN))
    (download,) = server.sent("GET", f"{BASE}/files/")
    assert "Authorization" not in download.headers


def test_a_download_refused_without_the_token_says_so(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)}, requires_token=False)
    server.on("GET", f"{BASE}/files/Patient-1", httpx.Response(401, json=outcome("Authentication required")))
    with pytest.raises(BulkExportError) as refused:
        run(server, tmp_path / "out")
    assert "HTTP 401" in str(refused.value) and "Authentication required" in str(refused.value)
    assert list((tmp_path / "out").iterdir()) == []  # no half-written file is left


def test_error_files_with_errors_fail_the_export_naming_them(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)})
    done = manifest([("Patient", f"{BASE}/files/Patient-1")], errors=[f"{BASE}/files/err-1"])
    server.on("GET", STATUS, httpx.Response(200, json=done))
    server.on("GET", f"{BASE}/files/err-1", httpx.Response(200, content=ndjson(outcome("Observation: access denied"))))
    with pytest.raises(BulkExportError, match="errors during the export: Observation: access denied"):
        run(server, tmp_path)


def test_warnings_in_error_files_are_kept_and_the_export_goes_on(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)})
    done = manifest([("Patient", f"{BASE}/files/Patient-1")], errors=[f"{BASE}/files/err-1"])
    server.on("GET", STATUS, httpx.Response(200, json=done))
    warning = outcome("2 resources skipped: not in the patient compartment", severity="warning")
    server.on("GET", f"{BASE}/files/err-1", httpx.Response(200, content=ndjson(warning)))
    result, _, _ = run(server, tmp_path)
    assert result.warnings == ["2 resources skipped: not in the patient compartment"]
    assert result.counts == {"Patient": 1}


def test_the_job_is_deleted_after_the_download(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)})
    run(server, tmp_path)
    assert server.requests[-1].method == "DELETE" and str(server.requests[-1].url) == STATUS


# --------------------------------------------------------------------------------------------------
# Paged search where there is no $export
# --------------------------------------------------------------------------------------------------


def searchset(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def search_server() -> Server:
    server = Server()
    no_export = capability(system_export=False, patient_export=False)
    server.on("GET", f"{BASE}/metadata", httpx.Response(200, json=no_export))
    server.on("GET", f"{BASE}/Patient", httpx.Response(200, json=searchset([P1], f"{BASE}?_getpages=abc&offset=1")))
    server.on("GET", f"{BASE}?_getpages=abc&offset=1", httpx.Response(200, json=searchset([P2])))
    with_include = searchset([HR1, HR2])
    with_include["entry"].append({"resource": P1, "search": {"mode": "include"}})
    server.on("GET", f"{BASE}/Observation", httpx.Response(200, json=with_include))
    return server


def test_a_server_without_export_is_copied_by_paged_search_patients_first(tmp_path: Path) -> None:
    server = search_server()
    result, _, _ = run(server, tmp_path, types=["Observation", "Patient"], auth=BulkAuth(token=TOKEN))
    assert result.method == "search"
    assert result.counts == {"Patient": 2, "Observation": 2}
    assert lines(tmp_path / "Patient.ndjson") == [P1, P2]
    assert lines(tmp_path / "Observation.ndjson") == [HR1, HR2]  # the included Patient is not an Observation
    searches = [r for r in server.requests if "metadata" not in str(r.url)]
    assert [r.url.path for r in searches] == ["/r4/Patient", "/r4", "/r4/Observation"]
    assert searches[0].url.params["_count"] == "100"
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in searches)
    assert not server.sent("GET", f"{BASE}/$export?")


def test_paged_search_asks_for_what_changed_since(tmp_path: Path) -> None:
    server = search_server()
    run(server, tmp_path, types=["Patient"], since=datetime(2026, 10, 1, tzinfo=UTC))
    first = server.sent("GET", f"{BASE}/Patient")[0]
    assert first.url.params["_lastUpdated"] == "gt2026-10-01T00:00:00.000Z"


@pytest.mark.parametrize("status", [404, 405, 501])
def test_a_kick_off_answered_as_unsupported_falls_back_to_search(tmp_path: Path, status: int) -> None:
    server = search_server()
    server.on("GET", f"{BASE}/metadata", httpx.Response(200, json=capability()))
    server.on("GET", f"{BASE}/$export", httpx.Response(status))
    result, _, _ = run(server, tmp_path, types=["Patient"])
    assert result.method == "search" and result.counts == {"Patient": 2}


def test_a_next_link_to_another_host_is_not_followed(tmp_path: Path) -> None:
    server = search_server()
    server.on("GET", f"{BASE}/Patient", httpx.Response(200, json=searchset([P1], "https://evil.example/page2")))
    with pytest.raises(BulkExportError, match="leaves the server"):
        run(server, tmp_path, types=["Patient"], auth=BulkAuth(token=TOKEN))
    assert not server.sent("GET", "https://evil.example")


def test_a_failed_search_names_the_servers_answer(tmp_path: Path) -> None:
    server = search_server()
    server.on("GET", f"{BASE}/Condition", httpx.Response(503, text="Service Unavailable"))
    with pytest.raises(BulkExportError) as failure:
        run(server, tmp_path, types=["Patient", "Condition"])
    assert "search of Condition failed: HTTP 503 (server unavailable, or out of memory?)" in str(failure.value)
    assert not (tmp_path / "Patient.ndjson").exists()


def test_a_type_that_is_not_a_resource_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BulkExportError, match="not a FHIR resource type"):
        run(search_server(), tmp_path, types=["Patient", "../etc"])



def test_search_may_be_asked_for_even_where_export_is_declared(tmp_path: Path) -> None:
    server = search_server()
    server.on("GET", f"{BASE}/metadata", httpx.Response(200, json=capability()))
    result, _, _ = run(server, tmp_path, types=["Patient"], level="search")
    assert result.method == "search" and result.counts == {"Patient": 2}
    assert not server.sent("GET", f"{BASE}/$export?") and not server.sent("GET", f"{BASE}/metadata")


def test_the_default_types_are_those_the_bundled_trials_read() -> None:
    assert set(DEFAULT_TYPES) == resource_types(load_trials())


def test_a_job_the_server_does_not_delete_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    server = bulk_server({"Patient-1": ndjson(P1)})
    server.on("DELETE", STATUS, httpx.Response(500, json=outcome("cannot delete")))
    result, _, _ = run(server, tmp_path)
    assert result.counts == {"Patient": 1}
    assert result.warnings == ["the export's job could not be deleted on the server: DELETE: HTTP 500: cannot delete"]
