"""Assessment → CDS Hooks cards, on hand-built assessments."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds.assessment import (
    Assessment,
    CriterionAssessment,
    CriterionKind,
    Fact,
    Status,
    Verdict,
    overall_verdict,
)
from cds.cards import (
    ASSESSMENT_EXTENSION,
    OVERRIDE_REASON_SYSTEM,
    card,
    cards_for,
    find_empty,
    md_escape,
    prune,
    pruned_screen,
    summary,
)

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
BASE = "https://cds.example.org"


@dataclass(frozen=True)
class FakeTrial:
    id: str = "npc-liver-mets-ldrt"
    title: str = "Low-dose radiotherapy with penpulimab and chemotherapy for NPC with liver metastases"
    short_name: str = "NPC-LDRT"
    url: str | None = "https://clinicaltrials.gov/study/NCT00000000"


def crit(
    cid: str,
    kind: CriterionKind,
    status: Status,
    *,
    text: str | None = None,
    reason: str = "decided",
    facts: list[Fact] | None = None,
    missing: list[str] | None = None,
    judgement: bool = False,
    evidence: list[str] | None = None,
) -> CriterionAssessment:
    return CriterionAssessment(
        id=cid,
        kind=kind,
        text=text or cid.replace("_", " "),
        judgement=judgement,
        status=status,
        reason=reason,
        evidence=evidence or [],
        facts=facts or [],
        missing=missing or [],
    )


def assessment(criteria: list[CriterionAssessment]) -> Assessment:
    return Assessment(
        trial_id="npc-liver-mets-ldrt",
        trial_title=FakeTrial.title,
        patient="Patient/p1",
        evaluated_at=NOW,
        verdict=overall_verdict(criteria),
        criteria=criteria,
    )


def needs_review() -> Assessment:
    return assessment(
        [
            crit(
                "inc_anc",
                "inclusion",
                Status.MET,
                text="ANC ≥ 1.5 × 10⁹/L",
                reason="ANC 2.1 × 10⁹/L ≥ 1.5",
                facts=[Fact(label="ANC", value="2.1 × 10⁹/L", date="2026-10-28", resource="Observation/anc1")],
                evidence=["Observation/anc1"],
            ),
            crit(
                "inc_platelets",
                "inclusion",
                Status.UNKNOWN,
                text="Platelets ≥ 100 × 10⁹/L",
                reason="no platelet count within 28 days; last one 2026-09-01 (61 days old)",
                missing=["platelet count (LOINC 777-3)"],
            ),
            crit(
                "exc_hiv",
                "exclusion",
                Status.NOT_MET,
                text="HIV infection",
                reason="no HIV condition recorded",
            ),
            crit(
                "exc_investigator_judgement",
                "exclusion",
                Status.UNKNOWN,
                text="Any condition the investigator judges unsuitable",
                reason="the investigator decides",
                judgement=True,
            ),
        ]
    )


def not_eligible() -> Assessment:
    return assessment(
        [
            crit("inc_age", "inclusion", Status.MET, text="Age 18–70", reason="age 54"),
            crit(
                "exc_prior_checkpoint_inhibitor",
                "exclusion",
                Status.MET,
                text="Prior PD-1/PD-L1 inhibitor",
                reason="pembrolizumab from 2026-03-02",
                evidence=["MedicationStatement/m1"],
            ),
        ]
    )


def test_every_link_says_it_is_not_autolaunchable_in_the_spelling_of_the_specification() -> None:
    c = card(needs_review(), FakeTrial(), base_url=BASE, patient_id="p1")
    assert len(c["links"]) == 2
    for link in c["links"]:
        assert link["autolaunchable"] is False  # CDS Hooks 2.0; nothing here is a SMART app to launch
        assert "autoLaunchable" not in link  # HealthChain's spelling: documented, not served


def test_card_has_every_required_field_and_no_empty_value() -> None:
    a = needs_review()
    c = card(a, FakeTrial(), base_url=BASE, patient_id="p1", user_id="Practitioner/dr1")
    assert find_empty(c) == []
    uuid.UUID(c["uuid"])
    assert c["indicator"] == "info"
    assert 0 < len(c["summary"]) < 140
    assert c["source"]["label"]
    assert c["source"]["url"] == f"{BASE}/trials/npc-liver-mets-ldrt"
    assert set(c["source"]["topic"]) == {"system", "code", "display"}
    assert c["links"][0] == {
        "label": "Trial criteria",
        "url": f"{BASE}/trials/npc-liver-mets-ldrt",
        "type": "absolute",
        "autolaunchable": False,
    }
    assert all(link["type"] == "absolute" and "appContext" not in link for link in c["links"])
    assert c["selectionBehavior"] == "at-most-one"
    assert len(c["suggestions"]) == 1
    reasons = c["overrideReasons"]
    assert {r["code"] for r in reasons} >= {"patient-declined", "not-a-candidate", "already-screened"}
    assert all(r["system"] == OVERRIDE_REASON_SYSTEM and r["display"] for r in reasons)


def test_summary_reads_in_one_glance() -> None:
    assert summary(needs_review(), FakeTrial()) == ("NPC-LDRT trial: needs review — 2 of 4 criteria met, 2 to confirm")
    assert summary(not_eligible(), FakeTrial()) == "NPC-LDRT trial: not eligible — 1 not met, 1 of 2 criteria met"


def test_summary_stays_under_140_characters_with_a_long_name() -> None:
    trial = FakeTrial(short_name="A very long trial short name " * 8)
    text = summary(needs_review(), trial)
    assert len(text) < 140
    assert text.endswith("needs review — 2 of 4 criteria met, 2 to confirm")


def test_suggestion_is_a_valid_draft_referral() -> None:
    c = card(needs_review(), FakeTrial(), base_url=BASE, patient_id="p1", user_id="Practitioner/dr1")
    suggestion = c["suggestions"][0]
    uuid.UUID(suggestion["uuid"])
    assert suggestion["uuid"] != c["uuid"]
    assert suggestion["label"] == "Refer to the NPC-LDRT team"
    assert suggestion["isRecommended"] is True
    (action,) = suggestion["actions"]
    assert action["type"] == "create" and action["description"]
    resource = action["resource"]
    ServiceRequest.model_validate(resource)
    assert resource["status"] == "draft" and resource["intent"] == "proposal"
    assert resource["subject"] == {"reference": "Patient/p1"}
    assert resource["requester"] == {"reference": "Practitioner/dr1"}
    assert resource["code"]["coding"][0]["code"] == "306206005"
    assert FakeTrial.title in resource["reasonCode"][0]["text"]
    assert "needs review" in resource["note"][0]["text"]


def test_referral_has_no_requester_for_a_patient_user() -> None:
    c = card(needs_review(), FakeTrial(), base_url=BASE, patient_id="p1", user_id="Patient/p1")
    assert "requester" not in c["suggestions"][0]["actions"][0]["resource"]


def test_detail_is_a_checklist_with_decisive_criteria_first() -> None:
    c = card(not_eligible(), FakeTrial(), base_url=BASE, patient_id="p1")
    lines = c["detail"].splitlines()
    assert lines[0].startswith("**Not eligible** for *")
    items = [line for line in lines if line.startswith("- [")]
    assert items[0].startswith("- [ ] **Excluded: Prior PD-1/PD-L1 inhibitor**")
    assert items[1] == "- [x] Age 18–70 — age 54"


def test_detail_shows_facts_and_what_to_confirm() -> None:
    detail = card(needs_review(), FakeTrial(), base_url=BASE, patient_id="p1")["detail"]
    assert "- [x] ANC ≥ 1.5 × 10⁹/L — ANC 2.1 × 10⁹/L on 28 Oct 2026" in detail
    assert (
        "- [ ] To confirm: Platelets ≥ 100 × 10⁹/L — no platelet count within 28 days; last one 1 Sep 2026"
        " (61 days old); check: platelet count (LOINC 777-3)"
    ) in detail
    assert "- [x] Not present — exclusion: HIV infection — no HIV condition recorded" in detail
    # Decided unknowns come before the investigator's judgement calls, and both before the met criteria.
    assert detail.index("To confirm: Platelets") < detail.index("investigator's judgement")
    assert detail.index("investigator's judgement") < detail.index("- [x]")


def test_record_text_cannot_inject_markdown() -> None:
    a = assessment(
        [
            crit(
                "inc_x",
                "inclusion",
                Status.MET,
                text="Criterion",
                reason="see [here](https://evil.example) <img src=x> **bold**",
            )
        ]
    )
    detail = card(a, FakeTrial(), base_url=BASE, patient_id="p1")["detail"]
    assert "[here](" not in detail
    assert re.search(r"(?<!\\)<img", detail) is None and r"\<img src=x\>" in detail
    assert r"\*\*bold\*\*" in detail
    assert md_escape("a_b*c") == r"a\_b\*c"


def test_extension_carries_the_screen_json_assessment() -> None:
    a = needs_review()
    c = card(a, FakeTrial(), base_url=BASE, patient_id="p1")
    assert c["extension"][ASSESSMENT_EXTENSION] == prune(a.screen_json())
    criteria = c["extension"][ASSESSMENT_EXTENSION]["criteria"]
    assert [x["id"] for x in criteria] == [x.id for x in a.criteria]
    assert criteria[0]["evidence"] == ["Observation/anc1"]
    assert "evidence" not in criteria[1]  # an empty list is omitted, never sent as []


@pytest.mark.parametrize(
    "a",
    [
        needs_review(),
        not_eligible(),
        needs_review().model_copy(update={"verdict_reason": "deceased on 2026-10-01", "notes": ["a note", ""]}),
        needs_review().model_copy(update={"patient": ""}),
    ],
)
def test_the_extension_is_the_pruned_screen_json_member_for_member_in_order(a: Assessment) -> None:
    c = card(a, FakeTrial(), base_url=BASE, patient_id="p1")
    assert orjson.dumps(pruned_screen(a)) == orjson.dumps(prune(a.screen_json()))
    assert list(c)[-1] == "extension"


def test_not_eligible_is_hidden_unless_asked_for() -> None:
    results: list[tuple[Any, Assessment]] = [(FakeTrial(), not_eligible())]
    assert cards_for(results, base_url=BASE, patient_id="p1") == []
    shown = cards_for(results, base_url=BASE, patient_id="p1", show_not_eligible=True)
    (_, _, c) = shown[0]
    assert "suggestions" not in c and "selectionBehavior" not in c  # no referral for a ruled-out patient
    assert find_empty(c) == []


def test_cards_are_ordered_most_promising_first() -> None:
    likely = assessment([crit("inc_age", "inclusion", Status.MET, reason="age 54")])
    assert likely.verdict is Verdict.LIKELY_ELIGIBLE
    results: list[tuple[Any, Assessment]] = [
        (FakeTrial(id="b-trial"), needs_review()),
        (FakeTrial(id="a-trial"), likely),
    ]
    chosen = cards_for(results, base_url=BASE, patient_id="p1")
    assert [t.id for t, _, _ in chosen] == ["a-trial", "b-trial"]
    assert len({c["uuid"] for _, _, c in chosen}) == 2


def test_no_registry_link_without_a_trial_url() -> None:
    c = card(needs_review(), FakeTrial(url=None), base_url=BASE + "/", patient_id="p1")
    assert [link["label"] for link in c["links"]] == ["Trial criteria"]
    assert c["links"][0]["url"] == f"{BASE}/trials/npc-liver-mets-ldrt"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": None, "b": "", "c": [], "d": {}, "e": 0, "f": False}, {"e": 0, "f": False}),
        ({"a": [{"b": None}, {"c": "x"}, ""]}, {"a": [{"c": "x"}]}),
        ({"a": {"b": {"c": []}}}, {}),
    ],
)
def test_prune(value: Any, expected: Any) -> None:
    assert prune(value) == expected
    assert find_empty(prune(value)) == []


def test_find_empty_reports_paths() -> None:
    assert find_empty({"cards": [{"summary": "", "links": [], "source": {"topic": None}}]}) == [
        "$.cards[0].summary",
        "$.cards[0].links",
        "$.cards[0].source.topic",
    ]


def test_dates_are_written_as_clinicians_write_them() -> None:
    detail = card(needs_review(), FakeTrial(), base_url=BASE, patient_id="p1")["detail"]
    assert "(screened 1 Nov 2026)" in detail and "2026-" not in detail
    assert "#### Satisfied (" in detail
