"""Input limits, checked where bodies are read (before pydantic): size (413, also without a
Content-Length), resources per prefetch key, JSON nesting depth and string length (400), malformed JSON
and wrong types (400) - always with an OperationOutcome, on the service and the feedback endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import SERVICE, bare_request, full_request, is_operation_outcome, make_client

from cds.fhir.json_limits import limit_violation
from cds.settings import Settings

FEEDBACK = f"{SERVICE}/feedback"


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for i in range(depth):
        value = {"d": value} if i % 2 else [value]
    return value


def test_secure_defaults() -> None:
    defaults = Settings.model_fields
    assert defaults["max_body_bytes"].default == 16 * 1024 * 1024
    assert defaults["max_resources_per_key"].default == 20_000
    assert defaults["max_json_depth"].default == 64
    assert defaults["max_string_length"].default == 1_000_000


@pytest.mark.parametrize("path", [SERVICE, FEEDBACK])
def test_a_body_over_the_default_16_mib_is_413(tmp_path: Path, path: str) -> None:
    client = make_client(tmp_path)
    assert client.app.state.settings.max_body_bytes == 16 * 1024 * 1024  # type: ignore[attr-defined]
    response = client.post(path, content=b" " * (16 * 1024 * 1024 + 1), headers={"content-type": "application/json"})
    assert response.status_code == 413 and is_operation_outcome(response.json(), "too-long")


@pytest.mark.parametrize("path", [SERVICE, FEEDBACK])
def test_a_chunked_body_without_content_length_is_capped_too(tmp_path: Path, path: str) -> None:
    client = make_client(tmp_path, max_body_bytes=4096)

    def chunks() -> Iterator[bytes]:
        yield b'{"hook": "patient-view", "extension": "'
        for _ in range(64):
            yield b"a" * 1024
        yield b'"}'

    response = client.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text
    assert is_operation_outcome(response.json(), "too-long")


def test_a_body_just_under_the_cap_is_read(tmp_path: Path) -> None:
    client = make_client(tmp_path, max_body_bytes=64 * 1024)
    body = full_request(client)
    response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.text


def test_too_many_resources_under_one_prefetch_key_is_400(tmp_path: Path) -> None:
    client = make_client(tmp_path, max_resources_per_key=5)
    body = full_request(client)
    key, bundle = next((k, v) for k, v in body["prefetch"].items() if v and len(v.get("entry", [])) > 5)
    response = client.post(SERVICE, json=body)
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert is_operation_outcome(outcome, "invalid")
    assert "more than 5 resources" in response.text and key in response.text
    assert outcome["issue"][0]["expression"] == ["prefetch"]
    body["prefetch"][key] = {**bundle, "entry": bundle["entry"][:5]}
    for other, value in body["prefetch"].items():
        if value and len(value.get("entry", [])) > 5:
            body["prefetch"][other] = {**value, "entry": value["entry"][:5]}
    assert client.post(SERVICE, json=body).status_code == 200


@pytest.mark.parametrize("path", [SERVICE, FEEDBACK])
def test_nesting_deeper_than_the_limit_is_400(tmp_path: Path, path: str) -> None:
    client = make_client(tmp_path, max_json_depth=10)
    response = client.post(path, json={**bare_request(), "extension": nested(10)})
    assert response.status_code == 400 and is_operation_outcome(response.json(), "too-long")
    assert "deeper than 10" in response.text
    # Exactly at the limit (the body is level 1): not refused for depth.
    response = client.post(path, json={**bare_request(), "extension": nested(9)})
    assert "deeper" not in response.text


def test_nesting_beyond_the_parser_limit_is_400_not_a_crash(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    content = b'{"extension": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = client.post(SERVICE, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400 and is_operation_outcome(response.json(), "too-long")


@pytest.mark.parametrize("where", ["value", "key", "deep-value", "list-item"])
@pytest.mark.parametrize("path", [SERVICE, FEEDBACK])
def test_strings_longer_than_the_limit_are_400(tmp_path: Path, path: str, where: str) -> None:
    client = make_client(tmp_path, max_string_length=100)
    long = "é" * 101  # characters, not bytes
    extension = {
        "value": {"x": long},
        "key": {long: 1},
        "deep-value": nested(8, long),
        "list-item": ["ok", long],
    }[where]
    response = client.post(path, json={**bare_request(), "extension": extension})
    assert response.status_code == 400 and is_operation_outcome(response.json(), "too-long")
    assert "longer than 100" in response.text
    fine = client.post(path, json={**bare_request(), "extension": {"x": "é" * 100}})
    assert "longer than" not in fine.text


@pytest.mark.parametrize(
    "content",
    [
        b'{"hook": "patient-view",}',
        b'{"hook": 1e999999}',
        b'{"hook": 123456789012345678901234567890}',
        b'{"hook": "\\ud800"}',
        b'{"a": 1}{"b": 2}',
        b"\xef\xbb\xbf{}",
    ],
    ids=["trailing-comma", "huge-float", "huge-int", "lone-surrogate", "two-documents", "bom"],
)
@pytest.mark.parametrize("path", [SERVICE, FEEDBACK])
def test_malformed_json_is_400(tmp_path: Path, path: str, content: bytes) -> None:
    client = make_client(tmp_path)
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert is_operation_outcome(response.json())


@pytest.mark.parametrize(
    "feedback",
    [
        {"feedback": "accepted"},
        {"feedback": [{"card": 1, "outcome": "accepted", "outcomeTimestamp": "2026-11-01T12:00:00Z"}]},
        {"feedback": [{"card": "0b3d2b3c-51c5-4a1f-9d6f-2b9e8f6f6a01", "outcome": ["overridden"]}]},
        {"feedback": [{"card": "0b3d2b3c-51c5-4a1f-9d6f-2b9e8f6f6a01", "outcome": "overridden",
                       "outcomeTimestamp": 1730000000}]},
    ],
    ids=["not-a-list", "card-a-number", "outcome-a-list", "timestamp-a-number"],
)  # fmt: skip
def test_wrong_types_in_feedback_are_400(tmp_path: Path, feedback: Any) -> None:
    client = make_client(tmp_path)
    response = client.post(FEEDBACK, json=feedback)
    assert response.status_code == 400 and is_operation_outcome(response.json())
    assert client.app.state.cds.store.feedback_count() == 0  # type: ignore[attr-defined]


def test_limit_check_is_iterative_and_exact() -> None:
    deep = nested(100_000)  # far deeper than Python's recursion limit
    assert limit_violation(deep, max_depth=64, max_string_length=10) is not None
    assert limit_violation(nested(64), max_depth=64, max_string_length=10) is None
    assert limit_violation(nested(65), max_depth=64, max_string_length=10) is not None
    assert limit_violation({"k": "x" * 10}, max_depth=64, max_string_length=10) is None
    assert limit_violation({"k": "x" * 11}, max_depth=64, max_string_length=10) is not None
    assert limit_violation({"k" * 11: 1}, max_depth=64, max_string_length=10) is not None
