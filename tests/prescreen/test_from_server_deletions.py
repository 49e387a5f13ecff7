"""`trial-cds prescreen --fhir URL --since T`: what the server deleted since T leaves the work folder's
mirror — as the Bulk Data manifest's ``deleted`` files list it, else as the server's ``_history`` tells it
(for a manifest without them, as HAPI's, and for a paged-search copy) — and a deleted Patient takes every
resource of theirs; where the server can tell neither, the run says so. Against scripted HTTP answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir_builders import condition, deleted_bundle, history_bundle, patient, vital_sign
from prescreen_support import write_ndjson

from cds.portfolio import load_portfolio
from cds.prescreen.deletions import Deletions
from cds.prescreen.from_server import export_population, merge_changes, types_read
from cds.trials import Trial

BASE = "https://fhir.example.org/r4"
STATUS = f"{BASE}/$export-poll-status"
SINCE = datetime(2026, 10, 1, tzinfo=UTC)
EXPORT = {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}

P1 = patient(pid="p1")
P2 = patient(gender="female", birth_date="1961-02-03", pid="p2")
HR1 = vital_sign("8867-4", "Heart rate", 72, "/min", "2026-09-01", rid="hr-1", pid="p1")
HR2 = vital_sign("8867-4", "Heart rate", 80, "/min", "2026-09-02", rid="hr-2", pid="p2")
NPC1 = condition("C11.9", "Malignant neoplasm of nasopharynx, unspecified", rid="npc-1", pid="p1")
HR2_NOW = vital_sign("8867-4", "Heart rate", 91, "/min", "2026-10-05", rid="hr-2", pid="p2")
HR1_AGAIN = vital_sign("8867-4", "Heart rate", 66, "/min", "2026-10-06", rid="hr-1", pid="p1")


@pytest.fixture(scope="module")
def trials() -> dict[str, Trial]:
    return load_portfolio().open_trials


def capability(*, export: bool = True, history_types: Iterable[str] = (), history_system: bool = False) -> Any:
    history = set(history_types)
    return {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "operation": [EXPORT] if export else [],
                "interaction": [{"code": "history-system"}] if history_system else [],
                "resource": [
                    {"type": t, "interaction": [{"code": "read"}, *([{"code": "history-type"}] * (t in history))]}
                    for t in sorted({"Patient", "Condition", "Observation", *history})
                ],
            }
        ],
    }


def ndjson(*items: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(i).encode() + b"\n" for i in items)


Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class ScriptedServer:
    """Answers by URL (with its query, else without); a type's search or history that is not scripted
    answers an empty Bundle. Every request is recorded."""

    def __init__(self, statement: Any) -> None:
        self.routes: dict[tuple[str, str], Answer] = {("GET", f"{BASE}/metadata"): httpx.Response(200, json=statement)}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, url: str, answer: Answer) -> None:
        self.routes[(method, url)] = answer

    def bulk(self, outputs: dict[str, bytes], deleted: dict[str, bytes] | None = None) -> None:
        """An export that is ready at the first poll: one file per ``outputs`` entry (the type is the name up
        to '-'), and, given ``deleted``, a manifest ``deleted`` list of those files."""
        self.on("GET", f"{BASE}/$export", httpx.Response(202, headers={"Content-Location": f"{STATUS}?_jobId=j1"}))
        manifest: dict[str, Any] = {
            "transactionTime": "2026-11-01T12:00:00Z",
            "request": f"{BASE}/$export",
            "requiresAccessToken": False,
            "output": [{"type": name.split("-")[0], "url": f"{BASE}/files/{name}"} for name in outputs],
            "error": [],
        }
        if deleted is not None:
            manifest["deleted"] = [{"type": "Bundle", "url": f"{BASE}/files/{name}"} for name in deleted]
        self.on("GET", STATUS, httpx.Response(200, json=manifest))
        self.on("DELETE", STATUS, httpx.Response(202))
        for name, body in {**outputs, **(deleted or {})}.items():
            self.on("GET", f"{BASE}/files/{name}", httpx.Response(200, content=body))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = str(request.url.copy_with(query=None))
        answer = self.routes.get((request.method, str(request.url))) or self.routes.get((request.method, path))
        if answer is None and path.endswith("/_history"):
            return httpx.Response(200, json=history_bundle())
        if answer is None and request.method == "GET" and path.count("/") == BASE.count("/") + 1:
            return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": []})
        if answer is None:
            return httpx.Response(404, json={"resourceType": "OperationOutcome", "issue": []})
        return answer(request) if callable(answer) else answer

    def asked(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith(path)]

    def export(self, into: Path, trials: dict[str, Trial]) -> None:
        with httpx.Client(transport=httpx.MockTransport(self.handle)) as http:
            export_population(BASE, into, None, SINCE, trials, http=http)


def mirror(tmp_path: Path) -> Path:
    """The work folder's export after an earlier full run: two patients, p1 with a condition."""
    return write_ndjson(tmp_path / "export", [P1, P2, HR1, HR2, NPC1])


