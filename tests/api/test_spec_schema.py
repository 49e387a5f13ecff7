"""The CDS Hooks 2.0 JSON Schema (cds/api/schema/cds-hooks-2.0), written from the specification's text: it
takes the specification's own examples and this service's answers, and refuses what the text forbids.
Every answer of the API tests is checked with it too (api_support.SpecClient)."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
from api_support import (
    SERVICE,
    assert_spec,
    full_request,
    make_client,
    spec_client,
    spec_errors,
    with_server,
)
from fastapi import FastAPI

CARD_UUID = "4e0a3a1e-3283-4575-ab82-028d55fe2719"
SUGGESTION_UUID = "e56e1945-20b3-4393-8503-a1a20fd73152"


def spec_card() -> dict[str, Any]:
    """A card using every field the specification defines for one."""
    return {
        "uuid": CARD_UUID,
        "summary": "Lung cancer screening shared decision making",
        "detail": "Patient is a current smoker with a 20 pack/year history.",
        "indicator": "info",
        "source": {
            "label": "Zika Virus Management",
            "url": "https://example.com/cdc-zika-virus-mgmt",
            "icon": "https://example.com/cdc-zika-virus-mgmt/100.png",
            "topic": {"system": "http://example.org/cds-services/fhir/CodeSystem/topics", "code": "12345"},
        },
        "suggestions": [
            {
                "label": "Order a low-dose CT",
                "uuid": SUGGESTION_UUID,
                "isRecommended": True,
                "actions": [
                    {
                        "type": "create",
                        "description": "Create an order for a low-dose CT",
                        "resource": {"resourceType": "ServiceRequest", "status": "draft", "intent": "proposal"},
                    },
                    {"type": "delete", "description": "Remove the old order", "resourceId": "ServiceRequest/old-1"},
                ],
            }
        ],
        "selectionBehavior": "at-most-one",
        "overrideReasons": [
            {
                "code": "12354",
                "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons",
                "display": "Contraindicated",
            }
        ],
        "links": [
            {"label": "Github", "url": "https://github.com", "type": "absolute", "autolaunchable": False},
            {
                "label": "SMART Example App",
                "url": "https://smart.example.com/launch",
                "type": "smart",
                "appContext": '{"session":3456356,"settings":{"module":4235}}',
                "autolaunchable": True,
            },
        ],
        "extension": {"com.example.card-kind": "screening"},
    }


def card_errors(card: dict[str, Any]) -> list[str]:
    return spec_errors("hook-response", {"cards": [card]})


def test_the_schema_takes_a_card_with_every_field_of_the_specification() -> None:
    assert card_errors(spec_card()) == []


def test_the_schema_takes_the_specifications_minimal_card_and_an_empty_answer() -> None:
    assert card_errors({"summary": "Another card", "indicator": "warning", "source": {"label": "Static"}}) == []
    assert spec_errors("hook-response", {"cards": []}) == []


def test_the_schema_takes_system_actions_beside_the_cards() -> None:
    action = {"type": "update", "description": "Record the score", "resource": {"resourceType": "ServiceRequest"}}
    assert spec_errors("hook-response", {"cards": [], "systemActions": [action]}) == []


def without(card: dict[str, Any], *path: str) -> dict[str, Any]:
    broken = copy.deepcopy(card)
    target = broken
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return broken


def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    broken = spec_card()
    target: Any = broken
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        (without(spec_card(), "summary"), "'summary' is a required property"),
        (without(spec_card(), "indicator"), "'indicator' is a required property"),
        (without(spec_card(), "source"), "'source' is a required property"),
        (without(spec_card(), "source", "label"), "'label' is a required property"),
        (without(spec_card(), "selectionBehavior"), "'selectionBehavior' is a dependency of 'suggestions'"),
        (changed(("indicator",), "urgent"), "'urgent' is not one of"),
        (changed(("indicator",), "Info"), "'Info' is not one of"),
        (changed(("summary",), "x" * 140), "is too long"),
        (changed(("summary",), ""), "should be non-empty"),
        (changed(("detail",), ""), "should be non-empty"),
        (changed(("detail",), None), "None is not of type 'string'"),
        (changed(("links",), []), "should be non-empty"),
        (changed(("uuid",), "card-1"), "does not match"),
        (changed(("selectionBehavior",), "all"), "'all' is not one of"),
        (changed(("autoLaunchable",), False), "Additional properties are not allowed ('autoLaunchable'"),
        (changed(("links", 0, "autoLaunchable"), False), "Additional properties are not allowed ('autoLaunchable'"),
        (changed(("source", "publisher"), "ACME"), "Additional properties are not allowed ('publisher'"),
        (without(spec_card(), "links", 0, "type"), "'type' is a required property"),
        (without(spec_card(), "links", 0, "label"), "'label' is a required property"),
        (changed(("links", 0, "type"), "relative"), "'relative' is not one of"),
        (changed(("links", 0, "url"), "/trials/x"), "does not match"),
        (changed(("links", 0, "url"), "javascript:alert(1)"), "does not match"),
        (changed(("links", 0, "appContext"), "{}"), "should not be valid"),
        (changed(("links", 0, "autolaunchable"), "false"), "'false' is not of type 'boolean'"),
        (without(spec_card(), "overrideReasons", 0, "display"), "'display' is a required property"),
        (without(spec_card(), "suggestions", 0, "label"), "'label' is a required property"),
        (without(spec_card(), "suggestions", 0, "actions", 0, "description"), "'description' is a required property"),
        (without(spec_card(), "suggestions", 0, "actions", 0, "resource"), "'resource' is a required property"),
        (changed(("suggestions", 0, "actions", 0, "type"), "insert"), "'insert' is not one of"),
        (changed(("suggestions", 0, "actions", 0, "resource"), {"status": "draft"}), "'resourceType' is a required"),
        (changed(("extension",), {}), "should be non-empty"),
        (changed(("extension",), "x"), "'x' is not of type 'object'"),
    ],
)
def test_the_schema_refuses_a_broken_card(broken: dict[str, Any], why: str) -> None:
    errors = card_errors(broken)
    assert errors and any(why in e for e in errors), errors


def test_at_most_one_suggestion_may_be_recommended_unless_any_may_be_chosen() -> None:
    card = spec_card()
    second = {**card["suggestions"][0], "uuid": str(uuid.uuid4()), "label": "Order a chest X-ray"}
    card["suggestions"].append(second)
    assert card_errors(card)
    card["selectionBehavior"] = "any"
    assert card_errors(card) == []


def test_the_schema_refuses_fields_beside_cards_and_system_actions() -> None:
    assert spec_errors("hook-response", {"cards": [], "warnings": ["x"]})
    assert spec_errors("hook-response", {"systemActions": []})


# ---------------------------------------------------------------------------------------------------
# Discovery, request, feedback.


def test_discovery_needs_hook_description_and_id_and_nothing_else() -> None:
    service = {"hook": "patient-view", "description": "Greets", "id": "greeter", "title": "Greeter"}
    assert spec_errors("discovery-response", {"services": [service]}) == []
    assert spec_errors("discovery-response", {"services": []}) == []
    assert spec_errors("discovery-response", {"services": [{**service, "extension": {"com.example.x": 1}}]}) == []
    for field in ("hook", "description", "id"):
        assert spec_errors("discovery-response", {"services": [without(service, field)]})
    assert spec_errors("discovery-response", {"services": [{**service, "version": "1"}]})
    assert spec_errors("discovery-response", {"services": [{**service, "prefetch": {}}]})
    assert spec_errors("discovery-response", {"services": [{**service, "id": "a/b"}]})


def test_the_demo_request_is_a_spec_request(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    assert_spec("hook-request", full_request(client))
    assert_spec("hook-request", with_server(full_request(client)))


def test_a_request_with_an_access_token_needs_a_fhir_server(tmp_path: Path) -> None:
    body = with_server(full_request(make_client(tmp_path)))
    del body["fhirServer"]
    assert any("'fhirServer' is a dependency" in e for e in spec_errors("hook-request", body))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hookInstance", "not-a-uuid"),
        ("context", {}),
        ("prefetch", {"patient": "Patient/1"}),
        (
            "fhirAuthorization",
            {"access_token": "t", "token_type": "MAC", "expires_in": 3, "scope": "s", "subject": "x"},
        ),
        ("fhirServer", "ftp://ehr.example.org/fhir"),
        ("hookInstanceId", str(uuid.uuid4())),
    ],
)
def test_the_schema_refuses_a_broken_request(tmp_path: Path, field: str, value: Any) -> None:
    body = {**with_server(full_request(make_client(tmp_path))), field: value}
    assert spec_errors("hook-request", body)


def feedback(**item: Any) -> dict[str, Any]:
    return {"feedback": [{"card": CARD_UUID, "outcomeTimestamp": "2021-12-11T10:05:31Z", **item}]}


def test_the_specifications_feedback_examples_pass() -> None:
    accepted = feedback(outcome="accepted", acceptedSuggestions=[{"id": SUGGESTION_UUID}])
    assert spec_errors("feedback-request", accepted) == []
    assert spec_errors("feedback-request", feedback(outcome="overridden")) == []
    reason = {"reason": {"code": "d7ecf885", "system": "https://example.com/override"}, "userComment": "A comment."}
    assert spec_errors("feedback-request", feedback(outcome="overridden", overrideReason=reason)) == []


@pytest.mark.parametrize(
    "broken",
    [
        feedback(outcome="accepted"),  # acceptedSuggestions required for accepted
        feedback(outcome="ignored"),
        feedback(outcome="overridden", overrideReason={}),
        feedback(outcome="overridden", overrideReason={"reason": {"code": "x"}}),
        feedback(outcome="overridden", outcomeTimestamp="2021-12-11T10:05:31+02:00"),  # UTC
        feedback(outcome="overridden", outcomeTimestamp="2021-12-11"),
        feedback(outcome="accepted", acceptedSuggestions=[]),
        feedback(outcome="overridden", card="card-1"),
        {"feedback": []},
    ],
)
def test_the_schema_refuses_broken_feedback(broken: dict[str, Any]) -> None:
    assert spec_errors("feedback-request", broken)


# ---------------------------------------------------------------------------------------------------
# The API tests' client checks every answer.


def test_the_spec_client_refuses_an_answer_the_schema_refuses() -> None:
    app = FastAPI()

    @app.post("/cds-services/{service_id}")
    async def answer(service_id: str) -> dict[str, Any]:
        return {"cards": [{"summary": "No source", "indicator": "info"}]}

    with pytest.raises(AssertionError, match="'source' is a required property"):
        spec_client(app).post(SERVICE, json={})


def test_this_services_answers_are_spec_answers(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    assert_spec("discovery-response", client.get("/cds-services").json())
    cards = client.post(SERVICE, json=full_request(client)).json()
    assert cards["cards"]
    assert_spec("hook-response", cards)
