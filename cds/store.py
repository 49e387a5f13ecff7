"""Feedback storage (SQLAlchemy 2): the cards the service issued and the feedback CDS clients sent.

No PHI is stored: an issued card is its uuid, trial, service, verdict and time; feedback is the card uuid,
outcome, accepted suggestion ids, the override reason Coding and times. The clinician's free-text
``userComment`` may name the patient, so only whether there was one is kept.

SQLite (the default, a file at ``settings.database_url``) runs in WAL mode; any SQLAlchemy URL works,
e.g. PostgreSQL in production. Feedback is idempotent: the same (card, outcome, outcomeTimestamp) is
stored once, by insert-or-ignore, which is safe under concurrent requests.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    cast,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.expression import Executable

metadata = MetaData()

issued_cards = Table(
    "issued_cards",
    metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("service_id", String(128), nullable=False),
    Column("trial_id", String(128), nullable=False, index=True),
    Column("verdict", String(32), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("card_uuid", String(64), nullable=False, index=True),
    Column("service_id", String(128), nullable=False),
    Column("outcome", String(16), nullable=False),
    # ISO 8601 in UTC with microseconds ("2026-11-01T09:30:00.000000Z"), so equal instants compare equal.
    Column("outcome_timestamp", String(32), nullable=False),
    Column("accepted_suggestions", Text, nullable=True),  # JSON array of suggestion uuids
    Column("override_system", String(512), nullable=True),
    Column("override_code", String(256), nullable=True),
    Column("override_display", String(512), nullable=True),
    Column("has_user_comment", Boolean, nullable=False, default=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_card_outcome_time"),
)


def text_limit(table: Table, column_name: str) -> int:
    """The most characters the column ``column_name`` of ``table`` holds: the request models take their
    limits from here (cds.api.models), so a value too long for the column is refused before it is stored."""
    column_type = table.c[column_name].type
    if not isinstance(column_type, String) or column_type.length is None:
        raise TypeError(f"{table.name}.{column_name} is not a text column with a length")
    return column_type.length


@dataclass(frozen=True)
class IssuedCard:
    card_uuid: str
    service_id: str
    trial_id: str
    verdict: str
    issued_at: datetime


@dataclass(frozen=True)
class FeedbackEntry:
    card_uuid: str
    service_id: str
    outcome: str  # accepted | overridden
    outcome_timestamp: datetime
    accepted_suggestions: tuple[str, ...] = ()
    override_system: str | None = None
    override_code: str | None = None
    override_display: str | None = None
    has_user_comment: bool = False


@dataclass(frozen=True)
class TrialFeedbackSummary:
    """Feedback for one trial; ``trial_id`` None gathers feedback on cards this database never issued."""

    trial_id: str | None
    cards_shown: int
    accepted: int  # cards with at least one accepted outcome
    overridden: int  # cards with at least one overridden outcome
    override_reasons: dict[str, int] = field(default_factory=dict)  # "code (display)" or "(no reason)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "cards_shown": self.cards_shown,
            "accepted": self.accepted,
            "overridden": self.overridden,
            "override_reasons": dict(self.override_reasons),
        }


@dataclass(frozen=True)
class DailyFeedback:
    """One day (UTC) of one trial: cards issued that day, and cards accepted or overridden that day (by the
    feedback's outcomeTimestamp), with the override reasons. No PHI: counts and reason codes only."""

    day: str  # YYYY-MM-DD
    trial_id: str | None
    cards_shown: int
    accepted: int
    overridden: int
    override_reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "trial_id": self.trial_id,
            "cards_shown": self.cards_shown,
            "accepted": self.accepted,
            "overridden": self.overridden,
            "override_reasons": dict(self.override_reasons),
        }


def timestamp_key(moment: datetime) -> str:
    """The normalised text of an instant: UTC, microseconds, ``Z`` (a naive time is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets its directory created, WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in {"", ":memory:"} or database.startswith("file::memory:")
    if in_memory:
        # One in-memory database for every thread: one connection, lent to one thread at a time (a pool of
        # one; the others wait). A sqlite3 connection shared by threads at once (StaticPool) interleaves
        # their transactions: a rollback in one thread undoes another's insert.
        shared = sqlite3.connect(":memory:", check_same_thread=False)
        engine = create_engine(url, poolclass=QueuePool, pool_size=1, max_overflow=0, creator=lambda: shared)
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def create_missing_tables(engine: Engine, tables: Sequence[Table], attempts: int = 5) -> None:
    """Create those of ``tables`` that are missing. Several workers starting at once on one database race
    between the check and the CREATE: the loser's error (PostgreSQL: a unique violation in the catalogue;
    SQLite in WAL mode: "database is locked" at once, while the winner has not yet committed) is ignored
    once the tables exist, and the creation tried again while they do not."""
    if not tables:
        return
    for attempt in range(attempts):
        try:
            tables[0].metadata.create_all(engine, tables=list(tables), checkfirst=True)
            return
        except (IntegrityError, OperationalError, ProgrammingError):
            existing = set(inspect(engine).get_table_names())
            if {t.name for t in tables} <= existing:
                return
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


@functools.cache
def _insert_or_nothing(dialect: str, table: Table) -> Executable:
    """INSERT … ON CONFLICT DO NOTHING for ``table``, built once (the rows are bound at execution).

    On PostgreSQL it says what it inserted with RETURNING: SQLAlchemy adds an implicit RETURNING of the
    generated key there, and the driver then reports a rowcount of -1, so an inserted row would be counted
    as a duplicate."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert

        return dialect_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert

    return postgresql_insert(table).on_conflict_do_nothing().returning(*table.primary_key.columns)