def ids(folder: Path, rtype: str) -> list[str]:
    path = folder / f"{rtype}.ndjson"
    return sorted(json.loads(line)["id"] for line in path.read_text().splitlines()) if path.exists() else []


def heart_rate(folder: Path, rid: str) -> float:
    lines = [json.loads(line) for line in (folder / "Observation.ndjson").read_text().splitlines()]
    return float(next(o["valueQuantity"]["value"] for o in lines if o["id"] == rid))


# --------------------------------------------------------------------------------------------------
# The manifest's deleted files
# --------------------------------------------------------------------------------------------------


def test_a_resource_the_manifest_lists_as_deleted_leaves_the_mirror(tmp_path: Path, trials: dict[str, Trial]) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability(history_types=types_read(trials)))
    server.bulk({"Observation-1": ndjson(HR2_NOW)}, deleted={"del-1": ndjson(deleted_bundle("Observation/hr-1"))})
    server.export(into, trials)
    assert ids(into, "Observation") == ["hr-2"]
    assert heart_rate(into, "hr-2") == 91
    assert ids(into, "Patient") == ["p1", "p2"]
    assert server.asked("/_history") == []  # the manifest told the deletions


def test_a_patient_deleted_on_the_server_takes_every_resource_of_theirs(
    tmp_path: Path, trials: dict[str, Trial], capsys: pytest.CaptureFixture[str]
) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability())
    server.bulk({}, deleted={"del-1": ndjson(deleted_bundle("Patient/p1"))})
    server.export(into, trials)
    assert ids(into, "Patient") == ["p2"]
    assert ids(into, "Observation") == ["hr-2"]
    assert ids(into, "Condition") == []
    assert b"p1" not in b"".join(p.read_bytes() for p in into.glob("*.ndjson"))
    assert "3 resources removed" in capsys.readouterr().err


def test_a_changed_resource_of_a_deleted_patient_is_not_merged(tmp_path: Path, trials: dict[str, Trial]) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability())
    server.bulk({"Observation-1": ndjson(HR1_AGAIN)}, deleted={"del-1": ndjson(deleted_bundle("Patient/p1"))})
    server.export(into, trials)
    assert ids(into, "Observation") == ["hr-2"]


def test_a_resource_deleted_and_written_again_since_stays(tmp_path: Path, trials: dict[str, Trial]) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability())
    server.bulk({"Observation-1": ndjson(HR1_AGAIN)}, deleted={"del-1": ndjson(deleted_bundle("Observation/hr-1"))})
    server.export(into, trials)
    assert ids(into, "Observation") == ["hr-1", "hr-2"]
    assert heart_rate(into, "hr-1") == 66


def test_an_empty_deleted_list_is_taken_at_its_word(tmp_path: Path, trials: dict[str, Trial]) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability(history_types=types_read(trials)))
    server.bulk({"Observation-1": ndjson(HR2_NOW)}, deleted={})
    server.export(into, trials)
    assert ids(into, "Observation") == ["hr-1", "hr-2"]
    assert server.asked("/_history") == []


# --------------------------------------------------------------------------------------------------
# The history, where the copy cannot tell deletions
# --------------------------------------------------------------------------------------------------


def test_without_a_deleted_list_the_history_since_tells_the_deletions(tmp_path: Path, trials: dict[str, Trial]) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability(history_types=types_read(trials)))
    server.bulk({"Observation-1": ndjson(HR2_NOW)})  # HAPI's manifest: no deleted key
    server.on("GET", f"{BASE}/Observation/_history", httpx.Response(
        200, json=history_bundle(HR2_NOW, "Observation/hr-1/_history/2")
    ))
    server.export(into, trials)
    assert ids(into, "Observation") == ["hr-2"]
    asked = server.asked("/Observation/_history")[0]
    assert asked.url.params["_since"] == "2026-10-01T00:00:00.000Z"


