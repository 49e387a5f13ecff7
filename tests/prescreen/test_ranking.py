"""A trial's candidates in the order a coordinator works: likely eligible first, then fewest criteria to
confirm, then the most recent deciding data; ties by patient id, whatever order the rows came in."""

from __future__ import annotations

import pickle
import random

import orjson
from prescreen_support import row

from cds.prescreen.ranking import by_trial, merge_ranked, rank
from cds.prescreen.screening import CandidateRow


def _ids(rows: list[CandidateRow]) -> list[str]:
    return [r.patient_id for r in rows]


def test_likely_eligible_come_before_needs_review_before_not_eligible() -> None:
    rows = [row("a", "not_eligible"), row("b", "needs_review"), row("c", "likely_eligible")]
    assert _ids(rank(rows)) == ["c", "b", "a"]


def test_within_a_verdict_fewer_criteria_to_confirm_come_first() -> None:
    assert _ids(rank([row("a", confirm=3), row("b", confirm=1), row("c", confirm=2)])) == ["b", "c", "a"]


def test_then_the_most_recent_deciding_data_comes_first_whatever_its_precision() -> None:
    rows = [row("a", latest="2026-09-30"), row("b", latest="2026-10"), row("c", latest=""), row("d", latest="2026")]
    assert _ids(rank(rows)) == ["b", "a", "d", "c"]


def test_ties_are_ordered_by_patient_id_whatever_the_input_order() -> None:
    rows = [row(f"p-{i:02d}") for i in range(20)]
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    assert rank(shuffled) == rows


def test_trials_are_ranked_apart() -> None:
    ranked = by_trial(rank([row("a", trial="t2"), row("b", trial="t1", verdict="not_eligible"), row("c", trial="t1")]))
    assert {t: _ids(rows) for t, rows in ranked.items()} == {"t1": ["c", "b"], "t2": ["a"]}


def test_ranked_runs_merge_into_the_ranking_of_all_their_rows() -> None:
    rows = [row(f"p-{i}", verdict=v, confirm=i % 3) for i, v in enumerate(["likely_eligible", "needs_review"] * 10)]
    runs = [rank(rows[::3]), rank(rows[1::3]), rank(rows[2::3])]
    assert list(merge_ranked(runs)) == rank(rows)


def test_a_row_pickles_and_reads_back_from_its_json() -> None:
    r = row("a", confirm=2, latest="2026-10-01")
    assert pickle.loads(pickle.dumps(r)) == r
    assert CandidateRow.from_json(orjson.loads(orjson.dumps(r))) == r
