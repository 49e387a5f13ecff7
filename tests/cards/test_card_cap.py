"""A portfolio's patient-view answer: the most promising trials first (likely eligible, then fewest
criteria to confirm, then trial id), at most ``max_cards`` trial cards, and one info card naming the rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api_support import assert_spec

from cds.assessment import Assessment, CriterionAssessment, Status, Verdict, overall_verdict
from cds.cards import SUMMARY_MAX, capped_cards, more_trials_card, screen_order

BASE = "https://cds.example.org"
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Trial:
    id: str
    title: str = "A trial"
    short_name: str = ""
    url: str | None = None


def criterion(cid: str, status: Status, *, judgement: bool = False) -> CriterionAssessment:
    return CriterionAssessment(id=cid, kind="inclusion", text=cid, judgement=judgement, status=status, reason="decided")


def assessed(*, met: int = 1, unknown: int = 0, judged: int = 0, not_met: int = 0) -> Assessment:
    """``unknown``: criteria to confirm (needs review); ``judged``: the investigator's judgement calls,
    always to confirm, which leave a likely eligible verdict."""
    criteria = [
        *(criterion(f"met_{i}", Status.MET) for i in range(met)),
        *(criterion(f"unknown_{i}", Status.UNKNOWN) for i in range(unknown)),
        *(criterion(f"judged_{i}", Status.UNKNOWN, judgement=True) for i in range(judged)),
        *(criterion(f"not_met_{i}", Status.NOT_MET) for i in range(not_met)),
    ]
    return Assessment(
        trial_id="t",
        trial_title="A trial",
        patient="Patient/p1",
        evaluated_at=NOW,
        verdict=overall_verdict(criteria),
        criteria=criteria,
    )


def answer(results: list[tuple[Any, Assessment]], max_cards: int = 3, **kw: Any) -> tuple[list[str], list[Any]]:
    cards, overview = capped_cards(results, max_cards=max_cards, base_url=BASE, patient_id="p1", **kw)
    return [t.id for t, _, _ in cards], overview


def test_likely_eligible_comes_before_needs_review_whatever_the_ids() -> None:
    review = assessed(unknown=1)
    assert review.verdict is Verdict.NEEDS_REVIEW
    ids, _ = answer([(Trial("a"), review), (Trial("b"), assessed(judged=5))])
    assert ids == ["b", "a"]


def test_within_a_verdict_the_fewest_criteria_to_confirm_come_first() -> None:
    ids, _ = answer(
        [(Trial("a"), assessed(judged=3)), (Trial("b"), assessed(judged=1)), (Trial("c"), assessed(judged=2))]
    )
    assert ids == ["b", "c", "a"]
    reviews: list[tuple[Any, Assessment]] = [(Trial("a"), assessed(unknown=2)), (Trial("b"), assessed(unknown=1))]
    assert [t.id for t, _ in sorted(reviews, key=screen_order)] == ["b", "a"]


def test_ties_are_broken_by_trial_id() -> None:
    ids, _ = answer([(Trial("c"), assessed()), (Trial("a"), assessed()), (Trial("b"), assessed())])
    assert ids == ["a", "b", "c"]


def test_at_most_max_cards_trial_cards_and_one_card_naming_the_rest() -> None:
    results: list[tuple[Any, Assessment]] = [(Trial(f"t{i}", short_name=f"T{i}"), assessed()) for i in range(5)]
    ids, overview = answer(results, max_cards=3)
    assert ids == ["t0", "t1", "t2"]
    assert len(overview) == 1
    assert overview[0]["summary"] == "2 more trials may fit: T3, T4"


def test_no_card_naming_the_rest_when_every_trial_has_its_card() -> None:
    ids, overview = answer([(Trial("a"), assessed()), (Trial("b"), assessed())], max_cards=2)
    assert ids == ["a", "b"]
    assert overview == []


def test_hidden_verdicts_are_not_named_on_the_card_of_the_rest() -> None:
    out = assessed(not_met=1)
    assert out.verdict is Verdict.NOT_ELIGIBLE
    ids, overview = answer([(Trial("a"), assessed()), (Trial("b"), out)], max_cards=1)
    assert ids == ["a"]
    assert overview == []


def test_the_card_of_the_rest_gives_each_trial_its_verdict_and_its_page() -> None:
    rest: list[tuple[Any, Assessment]] = [
        (Trial("t3", short_name="T3"), assessed(unknown=1)),
        (Trial("t4", short_name="T4"), assessed(not_met=1)),
    ]
    card = more_trials_card(rest, base_url=BASE + "/")
    assert card["summary"] == "2 more trials screened: T3, T4"  # not "may fit": one is not eligible
    assert f"[T3]({BASE}/trials/t3): needs review" in card["detail"]
    assert f"[T4]({BASE}/trials/t4): not eligible" in card["detail"]
    assert [link["url"] for link in card["links"]] == [f"{BASE}/trials/t3", f"{BASE}/trials/t4"]


def test_the_card_of_the_rest_is_a_valid_cds_hooks_card() -> None:
    card = more_trials_card([(Trial("t3", short_name="T3"), assessed())], base_url=BASE)
    assert_spec("card", card)
    assert card["indicator"] == "info"
    assert card["source"]["label"] and card["uuid"]
    assert card["summary"] == "1 more trial may fit: T3"


def test_a_long_list_of_the_rest_keeps_the_summary_under_140_characters() -> None:
    rest: list[tuple[Any, Assessment]] = [
        (Trial(f"trial-{i}", short_name=f"A-RATHER-LONG-TRIAL-NAME-{i}"), assessed()) for i in range(12)
    ]
    summary = more_trials_card(rest, base_url=BASE)["summary"]
    assert len(summary) <= SUMMARY_MAX
    assert summary.startswith("12 more trials may fit: A-RATHER-LONG-TRIAL-NAME-0, ")
    assert summary.endswith("…")
