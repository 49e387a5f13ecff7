"""The ``jti`` replay cache, kept in the service's database so that every worker and replica shares it.

Table ``cds_auth_seen_jti``: one row per accepted token, unique on ``(iss, jti)``, with ``expires_at``
(epoch seconds: the token's ``exp`` plus the leeway). Accepting a token is an INSERT; an
``IntegrityError`` means another request, in any process, already used that ``jti`` -> replay.
Expired rows are deleted at most once a minute per process. The table is created if missing.

SQLAlchemy 2 with a synchronous engine (``settings.database_url``, made by ``cds.store.make_engine``: the
same WAL, busy timeout and in-memory pool as the feedback store), run in a worker thread so the
event loop never blocks on the database.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    delete,
    insert,
)
from sqlalchemy.exc import IntegrityError

from cds.auth.clients import MAX_ISS_LENGTH
from cds.store import create_missing_tables, make_engine

MAX_JTI_LENGTH = 255
PURGE_INTERVAL_S = 60.0

metadata = MetaData()

seen_jti = Table(
    "cds_auth_seen_jti",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("iss", String(MAX_ISS_LENGTH), nullable=False),
    Column("jti", String(MAX_JTI_LENGTH), nullable=False),
    Column("expires_at", BigInteger, nullable=False, index=True),
    UniqueConstraint("iss", "jti", name="uq_cds_auth_seen_jti_iss_jti"),
)


class ReplayStore:
    def __init__(
        self,
        database_url: str,
        *,
        engine: Engine | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.engine = engine if engine is not None else make_engine(database_url)
        self._clock = clock or time.time
        self._ready = False
        self._ready_lock = threading.Lock()
        self._last_purge = float("-inf")

    async def first_use(self, iss: str, jti: str, expires_at: int) -> bool:
        """Record ``(iss, jti)``; ``True`` when it had not been seen, ``False`` for a replay."""
        return await asyncio.to_thread(self._first_use, iss, jti, expires_at)

    def _first_use(self, iss: str, jti: str, expires_at: int) -> bool:
        self._ensure_table()
        now = int(self._clock())
        row = {"iss": iss, "jti": jti, "expires_at": expires_at}
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(seen_jti).values(**row))
        except IntegrityError:
            # Seen before. If that row has expired but not yet been purged, the old token is dead and
            # this (iss, jti) may be used again; only one concurrent request can delete the row.
            with self.engine.begin() as conn:
                gone = conn.execute(
                    delete(seen_jti).where(seen_jti.c.iss == iss, seen_jti.c.jti == jti, seen_jti.c.expires_at < now)
                ).rowcount
            if not gone:
                return False
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(seen_jti).values(**row))
            except IntegrityError:
                return False
        self._maybe_purge(now)
        return True

    def _maybe_purge(self, now: int) -> None:
        if self._clock() - self._last_purge < PURGE_INTERVAL_S:
            return
        self._last_purge = self._clock()
        with self.engine.begin() as conn:
            conn.execute(delete(seen_jti).where(seen_jti.c.expires_at < now))

    def purge(self) -> int:
        """Delete every expired row now; returns how many went."""
        self._ensure_table()
        with self.engine.begin() as conn:
            return conn.execute(delete(seen_jti).where(seen_jti.c.expires_at < int(self._clock()))).rowcount

    def _ensure_table(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            create_missing_tables(self.engine, [seen_jti])
            self._ready = True

    def dispose(self) -> None:
        self.engine.dispose()

