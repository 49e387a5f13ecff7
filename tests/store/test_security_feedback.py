"""Feedback writes survive restarts and concurrent requests, and nothing is lost or duplicated: 8 threads
post the same and different feedback at once through two app instances (two workers) on one database
(SQLite and PostgreSQL); a new app instance on that database then sees exactly the expected rows."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from api_support import NOW, SERVICE, full_request, make_settings, spec_client
from sqlalchemy import select

from cds.api import create_app
from cds.store import feedback as feedback_table

FEEDBACK = f"{SERVICE}/feedback"
THREADS = 8
ROUNDS = 6


def item(card: str, outcome: str, minute: int, second: int = 0) -> dict[str, Any]:
    stamp = f"2026-11-01T12:{minute:02d}:{second:02d}Z"
    out: dict[str, Any] = {"card": card, "outcome": outcome, "outcomeTimestamp": stamp}
    if outcome == "accepted":
        out["acceptedSuggestions"] = [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, card))}]
    else:
        out["overrideReason"] = {"reason": {"code": "not-interested", "display": "Not interested"}}
    return out


def key(entry: dict[str, Any]) -> tuple[str, str, str]:
    return entry["card"], entry["outcome"], entry["outcomeTimestamp"].replace("Z", ".000000Z")


def test_concurrent_feedback_is_stored_exactly_once_and_survives_a_restart(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    workers = [create_app(settings, clock=lambda: NOW), create_app(settings, clock=lambda: NOW)]
    with spec_client(workers[0]) as first, spec_client(workers[1]) as second:
        clients = [first, second]
        issued = [c.post(SERVICE, json=full_request(c)).json()["cards"][0]["uuid"] for c in clients]

        # Shared items: every thread posts them (duplicates across threads, requests and workers).
        shared = [item(card, "overridden", 10 + n) for n, card in enumerate(issued)]
        shared.append(item(issued[0], "accepted", 30))
        # Own items: one thread each, different per round; some on cards this database never issued.
        own = {
            t: [
                item(
                    issued[t % len(issued)] if r % 2 else str(uuid.uuid4()), "accepted" if r % 3 else "overridden", t, r
                )
                for r in range(ROUNDS)
            ]
            for t in range(THREADS)
        }
        barrier = threading.Barrier(THREADS)

        def post_all(thread: int) -> list[int]:
            client = clients[thread % 2]
            barrier.wait()
            statuses = []
            for r in range(ROUNDS):
                batch = [own[thread][r], shared[r % len(shared)], shared[(r + thread) % len(shared)]]
                statuses.append(client.post(FEEDBACK, json={"feedback": batch}).status_code)
            statuses.append(client.post(FEEDBACK, json={"feedback": shared}).status_code)
            return statuses

        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(post_all, range(THREADS)))
        assert all(status == 200 for statuses in results for status in statuses), results

    expected = {key(e) for e in shared} | {key(e) for items in own.values() for e in items}
    assert len(expected) == len(shared) + THREADS * ROUNDS

    # "Restart": the workers are gone (their lifespans closed the engines); a new instance, same file.
    restarted = create_app(settings, clock=lambda: NOW)
    with spec_client(restarted, raise_server_exceptions=True):
        store = restarted.state.cds.store
        with store.engine.connect() as conn:
            rows = [
                (row.card_uuid, row.outcome, row.outcome_timestamp)
                for row in conn.execute(
                    select(feedback_table.c.card_uuid, feedback_table.c.outcome, feedback_table.c.outcome_timestamp)
                )
            ]
        assert len(rows) == len(set(rows)) == store.feedback_count()  # nothing duplicated
        assert set(rows) == expected  # nothing lost, nothing extra
        summary = {s.trial_id: s for s in store.summary()}
        assert summary["npc-liver-mets-ldrt"].cards_shown == len(issued)
