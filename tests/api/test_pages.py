"""The trial page (criteria, codes, thresholds), the coordinator activity view and the per-day store query."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from api_support import NOW, SERVICE, full_request, is_operation_outcome, make_client

from cds.api.pages import describe_trial, trial_html
from cds.portfolio import default_trials
from cds.store import FeedbackEntry, FeedbackStore, IssuedCard, feedback_daily
from cds.trials import LeftOut
from cds.valuesets import default_library

TRIAL = "npc-liver-mets-ldrt"


def described() -> dict[str, object]:
    return describe_trial(default_trials()[TRIAL])


def criterion(d: dict[str, object], cid: str) -> dict[str, object]:
    return next(c for c in d["criteria"] if c["id"] == cid)  # type: ignore[attr-defined,index]


def test_every_criterion_has_plain_language_logic_and_its_codes() -> None:
    d = described()
    trial = default_trials()[TRIAL]
    assert [c["id"] for c in d["criteria"]] == [c.id for c in trial.criteria]  # type: ignore[attr-defined]
    library = default_library()
    for c in d["criteria"]:  # type: ignore[attr-defined]
        assert c["logic"] and c["rule"] and c["text"]
        for vs in c["valuesets"]:
            assert vs in d["valuesets"] and vs in library  # type: ignore[operator]
    # Each named value set is there with its codes, systems and displays.
    anc = d["valuesets"]["lab-anc"]  # type: ignore[index]
    assert anc["count"] == len(anc["codes"]) >= 3
    assert {"system": "http://loinc.org", "system_name": "LOINC", "code": "751-8"}.items() <= anc["codes"][0].items()


def test_lab_thresholds_units_and_windows() -> None:
    d = described()
    anc = criterion(d, "inc_anc")
    assert anc["logic"]["text"].startswith("ANC ≥ 1.5 × 10⁹/L; latest result within 28 days")  # type: ignore[index]
    assert "order: complete blood count with differential" in anc["logic"]["text"]  # type: ignore[index]
    assert anc["tests"] == ["anc"] and d["tests"]["anc"]["unit"] == "× 10⁹/L"  # type: ignore[index]
    albumin = criterion(d, "exc_hypoalbuminemia")["logic"]["text"]  # type: ignore[index]
    assert albumin.startswith("Albumin < 20 g/L; latest result within 2 weeks")
    renal = criterion(d, "inc_renal")["logic"]
    assert [n["text"].split(";")[0] for n in renal["any"]] == [
        "Creatinine ≤ 1.5 × ULN",
        "eGFR ≥ 60 mL/min/1.73 m²",
        "Creatinine clearance ≥ 60 mL/min",
    ]  # type: ignore[index]
    assert "CKD-EPI 2021" in renal["any"][1]["text"]  # type: ignore[index]
    assert d["tests"]["creatinine"]["default_range"] == "male 0.74–1.35, female 0.59–1.04 mg/dL"  # type: ignore[index]
    steroid = criterion(d, "exc_immunosuppression")["logic"]["any"][0]["text"]  # type: ignore[index]
    assert "within 2 weeks" in steroid and "above 10 mg/day prednisone-equivalent" in steroid


def test_composition_is_kept_as_a_tree() -> None:
    d = described()
    logic = criterion(d, "inc_sex_not_pregnant")["logic"]
    assert set(logic) == {"any"}  # type: ignore[arg-type]
    female = logic["any"][1]["all"]  # type: ignore[index]
    assert female[0]["text"] == "Sex recorded as female" and "not" in female[2]
    judgement = criterion(d, "inc_measurable_lesion")
    assert judgement["judgement"] is True and "Investigator's judgement" in judgement["logic"]["text"]  # type: ignore[index]


def test_html_is_escaped_accessible_printable_and_self_contained() -> None:
    page = trial_html(described(), "https://cds.example.org")
    assert page.startswith("<!doctype html>") and '<html lang="en">' in page
    assert "<script src" not in page and '<link rel="stylesheet"' not in page  # no CDN, no external files
    assert 'id="inc_anc"' in page and "751-8" in page and "@media print" in page and "beforeprint" in page
    assert '<th scope="col">' in page and "<details" in page  # long code lists collapse
    # Long lists are cut on the page, never in the JSON.
    assert "more codes: see the JSON" in page
    evil = described()
    evil["title"] = "<script>alert(1)</script>"
    assert "<script>alert(1)" not in trial_html(evil, "https://x")


def test_trial_page_endpoint(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    html = client.get(f"/trials/{TRIAL}")
    assert html.status_code == 200 and "Codes and thresholds used" in html.text
    body = client.get(f"/trials/{TRIAL}", headers={"Accept": "application/json"}).json()
    assert body["measurement_window"] == "28 days" and "lab-anc" in body["valuesets"]


# ---------------------------------------------------------------------------------------------------
# Activity.


def _seed(store: FeedbackStore) -> None:
    day1 = datetime(2026, 10, 30, 9, tzinfo=UTC)
    day2 = datetime(2026, 11, 1, 9, tzinfo=UTC)
    store.record_cards(
        [
            IssuedCard("c1", "trial-eligibility", TRIAL, "likely_eligible", day1),
            IssuedCard("c2", "trial-eligibility", TRIAL, "needs_review", day1),
            IssuedCard("c3", "trial-eligibility", TRIAL, "needs_review", day2),
            IssuedCard("x1", "trial-eligibility", "other-trial", "needs_review", day2),
        ]
    )
    store.record_feedback(
        [
            FeedbackEntry("c1", "trial-eligibility", "accepted", day1, accepted_suggestions=("s1",)),
            FeedbackEntry("c2", "trial-eligibility", "overridden", day2, (), "urn:x", "not-now", "Not the right time"),
            FeedbackEntry("c3", "trial-eligibility", "overridden", day2),
            FeedbackEntry("zz", "trial-eligibility", "overridden", day2),  # a card this database never issued
        ]
    )


def test_daily_feedback_counts_per_day_and_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.sqlite3'}"
    store = FeedbackStore(url)
    store.create_tables()
    _seed(store)
    rows = [r.as_dict() for r in feedback_daily(url, TRIAL)]
    assert rows == [
        {
            "day": "2026-10-30",
            "trial_id": TRIAL,
            "cards_shown": 2,
            "accepted": 1,
            "overridden": 0,
            "override_reasons": {},
        },
        {
            "day": "2026-11-01",
            "trial_id": TRIAL,
            "cards_shown": 1,
            "accepted": 0,
            "overridden": 2,
            "override_reasons": {"(no reason)": 1, "not-now (Not the right time)": 1},
        },
    ]
    everything = feedback_daily(url)
    assert {(r.day, r.trial_id) for r in everything} == {
        ("2026-10-30", TRIAL),
        ("2026-11-01", TRIAL),
        ("2026-11-01", "other-trial"),
        ("2026-11-01", None),
    }
    assert [r.day for r in feedback_daily(url, TRIAL, since=date(2026, 10, 31))] == ["2026-11-01"]


def test_activity_endpoint_html_and_json(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    _seed(client.app.state.cds.store)  # type: ignore[attr-defined]
    body = client.get(f"/trials/{TRIAL}/activity", headers={"Accept": "application/json"}).json()
    assert body["trial_id"] == TRIAL and body["until"] == NOW.date().isoformat()
    assert body["totals"] == {
        "cards_shown": 3,
        "accepted": 1,
        "overridden": 2,
        "override_reasons": {"(no reason)": 1, "not-now (Not the right time)": 1},
    }
    assert [d["day"] for d in body["days"]] == ["2026-10-30", "2026-11-01"]
    only_today = client.get(f"/trials/{TRIAL}/activity?days=1", headers={"Accept": "application/json"}).json()
    assert [d["day"] for d in only_today["days"]] == ["2026-11-01"]
    html = client.get(f"/trials/{TRIAL}/activity")
    assert html.headers["content-type"].startswith("text/html")
    assert "Card activity: NPC-LDRT" in html.text and "not-now (Not the right time)" in html.text
    assert client.get(f"/trials/{TRIAL}/activity?days=0").status_code == 400
    missing = client.get("/trials/nope/activity", headers={"Accept": "application/json"})
    assert missing.status_code == 404 and is_operation_outcome(missing.json(), "not-found")


def test_activity_counts_real_cards_and_feedback(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    (card,) = client.post(SERVICE, json=full_request(client, "npc-01")).json()["cards"]
    override = {
        "card": card["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-01T12:30:00Z",
        "overrideReason": {"reason": card["overrideReasons"][2], "userComment": "Mr X said no"},
    }
    assert client.post(f"{SERVICE}/feedback", json={"feedback": [override]}).status_code == 200
    body = client.get(f"/trials/{TRIAL}/activity", headers={"Accept": "application/json"}).json()
    assert body["days"] == [
        {
            "day": "2026-11-01",
            "cards_shown": 1,
            "accepted": 0,
            "overridden": 1,
            "override_reasons": {"patient-declined (Patient declined trial participation)": 1},
        }
    ]
    assert "Mr X" not in client.get(f"/trials/{TRIAL}/activity").text


def test_activity_needs_client_authentication_when_auth_is_on(tmp_path: Path) -> None:
    client = make_client(tmp_path, auth="jwt")
    response = client.get(f"/trials/{TRIAL}/activity", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert client.get(f"/trials/{TRIAL}").status_code == 200  # the criteria page stays open


def test_criteria_left_out_of_screening_are_listed_on_the_trial_page() -> None:
    trial = default_trials()[TRIAL].model_copy(
        update={"left_out": [LeftOut(text="Signs informed consent.", reason="administrative")]}
    )
    d = describe_trial(trial)
    assert d["left_out"] == [{"text": "Signs informed consent.", "reason": "administrative"}]
    page = trial_html(d, "https://cds.example.org")
    assert 'id="left-out"' in page and "Signs informed consent. <span" in page and "(administrative)" in page


def test_a_trial_without_criteria_left_out_has_no_such_section() -> None:
    d = described()
    assert "left_out" not in d
    assert 'id="left-out"' not in trial_html(d, "https://cds.example.org")
