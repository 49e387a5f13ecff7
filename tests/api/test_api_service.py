"""POST /cds-services/trial-eligibility: validation, prefetch and fetching, cards, errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from api_support import (
    FHIR,
    NOW,
    SERVICE,
    TOKEN,
    assert_spec_card,
    bare_request,
    fhir_handler,
    full_request,
    is_operation_outcome,
    make_client,
    make_settings,
    patients,
    seed_trial_only,
    spec_client,
    with_server,
)
from fastapi.testclient import TestClient

from cds.api import create_app
from cds.cards import ASSESSMENT_EXTENSION, prune
from cds.engine import evaluate
from cds.logging_setup import drop_sensitive
from cds.portfolio import load_trials
from cds.record import PatientRecord


def extension(card: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = card["extension"][ASSESSMENT_EXTENSION]
    return value


# ---------------------------------------------------------------------------------------------------
# Cards from prefetch and from the FHIR server.


def test_prefetch_gives_a_card_that_follows_the_spec(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    response = client.post(SERVICE, json=full_request(client, "npc-01"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["cards"]
    (card,) = body["cards"]
    assert_spec_card(card)
    assert card["summary"].startswith("NPC-LDRT trial: ")
    assert extension(card)["verdict"] in {"likely_eligible", "needs_review"}
    assert card["links"][0]["url"] == "http://testserver/trials/npc-liver-mets-ldrt"
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["subject"] == {"reference": "Patient/npc-01"}
    assert resource["requester"] == {"reference": "Practitioner/demo-clinician"}


def test_card_assessment_equals_the_engine_on_the_same_bundle(tmp_path: Path) -> None:
    client = make_client(tmp_path, show_not_eligible=True, trials_dir=seed_trial_only(tmp_path))
    trial = load_trials()["npc-liver-mets-ldrt"]
    for patient in patients().values():
        response = client.post(SERVICE, json=full_request(client, patient.id))
        assert response.status_code == 200, response.text
        (card,) = response.json()["cards"]
        record = PatientRecord.from_resources(patient.resources, patient_id=patient.id)
        expected = evaluate(trial, record, NOW)
        assert extension(card) == prune(expected.screen_json()), patient.id
        assert_spec_card(card)


def test_not_eligible_patient_gets_no_card_by_default(tmp_path: Path) -> None:
    client = make_client(tmp_path, trials_dir=seed_trial_only(tmp_path))
    trial = load_trials()["npc-liver-mets-ldrt"]
    patient = patients()["npc-12"]  # stage III, no metastasis
    record = PatientRecord.from_resources(patient.resources, patient_id=patient.id)
    assert evaluate(trial, record, NOW).verdict.value == "not_eligible"
    response = client.post(SERVICE, json=full_request(client, "npc-12"))
    assert response.status_code == 200
    assert response.json() == {"cards": []}


def test_public_base_url_is_used_for_links(tmp_path: Path) -> None:
    client = make_client(tmp_path, public_base_url="https://cds.example.org/trial-cds/")
    (card,) = client.post(SERVICE, json=full_request(client)).json()["cards"]
    assert card["source"]["url"] == "https://cds.example.org/trial-cds/trials/npc-liver-mets-ldrt"
    assert card["links"][0]["url"] == "https://cds.example.org/trial-cds/trials/npc-liver-mets-ldrt"


def test_fetched_data_gives_the_same_assessment_as_prefetch(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    prefetched = client.post(SERVICE, json=full_request(client, "npc-01")).json()["cards"]
    calls: list[httpx.Request] = []
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=fhir_handler(patients()["npc-01"], calls))
        response = client.post(SERVICE, json=with_server(bare_request("npc-01")))
    assert response.status_code == 200, response.text
    (card,) = response.json()["cards"]
    assert extension(card) == extension(prefetched[0])
    assert card["uuid"] != prefetched[0]["uuid"]
    service = client.app.state.cds.services["trial-eligibility"]  # type: ignore[attr-defined]
    fetched_types = {c.url.path.split("/")[2] for c in calls}
    assert fetched_types == set(service.resource_types)
    assert all(c.headers["authorization"] == f"Bearer {TOKEN}" for c in calls)


def test_partial_prefetch_is_completed_from_the_server(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    full = full_request(client, "npc-01")
    expected = extension(client.post(SERVICE, json=full).json()["cards"][0])
    partial = with_server({**full, "prefetch": {"patient": full["prefetch"]["patient"]}})
    calls: list[httpx.Request] = []
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=fhir_handler(patients()["npc-01"], calls))
        response = client.post(SERVICE, json=partial)
    assert response.status_code == 200, response.text
    assert extension(response.json()["cards"][0]) == expected
    assert "Patient" not in {c.url.path.split("/")[2] for c in calls}


def test_missing_data_without_a_fhir_server_is_412(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    response = client.post(SERVICE, json=bare_request())
    assert response.status_code == 412
    assert is_operation_outcome(response.json())


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(401), httpx.Response(500), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")],
    ids=["401", "500", "timeout", "connect"],
)
def test_fhir_server_failure_is_412(tmp_path: Path, failure: Any) -> None:
    client = make_client(tmp_path, time_budget_s=0.5)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url__startswith=FHIR)
        if isinstance(failure, httpx.Response):
            route.mock(return_value=failure)
        else:
            route.mock(side_effect=failure)
        response = client.post(SERVICE, json=with_server(bare_request()))
    assert response.status_code == 412, response.text
    body = response.json()
    assert is_operation_outcome(body)
    assert TOKEN not in response.text


def test_fhir_server_not_allow_listed_is_400_and_not_contacted(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    body = with_server(bare_request())
    body["fhirServer"] = "https://evil.example.net/fhir"
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route()
        response = client.post(SERVICE, json=body)
    assert response.status_code == 400
    assert is_operation_outcome(response.json(), "forbidden")
    assert response.json()["issue"][0]["expression"] == ["fhirServer"]
    assert not route.called


# ---------------------------------------------------------------------------------------------------
# Bad requests: always a 4xx with an OperationOutcome.


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(body))
    target = copy
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return copy


BAD_BODIES: dict[str, tuple[Any, str, str | None]] = {
    # name: (body, expected issue code, expected expression)
    "missing hook": (_without(bare_request(), "hook"), "required", "hook"),
    "wrong hook": ({**bare_request(), "hook": "order-sign"}, "invalid", "hook"),
    "empty hook": ({**bare_request(), "hook": ""}, "invalid", "hook"),
    "missing hookInstance": (_without(bare_request(), "hookInstance"), "required", "hookInstance"),
    "hookInstance not a uuid": ({**bare_request(), "hookInstance": "not-a-uuid"}, "invalid", "hookInstance"),
    "hookInstance a number": ({**bare_request(), "hookInstance": 12345}, "invalid", "hookInstance"),
    "missing context": (_without(bare_request(), "context"), "required", "context"),
    "context a string": ({**bare_request(), "context": "npc-01"}, "structure", "context"),
    "missing patientId": (_without(bare_request(), "context", "patientId"), "required", "context.patientId"),
    "missing userId": (_without(bare_request(), "context", "userId"), "required", "context.userId"),
    "patientId a number": (
        {**bare_request(), "context": {"userId": "Practitioner/1", "patientId": 7}},
        "invalid",
        "context.patientId",
    ),
    "patientId with a slash": (
        {**bare_request(), "context": {"userId": "Practitioner/1", "patientId": "a/../b"}},
        "invalid",
        "context.patientId",
    ),
    "userId not a reference": (
        {**bare_request(), "context": {"userId": "dr-1", "patientId": "npc-01"}},
        "invalid",
        "context.userId",
    ),
    "fhirAuthorization without fhirServer": (
        _without(with_server(bare_request()), "fhirServer"),
        "required",
        "fhirServer",
    ),
    "token_type not Bearer": (
        {
            **with_server(bare_request()),
            "fhirAuthorization": {**with_server(bare_request())["fhirAuthorization"], "token_type": "MAC"},
        },
        "invalid",
        "fhirAuthorization.token_type",
    ),
    "expires_in a string": (
        {
            **with_server(bare_request()),
            "fhirAuthorization": {**with_server(bare_request())["fhirAuthorization"], "expires_in": "300"},
        },
        "invalid",
        "fhirAuthorization.expires_in",
    ),
    "access_token missing": (
        _without(with_server(bare_request()), "fhirAuthorization", "access_token"),
        "required",
        "fhirAuthorization.access_token",
    ),
    "fhirServer not a URL": ({**bare_request(), "fhirServer": "fhir.example.org"}, "invalid", "fhirServer"),
    "prefetch an array": ({**bare_request(), "prefetch": []}, "structure", "prefetch"),
    "prefetch value a string": ({**bare_request(), "prefetch": {"patient": "npc-01"}}, "structure", "prefetch.patient"),
    "prefetch value of the wrong type": (
        {**bare_request(), "prefetch": {"patient": {"resourceType": "Observation", "id": "x"}}},
        "invalid",
        "prefetch",
    ),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_request_is_400_operation_outcome(tmp_path: Path, name: str) -> None:
    body, code, expression = BAD_BODIES[name]
    client = make_client(tmp_path)
    response = client.post(SERVICE, json=body)
    assert response.status_code == 400, (name, response.text)
    outcome = response.json()
    assert is_operation_outcome(outcome, code), outcome
    if expression is not None:
        assert any(expression in issue.get("expression", []) for issue in outcome["issue"]), outcome
    assert TOKEN not in response.text  # the token is never echoed


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'"patient-view"', "application/json"),
        (b"null", "application/json"),
        (b"\xff\xfe\x00", "application/json"),
        (b"hook=patient-view", "application/x-www-form-urlencoded"),
        (b'{"hook": NaN}', "application/json"),
    ],
    ids=["malformed", "empty", "array", "string", "null", "not-utf8", "form", "nan"],
)
def test_non_object_bodies_are_400(tmp_path: Path, content: bytes, content_type: str) -> None:
    client = make_client(tmp_path)
    response = client.post(SERVICE, content=content, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert is_operation_outcome(response.json(), "structure", "required")


def test_too_large_and_too_deep_bodies_are_rejected(tmp_path: Path) -> None:
    client = make_client(tmp_path, max_body_bytes=2048, max_json_depth=8)
    big = {**bare_request(), "extension": {"x": "a" * 4096}}
    response = client.post(SERVICE, json=big)
    assert response.status_code == 413 and is_operation_outcome(response.json(), "too-long")
    deep: Any = "x"
    for _ in range(20):
        deep = {"d": deep}
    response = client.post(SERVICE, json={**bare_request(), "extension": deep})
    assert response.status_code == 400 and is_operation_outcome(response.json(), "too-long")


def test_unknown_service_and_route_are_404_and_wrong_method_405(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    response = client.post("/cds-services/no-such-service", json=bare_request())
    assert response.status_code == 404 and is_operation_outcome(response.json(), "not-found")
    response = client.post("/cds-services/no-such-service/feedback", json={"feedback": []})
    assert response.status_code == 404 and is_operation_outcome(response.json(), "not-found")
    response = client.get("/nowhere")
    assert response.status_code == 404 and is_operation_outcome(response.json(), "not-found")
    response = client.get(SERVICE)
    assert response.status_code == 405 and is_operation_outcome(response.json(), "not-supported")


def test_unexpected_error_is_a_500_operation_outcome_without_details(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_trial: Any, _record: Any, _now: Any) -> Any:
        raise RuntimeError("Patient Jane Doe born 1970-01-01")

    app = create_app(make_settings(tmp_path), evaluate=broken, clock=lambda: NOW)
    client = spec_client(app, raise_server_exceptions=True)  # raises if the exception escaped the app
    response = client.post(SERVICE, json=full_request(client))
    assert response.status_code == 500
    assert is_operation_outcome(response.json(), "exception")
    assert "Jane" not in response.text
    logs = capsys.readouterr().err
    assert "RuntimeError" in logs and "Jane" not in logs


def test_logs_carry_no_phi_or_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client = make_client(tmp_path)
    capsys.readouterr()
    client.post(SERVICE, json=full_request(client, "npc-01"))
    with respx.mock(assert_all_called=False) as mock:
        mock.get(url__startswith=FHIR).mock(side_effect=fhir_handler(patients()["npc-01"], []))
        client.post(SERVICE, json=with_server(bare_request("npc-01")))
    logs = capsys.readouterr().err
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    answered = [line for line in lines if line.get("event") == "cds_service.answered"]
    assert len(answered) == 2
    assert answered[0]["service"] == "trial-eligibility" and answered[0]["hook"] == "patient-view"
    assert answered[0]["cards"] == 1 and "duration_ms" in answered[0]
    for forbidden in ("npc-01", TOKEN, "Test Patient", "1974-05-12", "SYN-00001"):
        assert forbidden not in logs


def test_log_processor_drops_phi_and_tokens() -> None:
    event = {
        "event": "x",
        "hook_instance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "patient_id": "npc-01",
        "birthDate": "1974-05-12",
        "access_token": TOKEN,
        "nested": {"name": "Test Patient", "count": 3},
        "message": f"Authorization: Bearer {TOKEN}",
        "cards": 1,
    }
    cleaned = drop_sensitive(None, "info", event)
    assert cleaned == {
        "event": "x",
        "hook_instance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "nested": {"count": 3},
        "message": "Authorization: [redacted]",
        "cards": 1,
    }


# ---------------------------------------------------------------------------------------------------
# Where the patient is judged: on the event loop for a usual record and a local store, in the thread
# pool for a large record or a database server (the answer is the same either way).


def judged_on_event_loop(client: TestClient) -> list[bool]:
    """Wraps the app's evaluator: one entry per trial judged, True when it ran on the event loop."""
    state = client.app.state.cds  # type: ignore[attr-defined]
    inner = state.evaluate
    seen: list[bool] = []

    def evaluate_and_note(trial: Any, record: Any, now: Any) -> Any:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:  # a worker thread has no running loop
            seen.append(False)
        return inner(trial, record, now)

    state.evaluate = evaluate_and_note
    return seen


