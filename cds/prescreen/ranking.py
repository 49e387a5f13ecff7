"""The order of a trial's candidates: likely eligible first, then fewest criteria to confirm, then the
most recent deciding data, ties by patient id — one total order (``CandidateRow.rank_key``), so that every
engine writes the same lists byte for byte."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from cds.prescreen.screening import CandidateRow


def rank(rows: Iterable[CandidateRow]) -> list[CandidateRow]:
    """The rows ranked within each trial, the trials in order of their ids."""
    return sorted(rows, key=_key)


def by_trial(ranked: Iterable[CandidateRow]) -> dict[str, list[CandidateRow]]:
    """Ranked rows split per trial, each list keeping its order."""
    out: dict[str, list[CandidateRow]] = {}
    for row in ranked:
        out.setdefault(row.trial_id, []).append(row)
    return out


def merge_ranked(runs: Iterable[Iterable[CandidateRow]]) -> Iterator[CandidateRow]:
    """Runs each already ranked (:func:`rank`) merged into one ranking, read lazily: a population's rows
    are ranked from its partitions' files without holding them all."""
    return heapq.merge(*runs, key=_key)


def _key(row: CandidateRow) -> tuple[str, int, int, int, str]:
    return row.rank_key
