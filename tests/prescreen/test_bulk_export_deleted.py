"""cds.prescreen.bulk_export: the Bulk Data manifest's ``deleted`` files — NDJSON of transaction Bundles
whose entries are DELETE requests, given when ``_since`` is — read into ``ExportResult.deleted``; a manifest
without the key leaves the deletions unknown (None), not empty. Against scripted HTTP answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir_builders import deleted_bundle, patient

from cds.prescreen.bulk_export import BulkAuth, BulkExportError, ExportResult, export_to_ndjson
from cds.prescreen.deletions import resource_address

BASE = "https://fhir.example.org/r4"
STATUS = f"{BASE}/$export-poll-status?_jobId=j1"
TOKEN = "secret-token-1"
SINCE = datetime(2026, 10, 1, tzinfo=UTC)


def export(tmp_path: Path, deleted: dict[str, bytes] | None, *, requires_token: bool = False) -> tuple[
    ExportResult, list[httpx.Request]
]:
    """An incremental export whose manifest has one Patient file and, given ``deleted``, those deleted files."""
    manifest: dict[str, Any] = {
        "transactionTime": "2026-11-01T12:00:00Z",
        "request": f"{BASE}/$export?_since=2026-10-01T00:00:00.000Z",
        "requiresAccessToken": requires_token,
        "output": [{"type": "Patient", "url": f"{BASE}/files/p"}],
        "error": [],
    }
    if deleted is not None:
        manifest["deleted"] = [{"type": "Bundle", "url": f"{BASE}/files/{name}"} for name in deleted]
    files = {"p": json.dumps(patient(pid="p2")).encode() + b"\n", **(deleted or {})}
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(202)
        if request.url.path.endswith("/$export"):
            return httpx.Response(202, headers={"Content-Location": STATUS})
        if str(request.url) == STATUS:
            return httpx.Response(200, json=manifest)
        return httpx.Response(200, content=files[request.url.path.rsplit("/", 1)[1]])

    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        result = export_to_ndjson(
            BASE, tmp_path, BulkAuth(token=TOKEN), SINCE, ["Patient"], level="system", http=http, sleep=lambda _: None
        )
    return result, seen


def test_the_manifests_deleted_files_are_read_by_type_and_id(tmp_path: Path) -> None:
    lines = json.dumps(deleted_bundle("Patient/p1", "Observation/hr-1")) + "\n"
    lines += json.dumps(deleted_bundle("Condition/npc-1")) + "\n"
    result, _ = export(tmp_path, {"del-1": lines.encode()})
    assert result.deleted is not None and result.deleted.source == "manifest"
    assert result.deleted.by_type == {"Patient": {"p1"}, "Observation": {"hr-1"}, "Condition": {"npc-1"}}


def test_the_deleted_files_are_not_written_among_the_outputs(tmp_path: Path) -> None:
    result, _ = export(tmp_path, {"del-1": json.dumps(deleted_bundle("Patient/p1")).encode()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Patient.ndjson"]
    assert result.counts == {"Patient": 1}


def test_a_manifest_without_deleted_files_leaves_the_deletions_unknown(tmp_path: Path) -> None:
    result, _ = export(tmp_path, None)
    assert result.deleted is None


def test_an_empty_deleted_list_means_nothing_was_deleted(tmp_path: Path) -> None:
    result, _ = export(tmp_path, {})
    assert result.deleted is not None and result.deleted.count() == 0


def test_the_deleted_files_are_downloaded_with_the_token_when_the_manifest_requires_it(tmp_path: Path) -> None:
    _, seen = export(tmp_path, {"del-1": json.dumps(deleted_bundle("Patient/p1")).encode()}, requires_token=True)
    download = next(r for r in seen if r.url.path.endswith("/files/del-1"))
    assert download.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_deleted_file_that_is_not_ndjson_fails_the_export_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BulkExportError, match=r"deleted file https://fhir.example.org/r4/files/del-1 is not JSON"):
        export(tmp_path, {"del-1": b"<html>"})


def test_a_failed_deleted_file_leaves_no_output_under_its_final_name(tmp_path: Path) -> None:
    with pytest.raises(BulkExportError):
        export(tmp_path, {"del-1": b"<html>"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("Patient/p1", ("Patient", "p1")),
        ("Observation/hr-1/_history/2", ("Observation", "hr-1")),
        ("https://fhir.example.org/r4/Condition/npc-1", ("Condition", "npc-1")),
        ("Patient?identifier=urn:mrn|1", None),
        ("Patient", None),
    ],
)
def test_a_delete_request_names_its_resource_by_type_and_id(url: str, address: tuple[str, str] | None) -> None:
    assert resource_address(url) == address