def _insert_ignore(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert rows, skipping those that break a unique constraint; returns how many were inserted."""
    if not rows:
        return 0
    dialect = conn.dialect.name
    if dialect in {"sqlite", "postgresql"}:
        statement = _insert_or_nothing(dialect, table)
        inserted = 0
        for row in rows:
            result = conn.execute(statement, row)
            inserted += len(result.all()) if dialect == "postgresql" else max(result.rowcount, 0)
        return inserted
    inserted = 0
    for row in rows:  # other databases: one savepoint per row
        try:
            with conn.begin_nested():
                conn.execute(insert(table).values(**row))
            inserted += 1
        except IntegrityError:
            pass
    return inserted


class FeedbackStore:
    """The one place that talks to the database."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        #: A local SQLite file: a write is a short append to its WAL (no fsync per commit), quicker than a
        #: trip to a worker thread and back; a database server is a network round trip instead.
        self.local = self.engine.dialect.name == "sqlite"

    def create_tables(self) -> None:
        create_missing_tables(self.engine, list(metadata.tables.values()))

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()

    def record_cards(self, cards: Iterable[IssuedCard]) -> int:
        rows = [
            {
                "card_uuid": c.card_uuid,
                "service_id": c.service_id,
                "trial_id": c.trial_id,
                "verdict": c.verdict,
                "issued_at": c.issued_at,
            }
            for c in cards
        ]
        with self.engine.begin() as conn:
            return _insert_ignore(conn, issued_cards, rows)

    def record_issued(self, cards: Iterable[tuple[str, str, str]], *, service_id: str, issued_at: datetime) -> int:
        """:meth:`record_cards` for the cards of one answer, each given as (card uuid, trial id, verdict)."""
        return self.record_cards(
            IssuedCard(card_uuid=u, service_id=service_id, trial_id=t, verdict=v, issued_at=issued_at)
            for u, t, v in cards
        )

    def record_feedback(self, entries: Iterable[FeedbackEntry], *, received_at: datetime | None = None) -> int:
        """Stores feedback; duplicates (same card, outcome and outcomeTimestamp) are ignored. Returns the
        number of new rows."""
        now = received_at or datetime.now(UTC)
        rows = [
            {
                "card_uuid": e.card_uuid,
                "service_id": e.service_id,
                "outcome": e.outcome,
                "outcome_timestamp": timestamp_key(e.outcome_timestamp),
                "accepted_suggestions": json.dumps(list(e.accepted_suggestions)) if e.accepted_suggestions else None,
                "override_system": e.override_system,
                "override_code": e.override_code,
                "override_display": e.override_display,
                "has_user_comment": e.has_user_comment,
                "received_at": now,
            }
            for e in entries
        ]
        with self.engine.begin() as conn:
            return _insert_ignore(conn, feedback, rows)

    def feedback_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(feedback)).scalar_one())

    def summary(self, trial_id: str | None = None) -> list[TrialFeedbackSummary]:
        """Per trial: cards shown, cards accepted, cards overridden, override reasons with counts. Feedback
        on cards this database did not issue is reported under trial None (only when no trial is asked
        for)."""
        with self.engine.connect() as conn:
            shown_q = select(issued_cards.c.trial_id, func.count()).group_by(issued_cards.c.trial_id)
            if trial_id is not None:
                shown_q = shown_q.where(issued_cards.c.trial_id == trial_id)
            shown = {str(t): int(n) for t, n in conn.execute(shown_q)}

            where = [issued_cards.c.trial_id == trial_id] if trial_id is not None else []
            counted_outcomes, counted_reasons = _feedback_counts(conn, (), where)
        outcomes = {key[0]: counts for key, counts in counted_outcomes.items()}
        reasons = {key[0]: counts for key, counts in counted_reasons.items()}

        trial_ids: list[str | None] = [*sorted(set(shown) | {t for t in outcomes if t is not None})]
        if trial_id is None and (None in outcomes or None in reasons):
            trial_ids.append(None)
        if trial_id is not None and not trial_ids:
            trial_ids = [trial_id]
        return [
            TrialFeedbackSummary(
                trial_id=t,
                cards_shown=shown.get(t, 0) if t is not None else 0,
                accepted=outcomes.get(t, {}).get("accepted", 0),
                overridden=outcomes.get(t, {}).get("overridden", 0),
                override_reasons=_most_given_first(reasons.get(t, {})),
            )
            for t in trial_ids
        ]

    def daily(self, trial_id: str | None = None, *, since: date | None = None) -> list[DailyFeedback]:
        """``summary`` per day (UTC), oldest first, from ``since`` on if given. Feedback on cards this
        database did not issue is reported under trial None (only when no trial is asked for)."""
        with self.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                issued_day: Any = func.date(issued_cards.c.issued_at)
            else:
                issued_day = func.to_char(cast(issued_cards.c.issued_at, Date), "YYYY-MM-DD")
            feedback_day = func.substr(feedback.c.outcome_timestamp, 1, 10)
            shown_q = select(issued_day, issued_cards.c.trial_id, func.count()).group_by(
                issued_day, issued_cards.c.trial_id
            )
            where: list[Any] = []
            if trial_id is not None:
                shown_q = shown_q.where(issued_cards.c.trial_id == trial_id)
                where.append(issued_cards.c.trial_id == trial_id)
            if since is not None:
                shown_q = shown_q.where(issued_day >= since.isoformat())
                where.append(feedback_day >= since.isoformat())
            shown: dict[tuple[str, str | None], int] = {(str(d), t): int(n) for d, t, n in conn.execute(shown_q)}
            outcomes, reasons = _feedback_counts(conn, (feedback_day,), where)
        keys = sorted(set(shown) | set(outcomes), key=lambda k: (k[0], k[1] is None, k[1] or ""))
        return [
            DailyFeedback(
                day=d,
                trial_id=t,
                cards_shown=shown.get((d, t), 0),
                accepted=outcomes.get((d, t), {}).get("accepted", 0),
                overridden=outcomes.get((d, t), {}).get("overridden", 0),
                override_reasons=_most_given_first(reasons.get((d, t), {})),
            )
            for d, t in keys
        ]


