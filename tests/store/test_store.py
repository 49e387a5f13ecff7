"""Feedback storage: idempotent, safe under concurrency, summarised per trial."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from cds.store import FeedbackEntry, FeedbackStore, IssuedCard, feedback_summary, timestamp_key

T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def make_store(tmp_path: Path) -> tuple[FeedbackStore, str]:
    url = f"sqlite:///{tmp_path / 'nested' / 'feedback.sqlite3'}"
    store = FeedbackStore(url)
    store.create_tables()
    return store, url


def issued(card: str, trial: str = "npc-liver-mets-ldrt", verdict: str = "likely_eligible") -> IssuedCard:
    return IssuedCard(card_uuid=card, service_id="trial-eligibility", trial_id=trial, verdict=verdict, issued_at=T0)


def overridden(card: str, code: str | None, at: datetime = T0, display: str | None = None) -> FeedbackEntry:
    return FeedbackEntry(
        card_uuid=card,
        service_id="trial-eligibility",
        outcome="overridden",
        outcome_timestamp=at,
        override_system="urn:trial-cds:codesystem:override-reason" if code else None,
        override_code=code,
        override_display=display,
    )


def accepted(card: str, at: datetime = T0) -> FeedbackEntry:
    return FeedbackEntry(
        card_uuid=card,
        service_id="trial-eligibility",
        outcome="accepted",
        outcome_timestamp=at,
        accepted_suggestions=("s-1",),
    )


def test_sqlite_file_is_created_in_wal_mode(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path)
    assert store.ping()
    path = tmp_path / "nested" / "feedback.sqlite3"
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.dispose()


def test_duplicate_feedback_is_stored_once(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path)
    assert store.record_feedback([accepted("c1")]) == 1
    assert store.record_feedback([accepted("c1")]) == 0
    # The same instant written in another offset is the same feedback.
    same_instant = T0.astimezone(timezone(timedelta(hours=8)))
    assert store.record_feedback([accepted("c1", same_instant)]) == 0
    assert store.record_feedback([accepted("c1", T0 + timedelta(seconds=1))]) == 1
    assert store.record_feedback([overridden("c1", None)]) == 1
    assert store.feedback_count() == 3


def test_concurrent_duplicates_are_safe(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        inserted = list(pool.map(lambda _: store.record_feedback([overridden("c9", "other")]), range(24)))
    assert sum(inserted) == 1
    assert store.feedback_count() == 1


def test_timestamp_key_normalises_to_utc() -> None:
    assert timestamp_key(datetime(2026, 11, 1, 17, 30, tzinfo=timezone(timedelta(hours=8)))) == (
        "2026-11-01T09:30:00.000000Z"
    )
    assert timestamp_key(datetime(2026, 11, 1, 9, 30)) == "2026-11-01T09:30:00.000000Z"


def test_summary_per_trial(tmp_path: Path) -> None:
    store, url = make_store(tmp_path)
    store.record_cards([issued("c1"), issued("c2"), issued("c3"), issued("d1", trial="other-trial")])
    store.record_cards([issued("c1")])  # the same card recorded twice counts once
    store.record_feedback(
        [
            accepted("c1"),
            overridden("c2", "patient-declined", display="Patient declined trial participation"),
            overridden("c3", "patient-declined", T0 + timedelta(minutes=1), "Patient declined trial participation"),
            overridden("c3", None, T0 + timedelta(minutes=2)),
            overridden("unknown-card", "other"),
        ]
    )
    summaries = {s.trial_id: s for s in feedback_summary(url)}
    npc = summaries["npc-liver-mets-ldrt"]
    assert (npc.cards_shown, npc.accepted, npc.overridden) == (3, 1, 2)
    assert npc.override_reasons == {
        "patient-declined (Patient declined trial participation)": 2,
        "(no reason)": 1,
    }
    other = summaries["other-trial"]
    assert (other.cards_shown, other.accepted, other.overridden, other.override_reasons) == (1, 0, 0, {})
    unknown = summaries[None]
    assert (unknown.cards_shown, unknown.overridden, unknown.override_reasons) == (0, 1, {"other": 1})

    (only,) = feedback_summary(store.engine, "npc-liver-mets-ldrt")
    assert only == npc
    assert only.as_dict()["cards_shown"] == 3


def test_summary_of_a_trial_without_data(tmp_path: Path) -> None:
    (s,) = feedback_summary(f"sqlite:///{tmp_path / 'empty.sqlite3'}", "npc-liver-mets-ldrt")
    assert (s.trial_id, s.cards_shown, s.accepted, s.overridden) == ("npc-liver-mets-ldrt", 0, 0, 0)
