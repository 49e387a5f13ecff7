"""The jti replay cache on every database the service runs on (SQLite and PostgreSQL, the ``database_url``
fixture of tests/database_support.py): a token is accepted once, by whichever worker sees it first."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from cds.auth.replay import ReplayStore


def test_replay_store_allows_reuse_only_after_expiry(database_url: str) -> None:
    clock = [1_000_000.0]
    store = ReplayStore(database_url, clock=lambda: clock[0])
    try:
        assert store._first_use("iss", "jti-1", 1_000_100) is True
        assert store._first_use("iss", "jti-1", 1_000_100) is False
        assert store._first_use("other-iss", "jti-1", 1_000_100) is True
        clock[0] = 1_000_200.0
        assert store._first_use("iss", "jti-1", 1_000_300) is True  # the old row had expired
        assert store._first_use("iss", "jti-1", 1_000_300) is False
        clock[0] = 2_000_000.0
        assert store.purge() == 1  # "iss" at 1_000_300; "other-iss" went in the purge at 1_000_200
        assert store.purge() == 0
    finally:
        store.dispose()


def test_one_token_used_at_once_by_several_workers_is_accepted_once(database_url: str) -> None:
    # Each ReplayStore is one worker process's cache (its own engine, its own table check), one database.
    workers = [ReplayStore(database_url) for _ in range(4)]
    barrier = threading.Barrier(12)

    def use(n: int) -> bool:
        barrier.wait()
        return workers[n % len(workers)]._first_use("https://ehr.example.org", "jti-shared", 4_000_000_000)

    try:
        with ThreadPoolExecutor(12) as pool:
            accepted = list(pool.map(use, range(12)))
        assert sorted(accepted) == [False] * 11 + [True]
    finally:
        for store in workers:
            store.dispose()
