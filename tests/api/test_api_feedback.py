"""POST /cds-services/trial-eligibility/feedback: stored, idempotent, validated, summarised; on SQLite and on
PostgreSQL where the test takes ``database_url`` (tests/database_support.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from api_support import SERVICE, full_request, is_operation_outcome, make_client

from cds.store import feedback, feedback_summary, text_limit

FEEDBACK = f"{SERVICE}/feedback"


def accepted(card: str, suggestion: str, at: str = "2026-11-01T12:05:00Z") -> dict[str, Any]:
    return {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": suggestion}],
        "outcomeTimestamp": at,
    }


def overridden(card: str, reason: dict[str, Any] | None = None, at: str = "2026-11-01T12:06:00Z") -> dict[str, Any]:
    item: dict[str, Any] = {"card": card, "outcome": "overridden", "outcomeTimestamp": at}
    if reason is not None:
        item["overrideReason"] = {
            "reason": reason,
            "userComment": "Seen by Dr Smith, patient prefers local care",
        }
    return item


def test_feedback_on_an_issued_card_is_stored_and_summarised(tmp_path: Path, database_url: str) -> None:
    client = make_client(tmp_path, database_url=database_url)
    (card,) = client.post(SERVICE, json=full_request(client, "npc-01")).json()["cards"]
    suggestion = card["suggestions"][0]["uuid"]
    response = client.post(FEEDBACK, json={"feedback": [accepted(card["uuid"], suggestion)]})
    assert response.status_code == 200
    assert response.content in (b"", b"{}")

    (card2,) = client.post(SERVICE, json=full_request(client, "npc-01")).json()["cards"]
    reason = card2["overrideReasons"][0]
    response = client.post(FEEDBACK, json={"feedback": [overridden(card2["uuid"], reason)]})
    assert response.status_code == 200

    (summary,) = feedback_summary(database_url, "npc-liver-mets-ldrt")
    assert (summary.cards_shown, summary.accepted, summary.overridden) == (2, 1, 1)
    assert summary.override_reasons == {f"{reason['code']} ({reason['display']})": 1}


def test_duplicate_feedback_is_idempotent(tmp_path: Path, database_url: str) -> None:
    client = make_client(tmp_path, database_url=database_url)
    card = str(uuid.uuid4())
    body = {"feedback": [overridden(card), overridden(card)]}
    assert client.post(FEEDBACK, json=body).status_code == 200
    assert client.post(FEEDBACK, json=body).status_code == 200
    # The same instant in another offset is the same feedback.
    again = {"feedback": [overridden(card, at="2026-11-01T20:06:00+08:00")]}
    assert client.post(FEEDBACK, json=again).status_code == 200
    store = client.app.state.cds.store  # type: ignore[attr-defined]
    assert store.feedback_count() == 1


def test_feedback_for_an_unknown_card_is_stored_with_no_trial(tmp_path: Path, database_url: str) -> None:
    client = make_client(tmp_path, database_url=database_url)
    reason = {
        "system": "urn:trial-cds:codesystem:override-reason",
        "code": "other",
        "display": "Other reason",
    }
    assert client.post(FEEDBACK, json={"feedback": [overridden(str(uuid.uuid4()), reason)]}).status_code == 200
    summaries = feedback_summary(client.app.state.cds.store.engine)  # type: ignore[attr-defined]
    (unknown,) = [s for s in summaries if s.trial_id is None]
    assert unknown.overridden == 1 and unknown.override_reasons == {"other (Other reason)": 1}


def test_user_comment_is_not_stored(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    reason = {"code": "patient-declined", "display": "Patient declined trial participation"}
    client.post(FEEDBACK, json={"feedback": [overridden(str(uuid.uuid4()), reason)]})
    database = (tmp_path / "cds.sqlite3").read_bytes()
    wal = tmp_path / "cds.sqlite3-wal"
    content = database + (wal.read_bytes() if wal.exists() else b"")
    assert b"Dr Smith" not in content


@pytest.mark.parametrize(
    "at",
    [
        "0001-01-01T00:00:00+14:00",  # before 0001-01-01 in UTC: was an OverflowError, a 500
        "9999-12-31T23:59:59-14:00",  # after 9999-12-31 in UTC
    ],
)
def test_outcome_timestamp_outside_the_years_a_timestamp_holds_is_400_naming_the_field(
    tmp_path: Path, database_url: str, at: str
) -> None:
    client = make_client(tmp_path, database_url=database_url)
    response = client.post(FEEDBACK, json={"feedback": [overridden(str(uuid.uuid4()), at=at)]})
    assert response.status_code == 400, response.text
    assert is_operation_outcome(response.json(), "invalid")
    (issue,) = response.json()["issue"]
    assert issue["expression"] == ["feedback[0].outcomeTimestamp"]
    assert "out of range" in issue["diagnostics"]


@pytest.mark.parametrize(
    "field,column", [("code", "override_code"), ("system", "override_system"), ("display", "override_display")]
)
def test_override_reason_longer_than_its_column_is_400_on_every_database(
    tmp_path: Path, database_url: str, field: str, column: str
) -> None:
    # On PostgreSQL a 257-character code was a DataError, a 500; SQLite stored 100 KB without a word.
    client = make_client(tmp_path, database_url=database_url)
    reason = {"code": "other", "display": "Other reason", field: "x" * (text_limit(feedback, column) + 1)}
    response = client.post(FEEDBACK, json={"feedback": [overridden(str(uuid.uuid4()), reason)]})
    assert response.status_code == 400, response.text
    (issue,) = response.json()["issue"]
    assert issue["expression"] == [f"feedback[0].overrideReason.reason.{field}"]
    assert client.app.state.cds.store.feedback_count() == 0  # type: ignore[attr-defined]


def test_override_reason_as_long_as_its_columns_is_stored(tmp_path: Path, database_url: str) -> None:
    client = make_client(tmp_path, database_url=database_url)
    reason = {
        "system": "urn:" + "s" * (text_limit(feedback, "override_system") - 4),
        "code": "c" * text_limit(feedback, "override_code"),
        "display": "d" * text_limit(feedback, "override_display"),
    }
    response = client.post(FEEDBACK, json={"feedback": [overridden(str(uuid.uuid4()), reason)]})
    assert response.status_code == 200, response.text
    (unknown,) = feedback_summary(database_url)
    assert unknown.override_reasons == {f"{reason['code']} ({reason['display']})": 1}


CARD = str(uuid.uuid4())
BAD_FEEDBACK: dict[str, Any] = {
    "no feedback key": {"cards": []},
    "feedback not a list": {"feedback": overridden(CARD)},
    "empty feedback": {"feedback": []},
    "missing card": {"feedback": [{"outcome": "overridden", "outcomeTimestamp": "2026-11-01T12:00:00Z"}]},
    "card not a uuid": {"feedback": [overridden("card-1")]},
    "unknown outcome": {"feedback": [{**overridden(CARD), "outcome": "ignored"}]},
    "missing timestamp": {"feedback": [{"card": CARD, "outcome": "overridden"}]},
    "timestamp not a date": {"feedback": [overridden(CARD, at="yesterday")]},
    "timestamp a number": {"feedback": [{**overridden(CARD), "outcomeTimestamp": 1700000000}]},
    "accepted without suggestions": {
        "feedback": [{"card": CARD, "outcome": "accepted", "outcomeTimestamp": "2026-11-01T12:00:00Z"}]
    },
    "accepted with empty suggestions": {"feedback": [{**accepted(CARD, "s"), "acceptedSuggestions": []}]},
    "suggestion without id": {"feedback": [{**accepted(CARD, "s"), "acceptedSuggestions": [{}]}]},
    "reason not a Coding": {"feedback": [{**overridden(CARD), "overrideReason": {"reason": "patient-declined"}}]},
}


@pytest.mark.parametrize("name", list(BAD_FEEDBACK))
def test_bad_feedback_is_400(tmp_path: Path, name: str) -> None:
    client = make_client(tmp_path)
    response = client.post(FEEDBACK, json=BAD_FEEDBACK[name])
    assert response.status_code == 400, (name, response.text)
    assert is_operation_outcome(response.json(), "invalid", "required", "structure")


def test_non_json_feedback_is_400(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    response = client.post(FEEDBACK, content=b"accepted", headers={"content-type": "text/plain"})
    assert response.status_code == 400 and is_operation_outcome(response.json(), "structure")
    response = client.post(FEEDBACK, json=[overridden(CARD)])
    assert response.status_code == 400 and is_operation_outcome(response.json(), "structure")
