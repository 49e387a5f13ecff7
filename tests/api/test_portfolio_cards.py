"""Many trials per call, through the API: a folder of trials, the patient-view answer capped at
TRIAL_CDS_MAX_CARDS with one card naming the rest, and GET /trials listing the portfolio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from api_support import SERVICE, full_request, make_client

from cds.settings import Settings
from cds.valuesets import MAPPINGS_DIR

BUNDLED = MAPPINGS_DIR / "trials" / "npc-liver-mets-ldrt.yaml"
#: Criteria npc-01 (likely eligible) leaves to confirm; a copy without them has fewer to confirm.
UNKNOWN_FOR_NPC_01 = frozenset({"exc_substance_or_condition", "exc_investigator_judgement"})


def write_trial(folder: Path, trial_id: str, short_name: str, *, drop: frozenset[str] = frozenset()) -> None:
    data: dict[str, Any] = yaml.safe_load(BUNDLED.read_text(encoding="utf-8"))
    data["id"], data["short_name"] = trial_id, short_name
    data["title"] = f"{short_name}: {data['title']}"
    data["criteria"] = [c for c in data["criteria"] if c["id"] not in drop]
    (folder / f"{trial_id}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


@pytest.fixture
def trials_dir(tmp_path: Path) -> Path:
    """Five trials: four copies of the bundled one, and a fifth ("e-fewer") with two of npc-01's
    criteria to confirm left out."""
    folder = tmp_path / "trials"
    folder.mkdir()
    for trial_id, name in (
        ("a-trial", "TRIAL-A"),
        ("b-trial", "TRIAL-B"),
        ("c-trial", "TRIAL-C"),
        ("d-trial", "TRIAL-D"),
    ):
        write_trial(folder, trial_id, name)
    write_trial(folder, "e-fewer", "TRIAL-E", drop=UNKNOWN_FOR_NPC_01)
    return folder


def cards_for_npc_01(tmp_path: Path, trials_dir: Path, **settings: Any) -> list[dict[str, Any]]:
    client = make_client(tmp_path, trials_dir=trials_dir, **settings)
    response = client.post(SERVICE, json=full_request(client, "npc-01"))
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


def trial_of(card: dict[str, Any]) -> str:
    return str(card["source"]["url"]).rsplit("/", 1)[-1]


def test_three_trial_cards_fewest_to_confirm_first_then_by_id(tmp_path: Path, trials_dir: Path) -> None:
    cards = cards_for_npc_01(tmp_path, trials_dir)
    assert [trial_of(c) for c in cards[:3]] == ["e-fewer", "a-trial", "b-trial"]


def test_the_trials_beyond_the_cap_are_named_on_one_last_card(tmp_path: Path, trials_dir: Path) -> None:
    cards = cards_for_npc_01(tmp_path, trials_dir)
    assert len(cards) == 4
    rest = cards[3]
    assert rest["summary"] == "2 more trials may fit: TRIAL-C, TRIAL-D"
    assert rest["indicator"] == "info"
    assert [link["url"].rsplit("/", 1)[-1] for link in rest["links"]] == ["c-trial", "d-trial"]
    assert "likely eligible" in rest["detail"]


def test_the_cap_is_a_setting(tmp_path: Path, trials_dir: Path) -> None:
    cards = cards_for_npc_01(tmp_path, trials_dir, max_cards=5)
    assert [trial_of(c) for c in cards] == ["e-fewer", "a-trial", "b-trial", "c-trial", "d-trial"]


def test_the_cap_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAL_CDS_MAX_CARDS", "7")
    assert Settings().max_cards == 7
    monkeypatch.delenv("TRIAL_CDS_MAX_CARDS")
    assert Settings().max_cards == 3


def test_get_trials_lists_every_trial_with_its_title_and_page(tmp_path: Path, trials_dir: Path) -> None:
    client = make_client(tmp_path, trials_dir=trials_dir, public_base_url="https://cds.example.org")
    listing = client.get("/trials", headers={"Accept": "application/json"}).json()["trials"]
    assert [t["id"] for t in listing] == ["a-trial", "b-trial", "c-trial", "d-trial", "e-fewer"]
    assert listing[0]["title"].startswith("TRIAL-A: ")
    assert listing[0]["page"] == "https://cds.example.org/trials/a-trial"
    assert client.get(listing[0]["page"].removeprefix("https://cds.example.org")).status_code == 200


def test_the_trials_page_links_every_trial(tmp_path: Path, trials_dir: Path) -> None:
    client = make_client(tmp_path, trials_dir=trials_dir, public_base_url="https://cds.example.org")
    response = client.get("/trials", headers={"Accept": "text/html"})
    assert response.headers["content-type"].startswith("text/html")
    for trial_id in ("a-trial", "b-trial", "c-trial", "d-trial", "e-fewer"):
        assert f'href="https://cds.example.org/trials/{trial_id}"' in response.text


def test_discovery_names_every_trial_of_the_portfolio(tmp_path: Path, trials_dir: Path) -> None:
    client = make_client(tmp_path, trials_dir=trials_dir)
    services = client.get("/cds-services").json()["services"]
    description = next(s for s in services if s["hook"] == "patient-view")["description"]
    assert "5 clinical trials" in description
    for name in ("TRIAL-A", "TRIAL-B", "TRIAL-C", "TRIAL-D", "TRIAL-E"):
        assert name in description