def _feedback_counts(
    conn: Connection, by: tuple[Any, ...], where: Sequence[Any]
) -> tuple[dict[tuple[Any, ...], dict[str, int]], dict[tuple[Any, ...], dict[str, int]]]:
    """Feedback counted per (*``by``, trial id) under the conditions ``where``: cards accepted and
    overridden (distinct cards per outcome), and the override reasons given (by label). A ``by`` value is
    given as text; the trial id is None for feedback on a card this database did not issue."""
    joined = feedback.outerjoin(issued_cards, feedback.c.card_uuid == issued_cards.c.card_uuid)
    group = (*by, issued_cards.c.trial_id)
    outcome_q = (
        select(*group, feedback.c.outcome, func.count(func.distinct(feedback.c.card_uuid)))
        .select_from(joined)
        .where(*where)
        .group_by(*group, feedback.c.outcome)
    )
    reason_q = (
        select(*group, feedback.c.override_code, feedback.c.override_display, func.count())
        .select_from(joined)
        .where(feedback.c.outcome == "overridden", *where)
        .group_by(*group, feedback.c.override_code, feedback.c.override_display)
    )

    def key(row: Sequence[Any]) -> tuple[Any, ...]:
        return (*(str(v) for v in row[: len(by)]), row[len(by)])

    outcomes: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in conn.execute(outcome_q):
        outcomes.setdefault(key(row), {})[str(row[-2])] = int(row[-1])
    reasons: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in conn.execute(reason_q):
        code, display, n = row[-3], row[-2], row[-1]
        label = "(no reason)" if not code else (f"{code} ({display})" if display else str(code))
        bucket = reasons.setdefault(key(row), {})
        bucket[label] = bucket.get(label, 0) + int(n)
    return outcomes, reasons


def _most_given_first(reasons: dict[str, int]) -> dict[str, int]:
    return dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))


def feedback_summary(engine_or_url: Engine | str, trial_id: str | None = None) -> list[TrialFeedbackSummary]:
    """Feedback per trial, for ``trial-cds feedback``: cards shown, accepted, overridden, and the override
    reasons with their counts. Creates the tables if the database is new."""
    store = FeedbackStore(engine_or_url)
    try:
        store.create_tables()
        return store.summary(trial_id)
    finally:
        if isinstance(engine_or_url, str):
            store.dispose()


def feedback_daily(
    engine_or_url: Engine | str, trial_id: str | None = None, *, since: date | None = None
) -> list[DailyFeedback]:
    """Feedback per trial and day, for ``trial-cds feedback --daily`` and the trial activity page: cards
    shown, accepted, overridden, and the override reasons. Creates the tables if the database is new."""
    store = FeedbackStore(engine_or_url)
    try:
        store.create_tables()
        return store.daily(trial_id, since=since)
    finally:
        if isinstance(engine_or_url, str):
            store.dispose()