def test_a_usual_record_is_judged_on_the_event_loop(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    seen = judged_on_event_loop(client)
    response = client.post(SERVICE, json=full_request(client))
    assert response.status_code == 200 and response.json()["cards"]
    assert seen and all(seen)  # one entry per trial of the portfolio


def test_a_record_over_the_inline_limit_is_judged_in_the_thread_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(tmp_path)
    inline = client.post(SERVICE, json=full_request(client)).json()
    monkeypatch.setattr("hooks.base.INLINE_MAX_RESOURCES", 3)
    seen = judged_on_event_loop(client)
    pooled = client.post(SERVICE, json=full_request(client)).json()
    assert seen and not any(seen)
    assert [c["summary"] for c in pooled["cards"]] == [c["summary"] for c in inline["cards"]]


def test_a_store_on_a_database_server_is_written_from_the_thread_pool(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    client.app.state.cds.store.local = False  # type: ignore[attr-defined]
    seen = judged_on_event_loop(client)
    response = client.post(SERVICE, json=full_request(client))
    assert response.status_code == 200 and seen and not any(seen)
    shown = {s.trial_id: s.cards_shown for s in client.app.state.cds.store.summary()}  # type: ignore[attr-defined]
    assert shown == {"npc-liver-mets-ldrt": 1}  # the card was stored before the answer left
