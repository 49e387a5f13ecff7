"""POST /cds-services/trial-eligibility/feedback: stored, idempotent, validated, summarised."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from api_support import SERVICE, full_request, is_operation_outcome, make_client

from cds.store import feedback_summary

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


def test_feedback_on_an_issued_card_is_stored_and_summarised(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    (card,) = client.post(SERVICE, json=full_request(client, "npc-01")).json()["cards"]
    suggestion = card["suggestions"][0]["uuid"]
    response = client.post(FEEDBACK, json={"feedback": [accepted(card["uuid"], suggestion)]})
    assert response.status_code == 200
    assert response.content in (b"", b"{}")

    (card2,) = client.post(SERVICE, json=full_request(client, "npc-01")).json()["cards"]
    reason = card2["overrideReasons"][0]
    response = client.post(FEEDBACK, json={"feedback": [overridden(card2["uuid"], reason)]})
    assert response.status_code == 200

    database = str(tmp_path / "cds.sqlite3")
    (summary,) = feedback_summary(f"sqlite:///{database}", "npc-liver-mets-ldrt")
    assert (summary.cards_shown, summary.accepted, summary.overridden) == (2, 1, 1)
    assert summary.override_reasons == {f"{reason['code']} ({reason['display']})": 1}


def test_duplicate_feedback_is_idempotent(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    card = str(uuid.uuid4())
    body = {"feedback": [overridden(card), overridden(card)]}
    assert client.post(FEEDBACK, json=body).status_code == 200
    assert client.post(FEEDBACK, json=body).status_code == 200
    # The same instant in another offset is the same feedback.
    again = {"feedback": [overridden(card, at="2026-11-01T20:06:00+08:00")]}
    assert client.post(FEEDBACK, json=again).status_code == 200
    store = client.app.state.cds.store  # type: ignore[attr-defined]
    assert store.feedback_count() == 1


def test_feedback_for_an_unknown_card_is_stored_with_no_trial(tmp_path: Path) -> None:
    client = make_client(tmp_path)
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
