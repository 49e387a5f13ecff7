"""The portfolio in the service: a trial folder outside the package is served, closed trials are listed but
not carded, and a reload swaps in a valid folder or keeps the old portfolio."""

from __future__ import annotations

from pathlib import Path

from api_support import SERVICE, full_request, make_client
from portfolio_support import LOCAL_TRIAL, local_trial, trial_folder, write_yaml
from structlog.testing import capture_logs

from cds.api.reload import reload_portfolio


def test_serve_runs_a_trial_folder_outside_the_package_on_its_own_value_set(tmp_path: Path) -> None:
    with make_client(tmp_path, trials_dir=trial_folder(tmp_path)) as client:
        cards = client.post(SERVICE, json=full_request(client, "npc-01")).json()["cards"]
        page = client.get(f"/trials/{LOCAL_TRIAL}", headers={"Accept": "application/json"})
    assert any("HTN-LOCAL" in card["summary"] for card in cards), cards
    assert page.status_code == 200
    assert "HTN-LOCAL" in page.text
    assert client.get("/trials/npc-liver-mets-ldrt").status_code == 404  # the folder is the portfolio


def test_a_local_value_set_override_is_logged_at_start_up(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    write_yaml(folder / "valuesets" / "cond-gilbert.yaml", {**_gilbert_with_i10(), "id": "cond-gilbert"})
    client = make_client(tmp_path, trials_dir=folder)  # configures logging: captured from here on
    with capture_logs() as logs, client:
        client.get("/health")
    overrides = [r for r in logs if r["event"] == "portfolio.valueset_override"]
    assert [r["valueset"] for r in overrides] == ["cond-gilbert"]


def _gilbert_with_i10() -> dict[str, object]:
    return {
        "title": "Gilbert syndrome (a hospital's list)",
        "source": "ICD-10-CM: CMS/NCHS tabular list, April 2026 release",
        "include": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E80.4", "display": "Gilbert syndrome"}],
    }


def test_a_closed_trial_is_listed_but_neither_discovered_nor_carded(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    write_yaml(folder / "closed-study.yaml", {**local_trial("closed-study", status="closed"), "short_name": "SHUT"})
    with make_client(tmp_path, trials_dir=folder) as client:
        cards = client.post(SERVICE, json=full_request(client, "npc-01")).json()["cards"]
        discovery = client.get("/cds-services").json()
        page = client.get("/trials/closed-study")
        described = client.get("/trials/closed-study", headers={"Accept": "application/json"}).json()
    assert not any("SHUT" in card["summary"] for card in cards)
    assert all("SHUT" not in service["description"] for service in discovery["services"])
    assert page.status_code == 200 and "Closed:" in page.text
    assert described["status"] == "closed"


def test_a_reload_serves_a_trial_added_to_the_folder(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    with make_client(tmp_path, trials_dir=folder) as client:
        assert client.get("/trials/second-study").status_code == 404
        write_yaml(folder / "second-study.yaml", local_trial("second-study"))
        assert reload_portfolio(client.app.state.cds) is True  # type: ignore[attr-defined]
        assert client.get("/trials/second-study").status_code == 200
        assert client.get("/ready").json()["trials"] == 2


def test_a_reload_refuses_a_broken_folder_keeps_the_old_portfolio_and_logs_the_report(tmp_path: Path) -> None:
    folder = trial_folder(tmp_path)
    with make_client(tmp_path, trials_dir=folder) as client:
        old = client.app.state.cds.served  # type: ignore[attr-defined]
        write_yaml(folder / "second-study.yaml", local_trial("second-study", valueset="local-not-there"))
        with capture_logs() as logs:
            assert reload_portfolio(client.app.state.cds) is False  # type: ignore[attr-defined]
        assert client.app.state.cds.served is old  # type: ignore[attr-defined]
        assert client.get("/trials/second-study").status_code == 404
        cards = client.post(SERVICE, json=full_request(client, "npc-01")).json()["cards"]
    assert any("HTN-LOCAL" in card["summary"] for card in cards)
    refused = [r for r in logs if r["event"] == "portfolio.reload_refused"]
    assert refused and refused[0]["log_level"] == "error"
    assert "unknown value set 'local-not-there'" in refused[0]["report"]
