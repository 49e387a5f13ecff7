"""Feedback storage: idempotent, safe under concurrency, summarised per trial; on SQLite and on PostgreSQL
(the ``database_url`` fixture, tests/database_support.py)."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from cds.store import (
    FeedbackEntry,
    FeedbackStore,
    IssuedCard,
    feedback,
    feedback_daily,
    feedback_summary,
    text_limit,
    timestamp_key,
)

T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def make_store(url: str) -> tuple[FeedbackStore, str]:
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
    store, _ = make_store(f"sqlite:///{tmp_path / 'nested' / 'feedback.sqlite3'}")
    assert store.ping()
    path = tmp_path / "nested" / "feedback.sqlite3"
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.dispose()


def test_duplicate_feedback_is_stored_once(database_url: str) -> None:
    store, _ = make_store(database_url)
    assert store.record_feedback([accepted("c1")]) == 1
    assert store.record_feedback([accepted("c1")]) == 0
    # The same instant written in another offset is the same feedback.
    same_instant = T0.astimezone(timezone(timedelta(hours=8)))
    assert store.record_feedback([accepted("c1", same_instant)]) == 0
    assert store.record_feedback([accepted("c1", T0 + timedelta(seconds=1))]) == 1
    assert store.record_feedback([overridden("c1", None)]) == 1
    assert store.feedback_count() == 3


def test_concurrent_duplicates_are_safe(database_url: str) -> None:
    store, _ = make_store(database_url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        inserted = list(pool.map(lambda _: store.record_feedback([overridden("c9", "other")]), range(24)))
    assert sum(inserted) == 1
    assert store.feedback_count() == 1


def test_timestamp_key_normalises_to_utc() -> None:
    assert timestamp_key(datetime(2026, 11, 1, 17, 30, tzinfo=timezone(timedelta(hours=8)))) == (
        "2026-11-01T09:30:00.000000Z"
    )
    assert timestamp_key(datetime(2026, 11, 1, 9, 30)) == "2026-11-01T09:30:00.000000Z"


def test_summary_per_trial(database_url: str) -> None:
    store, url = make_store(database_url)
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


def test_summary_of_a_trial_without_data(database_url: str) -> None:
    (s,) = feedback_summary(database_url, "npc-liver-mets-ldrt")
    assert (s.trial_id, s.cards_shown, s.accepted, s.overridden) == ("npc-liver-mets-ldrt", 0, 0, 0)


def test_daily_counts_cards_by_the_day_they_were_issued_and_answered(database_url: str) -> None:
    store, url = make_store(database_url)
    store.record_cards([issued("c1"), issued("c2")])
    store.record_feedback([accepted("c1", T0 + timedelta(days=1)), overridden("c2", "other", T0 + timedelta(days=1))])
    days = [(d.day, d.trial_id, d.cards_shown, d.accepted, d.overridden) for d in feedback_daily(url)]
    assert days == [
        ("2026-11-01", "npc-liver-mets-ldrt", 2, 0, 0),
        ("2026-11-02", "npc-liver-mets-ldrt", 0, 1, 1),
    ]
    store.dispose()


def test_override_reason_as_long_as_its_columns_is_stored_whole(database_url: str) -> None:
    store, url = make_store(database_url)
    code = "c" * text_limit(feedback, "override_code")
    display = "d" * text_limit(feedback, "override_display")
    assert store.record_feedback([overridden("c1", code, display=display)]) == 1
    (summary,) = feedback_summary(url)
    assert summary.override_reasons == {f"{code} ({display})": 1}
    store.dispose()


def test_the_first_and_last_instants_a_timestamp_holds_are_stored(database_url: str) -> None:
    store, _ = make_store(database_url)
    first = datetime(1, 1, 1, tzinfo=UTC)
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert store.record_feedback([accepted("c1", first), accepted("c1", last)]) == 2
    assert store.record_feedback([accepted("c1", first)]) == 0
    store.dispose()
