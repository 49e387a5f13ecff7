"""Discovery, health, CORS, trial pages, authentication wiring and demo mode."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import respx
from api_support import (
    NOW,
    SERVICE,
    bare_request,
    fhir_handler,
    is_operation_outcome,
    make_client,
    make_settings,
    patients,
    spec_client,
    with_server,
)
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from cds.api import create_app
from cds.cards import ASSESSMENT_EXTENSION, find_empty
from cds.demo import ANCHOR_DATE, load_demo_patients, shift_date_text, shift_dates
from cds.portfolio import load_trials


def test_discovery_lists_the_service_with_its_prefetch(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    response = client.get("/cds-services")
    assert response.status_code == 200
    body = response.json()
    assert find_empty(body) == []
    services = {s["id"]: s for s in body["services"]}
    assert list(services) == ["trial-eligibility", "trial-eligibility-order-select", "trial-eligibility-order-sign"]
    service = services["trial-eligibility"]
    assert service["hook"] == "patient-view"
    assert service["title"] and service["description"]
    prefetch = service["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    types: set[str] = set()
    for trial in load_trials().values():
        types |= trial.resource_types()
    for rtype in types - {"Patient"}:
        key = rtype[0].lower() + rtype[1:]
        assert prefetch[key] == f"{rtype}?patient={{{{context.patientId}}}}"
    assert len(prefetch) == len(types)
    for rtype in types:
        assert f"patient/{rtype}.rs" in service["usageRequirements"]
        assert f"patient/{rtype}.read" in service["usageRequirements"]


def test_health_and_ready(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["trials"] >= 1


def test_lifespan_starts_and_stops_cleanly(tmp_path: Path) -> None:
    with spec_client(create_app(make_settings(tmp_path), clock=lambda: NOW), raise_server_exceptions=True) as client:
        assert client.get("/ready").status_code == 200


def test_ready_is_503_when_the_database_is_gone(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    client.app.state.cds.store.engine.dispose()  # type: ignore[attr-defined]
    client.app.state.cds.store.ping = lambda: False  # type: ignore[attr-defined]
    response = client.get("/ready")
    assert response.status_code == 503 and is_operation_outcome(response.json())


def test_cors_preflight_allows_authorization(tmp_path: Path) -> None:
    client = make_client(tmp_path, cors_origins=["https://ehr.example.org"])
    response = client.options(
        SERVICE,
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://ehr.example.org"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    other = client.options(
        SERVICE,
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in other.headers


def test_no_cors_by_default(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    response = client.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert "access-control-allow-origin" not in response.headers


def test_trial_page_html_and_json(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    trial = load_trials()["npc-liver-mets-ldrt"]
    html = client.get("/trials/npc-liver-mets-ldrt")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert trial.short_name in html.text and "Inclusion criteria" in html.text
    as_json = client.get("/trials/npc-liver-mets-ldrt", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"].startswith("application/json")
    body = as_json.json()
    assert body["id"] == trial.id and body["title"] == trial.title and body["description"]
    assert [c["id"] for c in body["criteria"]] == [c.id for c in trial.criteria]
    for item in body["criteria"]:
        assert item["kind"] in {"inclusion", "exclusion"} and item["text"] and item["rule"]
    missing = client.get("/trials/no-such-trial", headers={"Accept": "application/json"})
    assert missing.status_code == 404 and is_operation_outcome(missing.json(), "not-found")


def test_jwt_auth_guards_the_cds_routes_only(tmp_path: Path) -> None:
    client = make_client(tmp_path, auth="jwt")
    for method, path in (("GET", "/cds-services"), ("POST", SERVICE), ("POST", f"{SERVICE}/feedback")):
        response = client.request(method, path, json={})
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/health").status_code == 200
    assert client.get("/trials/npc-liver-mets-ldrt").status_code == 200
    assert client.get("/demo/patients").status_code == 404  # demo routes exist only in demo mode


# ---------------------------------------------------------------------------------------------------
# Demo mode.


def demo_client(tmp_path: Path, today: date = ANCHOR_DATE) -> TestClient:
    app = create_app(make_settings(tmp_path, demo=True, auth="jwt", cors_origins=[]), clock=lambda: NOW)
    app.state.clock = lambda: NOW.replace(year=today.year, month=today.month, day=today.day)
    return spec_client(app)


def test_demo_mode_round_trip(tmp_path: Path) -> None:
    client = demo_client(tmp_path)
    page = client.get("/demo")
    assert page.status_code == 200 and "<script>" in page.text and "cds-services/" in page.text
    assert "://" not in page.text  # no CDN: every URL is relative to the service
    listed = client.get("/demo/patients").json()["patients"]
    assert {p["id"] for p in listed} == set(load_demo_patients(ANCHOR_DATE))
    assert all(p["description"] for p in listed)
    request = client.get("/demo/patients/npc-01/request").json()
    assert request["hook"] == "patient-view" and request["context"]["patientId"] == "npc-01"
    discovery = client.get("/cds-services").json()  # no auth in demo mode, whatever the settings say
    assert set(request["prefetch"]) == set(discovery["services"][0]["prefetch"])
    response = client.post(SERVICE, json=request, headers={"Origin": "https://anywhere.example"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    (card,) = response.json()["cards"]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": "2026-11-01T12:30:00Z",
            }
        ]
    }
    assert client.post(f"{SERVICE}/feedback", json=feedback).status_code == 200
    missing = client.get("/demo/patients/nobody/request")
    assert missing.status_code == 404 and is_operation_outcome(missing.json(), "not-found")


@pytest.mark.parametrize(
    "base",
    ["http://127.0.0.1:8080/r4", "http://127.0.0.53:9090/r4", "http://[::1]:8080/r4", "https://127.0.0.1:8443/r4"],
)
def test_demo_mode_reads_a_fhir_server_on_a_loopback_address_without_an_allow_list(
    tmp_path: Path, base: str
) -> None:
    # The reference sandbox always sends a fhirServer: in demo mode, that is the demo's local one.
    client = demo_client(tmp_path)
    calls: list[httpx.Request] = []
    body = {**with_server(bare_request()), "fhirServer": base}
    with respx.mock(assert_all_mocked=True) as mock:
        mock.route(url__startswith=base).mock(side_effect=loopback_handler(base, calls))
        response = client.post(SERVICE, json=body)
    assert response.status_code == 200, response.text
    assert calls and all(str(c.url).startswith(base) for c in calls)
    assert response.json()["cards"]


@pytest.mark.parametrize(
    "base", ["https://ehr.example.net/fhir", "http://localhost:8080/r4", "https://10.0.0.7/fhir"]
)
def test_demo_mode_refuses_a_fhir_server_off_loopback_that_is_not_allow_listed(tmp_path: Path, base: str) -> None:
    client = demo_client(tmp_path)
    with respx.mock(assert_all_mocked=True) as mock:
        response = client.post(SERVICE, json={**with_server(bare_request()), "fhirServer": base})
    assert response.status_code == 400
    assert is_operation_outcome(response.json(), "forbidden")
    assert not mock.calls


def test_outside_demo_mode_a_loopback_fhir_server_must_be_allow_listed(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    with respx.mock(assert_all_mocked=True) as mock:
        body = {**with_server(bare_request()), "fhirServer": "http://127.0.0.1:8080/r4"}
        response = client.post(SERVICE, json=body)
    assert response.status_code == 400 and not mock.calls


def test_demo_mode_start_up_says_loopback_fhir_servers_are_allowed(tmp_path: Path) -> None:
    client = demo_client(tmp_path)  # before capture_logs: the app configures the logging
    with capture_logs() as logs, client:
        pass
    (said,) = [e for e in logs if e["event"] == "service.demo_fhir_servers"]
    assert "127.0.0.0/8" in said["policy"] and "::1" in said["policy"]


def test_outside_demo_mode_the_start_up_says_nothing_of_loopback_fhir_servers(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    with capture_logs() as logs, client:
        pass
    assert not [e for e in logs if e["event"] == "service.demo_fhir_servers"]


def test_root_redirects_to_the_demo_page_in_demo_mode(tmp_path: Path) -> None:
    response = demo_client(tmp_path).get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "demo"
    assert demo_client(tmp_path).get("/").url.path == "/demo"
    kept = demo_client(tmp_path).get("/?patient=npc-01", follow_redirects=False)
    assert kept.headers["location"] == "demo?patient=npc-01"


def test_root_is_not_found_outside_demo_mode(tmp_path: Path) -> None:
    response = make_client(tmp_path).get("/", follow_redirects=False)
    assert response.status_code == 404 and is_operation_outcome(response.json(), "not-found")


def test_demo_page_opens_the_patient_named_in_its_address(tmp_path: Path) -> None:
    # The page itself reads ?patient= (tests/browser drives it); the server serves the same page.
    page = demo_client(tmp_path).get("/demo", params={"patient": "npc-01"})
    assert page.status_code == 200 and "URLSearchParams(location.search).get(\"patient\")" in page.text


def loopback_handler(base: str, calls: list[httpx.Request]) -> Any:
    """fhir_handler (api_support) for a FHIR server at ``base`` instead of the usual one."""
    handle = fhir_handler(patients()["npc-01"], calls)
    prefix = urlsplit(base).path

    def moved(request: httpx.Request) -> httpx.Response:
        path = "/r4" + request.url.path.removeprefix(prefix)
        return handle(httpx.Request("GET", request.url.copy_with(path=path), headers=request.headers))

    return moved


def test_demo_dates_follow_today(tmp_path: Path) -> None:
    anchored = demo_client(tmp_path / "a").get("/demo/patients/npc-01/request").json()
    later = demo_client(tmp_path / "b", date(2027, 2, 10)).get("/demo/patients/npc-01/request").json()
    shifted = shift_dates(anchored["prefetch"], date(2027, 2, 10) - ANCHOR_DATE)
    assert later["prefetch"] == shifted
    # And the verdict is the same story on the later day.
    a = demo_client(tmp_path / "c").post(SERVICE, json=anchored).json()["cards"]
    b = demo_client(tmp_path / "d", date(2027, 2, 10)).post(SERVICE, json=later).json()["cards"]

    def story(cards: list[dict[str, Any]]) -> list[Any]:
        return [
            (x["verdict"], [(c["id"], c["status"]) for c in x["criteria"]])
            for x in (card["extension"][ASSESSMENT_EXTENSION] for card in cards)
        ]

    assert story(a) == story(b) and len(a) == 1


def test_shift_date_text() -> None:
    delta = date(2026, 11, 25) - ANCHOR_DATE
    assert shift_date_text("2026-10-28", delta) == "2026-11-21"
    assert shift_date_text("2026-10-28T08:15:00+08:00", delta) == "2026-11-21T08:15:00+08:00"
    assert shift_date_text("2026-10-28T08:15:00.123Z", delta) == "2026-11-21T08:15:00.123Z"
    assert shift_date_text("2026-10", delta) == "2026-11"
    assert shift_date_text("1974", delta) == "1974"  # a bare year (or a code like RxNorm 2555) is left
    assert shift_date_text("1975-2", delta) == "1975-2"  # a LOINC code is not a date
    data: Any = {"code": "2026-10-28", "effectiveDateTime": "2026-10-28", "valueString": "n/a"}
    assert shift_dates(data, delta) == {
        "code": "2026-10-28",
        "effectiveDateTime": "2026-11-21",
        "valueString": "n/a",
    }