def test_a_paged_search_copy_asks_the_history_for_deletions(tmp_path: Path, trials: dict[str, Trial]) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability(export=False, history_types=types_read(trials)))
    server.on("GET", f"{BASE}/Patient/_history", httpx.Response(200, json=history_bundle("Patient/p1/_history/3")))
    server.export(into, trials)
    assert ids(into, "Patient") == ["p2"]
    assert ids(into, "Observation") == ["hr-2"]
    assert server.asked("/Patient")[0].url.params["_lastUpdated"] == "gt2026-10-01T00:00:00.000Z"


def test_the_newest_history_entry_of_a_resource_decides(tmp_path: Path, trials: dict[str, Trial]) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability(history_types=types_read(trials)))
    server.bulk({})
    server.on("GET", f"{BASE}/Observation/_history", httpx.Response(
        200, json=history_bundle(HR1_AGAIN, "Observation/hr-1/_history/2", "Observation/hr-2/_history/4")
    ))
    server.export(into, trials)
    assert ids(into, "Observation") == ["hr-1"]


def test_every_page_of_the_history_is_read(tmp_path: Path, trials: dict[str, Trial]) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability(history_types=types_read(trials)))
    server.bulk({})
    page_2 = f"{BASE}?_getpages=h1&_getpagesoffset=20"
    server.on("GET", f"{BASE}/Observation/_history", httpx.Response(200, json=history_bundle(HR2, next_url=page_2)))
    server.on("GET", page_2, httpx.Response(200, json=history_bundle("Observation/hr-1/_history/2")))
    server.export(into, trials)
    assert ids(into, "Observation") == ["hr-2"]


def test_a_server_with_system_history_only_is_asked_at_system_level(tmp_path: Path, trials: dict[str, Trial]) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability(history_system=True))
    server.bulk({})
    server.on("GET", f"{BASE}/_history", httpx.Response(
        200, json=history_bundle("Condition/npc-1/_history/2", "Practitioner/dr-1/_history/2")
    ))
    server.export(into, trials)
    assert ids(into, "Condition") == []
    assert ids(into, "Observation") == ["hr-1", "hr-2"]
    assert len(server.asked("/_history")) == 1


def test_a_server_that_cannot_tell_deletions_says_so_and_the_mirror_keeps_them(
    tmp_path: Path, trials: dict[str, Trial], capsys: pytest.CaptureFixture[str]
) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability())  # $export without a deleted list, and no history
    server.bulk({"Observation-1": ndjson(HR2_NOW)})
    server.export(into, trials)
    assert ids(into, "Observation") == ["hr-1", "hr-2"]
    err = capsys.readouterr().err
    assert "WARNING: deletions since 2026-10-01T00:00:00+00:00 cannot be seen" in err
    assert "Observation" in err and "Patient" in err
    assert "run without --since (a full export) to drop them" in err


def test_a_history_the_server_refuses_is_named_as_unseen(
    tmp_path: Path, trials: dict[str, Trial], capsys: pytest.CaptureFixture[str]
) -> None:
    into = mirror(tmp_path)
    server = ScriptedServer(capability(history_types=types_read(trials)))
    server.bulk({})
    refusal = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden",
                                                              "diagnostics": "history is not in scope"}]}
    server.on("GET", f"{BASE}/Condition/_history", httpx.Response(403, json=refusal))
    server.export(into, trials)
    err = capsys.readouterr().err
    assert "cannot be seen on this server for Condition:" in err
    assert "HTTP 403: history is not in scope" in err


# --------------------------------------------------------------------------------------------------
# The merge itself
# --------------------------------------------------------------------------------------------------


def test_the_merge_writes_owner_only_files_and_leaves_no_partial_file(tmp_path: Path) -> None:
    into = mirror(tmp_path)
    changes = write_ndjson(into / ".changes", [HR2_NOW])
    gone = Deletions("manifest")
    gone.add("Patient", "p1")
    merged = merge_changes(changes, into, gone)
    assert (merged.changed, merged.removed, merged.patients) == (1, 3, 1)
    assert not list(into.glob("*.partial")) and not list(changes.glob("*.ndjson"))
    assert all(p.stat().st_mode & 0o077 == 0 for p in into.glob("*.ndjson") if p.name != "Medication.ndjson")


def test_a_merge_without_deletions_replaces_changed_resources_only(tmp_path: Path) -> None:
    into = mirror(tmp_path)
    changes = write_ndjson(into / ".changes", [HR2_NOW])
    merged = merge_changes(changes, into, Deletions("history"))
    assert (merged.changed, merged.removed) == (1, 0)
    assert ids(into, "Observation") == ["hr-1", "hr-2"] and heart_rate(into, "hr-2") == 91
