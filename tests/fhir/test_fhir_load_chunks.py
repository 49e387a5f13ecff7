"""cds.fhir.load.load_files on large and Synthea-shaped Bundles: bounded transactions in dependency order,
conditional references resolved (or placeholders), Synthea's shared files first, server failures named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fhir_builders import condition, patient, vital_sign
from typer.testing import CliRunner

from cds.cli import app
from cds.fhir.load import PLACEHOLDER_TAG, FhirLoadError, dependency_order, load_files, to_transaction

BASE = "https://fhir.example.org/r4"
NPI = "http://hl7.org/fhir/sid/us-npi"
PRACTITIONER_REF = f"Practitioner?identifier={NPI}|9999912345"


def synthea_bundle(pid: str, observations: int, *, practitioner: str | None = None) -> dict[str, Any]:
    """A transaction Bundle shaped like Synthea's: urn:uuid fullUrls, POST requests, an Encounter the
    Observations refer to (placed after them, as nothing guarantees the order), a conditional reference."""
    encounter: dict[str, Any] = {
        "resourceType": "Encounter", "id": f"{pid}-enc", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"urn:uuid:{pid}"},
    }
    if practitioner:
        encounter["participant"] = [{"individual": {"reference": practitioner}}]
    resources: list[dict[str, Any]] = [patient(pid=pid)]
    for n in range(observations):
        obs = vital_sign("8867-4", "Heart rate", 60 + n, "/min", "2026-10-01", rid=f"{pid}-obs-{n}", pid=pid)
        obs["subject"] = {"reference": f"urn:uuid:{pid}"}
        obs["encounter"] = {"reference": f"urn:uuid:{pid}-enc"}
        resources.append(obs)
    resources.append(encounter)
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }


def write(tmp_path: Path, name: str, bundle: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(bundle))
    return path


def answered(request: httpx.Request) -> httpx.Response:
    sent = json.loads(request.content)
    return httpx.Response(
        200,
        json={"resourceType": "Bundle", "type": "transaction-response",
              "entry": [{"response": {"status": "201 Created"}} for _ in sent["entry"]]},
    )


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def transactions(route: respx.Route) -> list[list[str]]:
    """The ``Type/id`` of every entry of each transaction sent, in order."""
    return [[e["request"]["url"] for e in json.loads(call.request.content)["entry"]] for call in route.calls]


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_a_large_bundle_is_sent_in_transactions_of_at_most_chunk_size(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    post = respx_mock.post(BASE).mock(side_effect=answered)
    path = write(tmp_path, "big.json", synthea_bundle("p1", 23))
    (result,) = load_files(BASE, [path], replace=True, chunk_size=10)
    sent = transactions(post)
    assert [len(t) for t in sent] == [10, 10, 5]
    everything = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in synthea_bundle("p1", 23)["entry"]]
    assert sorted(key for t in sent for key in t) == sorted(everything)
    assert (result.resources, result.chunks, result.created) == (25, 3, 25)


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_a_transaction_is_also_bounded_in_bytes(respx_mock: respx.MockRouter, tmp_path: Path) -> None:
    post = respx_mock.post(BASE).mock(side_effect=answered)
    path = write(tmp_path, "big.json", synthea_bundle("p1", 9))
    load_files(BASE, [path], replace=True, chunk_size=500, chunk_bytes=2_000)
    assert len(post.calls) > 1
    assert all(len(call.request.content) < 4_000 for call in post.calls)


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_what_a_resource_refers_to_is_sent_before_it(respx_mock: respx.MockRouter, tmp_path: Path) -> None:
    post = respx_mock.post(BASE).mock(side_effect=answered)
    path = write(tmp_path, "big.json", synthea_bundle("p1", 6))
    load_files(BASE, [path], replace=True, chunk_size=3)
    order = [key for t in transactions(post) for key in t]
    assert order.index("Patient/p1") < order.index("Encounter/p1-enc") < order.index("Observation/p1-obs-0")
    first = json.loads(post.calls[0].request.content)["entry"]
    assert [e["request"] for e in first][:2] == [
        {"method": "PUT", "url": "Patient/p1"},
        {"method": "PUT", "url": "Encounter/p1-enc"},
    ]
    obs = next(e["resource"] for e in first if e["resource"]["resourceType"] == "Observation")
    assert obs["subject"] == {"reference": "Patient/p1"} and obs["encounter"] == {"reference": "Encounter/p1-enc"}


def test_dependency_order_keeps_independent_entries_in_place_and_survives_a_cycle() -> None:
    a = {"resourceType": "Condition", "id": "a", "evidence": [{"detail": [{"reference": "Observation/b"}]}]}
    b = {"resourceType": "Observation", "id": "b", "hasMember": [{"reference": "Condition/a"}]}
    c = {"resourceType": "Patient", "id": "c"}
    entries = to_transaction({"resourceType": "Bundle", "type": "collection",
                              "entry": [{"resource": r} for r in (c, a, b)]})["entry"]
    assert [e["request"]["url"] for e in dependency_order(entries)] == ["Patient/c", "Observation/b", "Condition/a"]


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_synthea_hospital_and_practitioner_files_are_loaded_first(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    post = respx_mock.post(BASE).mock(side_effect=answered)
    npi = {"system": NPI, "value": "9999912345"}
    practitioner = {"resourceType": "Practitioner", "id": "pr-1", "identifier": [npi]}
    shared = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "urn:uuid:pr-1", "resource": practitioner,
         "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": f"identifier={NPI}|9999912345"}}]}
    patient_file = write(tmp_path, "Ann1_Lee2_p1.json", synthea_bundle("p1", 1))
    shared_file = write(tmp_path, "practitionerInformation1730000000.json", shared)
    results = load_files(BASE, [patient_file, shared_file], replace=True)
    assert [r.source for r in results] == ["practitionerInformation1730000000.json", "Ann1_Lee2_p1.json"]
    assert transactions(post)[0] == ["Practitioner/pr-1"]


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_a_conditional_reference_is_resolved_by_one_search_and_rewritten(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    post = respx_mock.post(BASE).mock(side_effect=answered)
    search = respx_mock.get(f"{BASE}/Practitioner").respond(
        200, json=searchset({"resourceType": "Practitioner", "id": "pr-1"})
    )
    files = [write(tmp_path, f"p{n}.json", synthea_bundle(f"p{n}", 1, practitioner=PRACTITIONER_REF)) for n in (1, 2)]
    load_files(BASE, files, replace=True)
    assert len(search.calls) == 1  # once per load, not per file
    assert search.calls[0].request.url.params["identifier"] == f"{NPI}|9999912345"
    assert b"%7C9999912345" in search.calls[0].request.url.raw_path  # a raw "|" is refused by Tomcat (HAPI)
    for call in post.calls:
        encounter = next(e["resource"] for e in json.loads(call.request.content)["entry"]
                         if e["resource"]["resourceType"] == "Encounter")
        assert encounter["participant"] == [{"individual": {"reference": "Practitioner/pr-1"}}]


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_a_conditional_reference_nothing_matches_stops_the_load_and_says_what_to_do(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    post = respx_mock.post(BASE).mock(side_effect=answered)
    respx_mock.get(f"{BASE}/Practitioner").respond(200, json=searchset())
    path = write(tmp_path, "p1.json", synthea_bundle("p1", 1, practitioner=PRACTITIONER_REF))
    with pytest.raises(FhirLoadError) as refused:
        load_files(BASE, [path], replace=True)
    message = str(refused.value)
    assert "1 conditional reference(s) to Practitioner match nothing" in message
    assert "practitionerInformation" in message and "--placeholders" in message
    assert not post.called


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_placeholders_are_written_for_conditional_references_when_asked(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    post = respx_mock.post(BASE).mock(side_effect=answered)
    respx_mock.get(f"{BASE}/Practitioner").respond(200, json=searchset())
    path = write(tmp_path, "p1.json", synthea_bundle("p1", 1, practitioner=PRACTITIONER_REF))
    (result,) = load_files(BASE, [path], replace=True, placeholders=True)
    entries = json.loads(post.calls[0].request.content)["entry"]
    placeholder = entries[0]["resource"]
    assert placeholder["resourceType"] == "Practitioner"
    assert placeholder["identifier"] == [{"system": NPI, "value": "9999912345"}]
    assert placeholder["meta"]["tag"] == [PLACEHOLDER_TAG]
    encounter = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Encounter")
    assert encounter["participant"][0]["individual"]["reference"] == f"Practitioner/{placeholder['id']}"
    assert result.placeholders == 1


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_a_server_failure_names_the_status_the_outcome_and_how_far_the_file_got(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    failure = httpx.Response(
        500, json={"resourceType": "OperationOutcome",
                   "issue": [{"severity": "error", "code": "exception", "diagnostics": "Java heap space"}]})
    respx_mock.post(BASE).mock(side_effect=[answered, failure])
    path = write(tmp_path, "big.json", synthea_bundle("p1", 8))
    with pytest.raises(FhirLoadError) as failed:
        load_files(BASE, [path], replace=True, chunk_size=5)
    assert str(failed.value) == (
        "big.json: transaction 2 of 2 (5 of 10 resources written before it): "
        "HTTP 500 (server failure): Java heap space"
    )


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_a_timeout_is_reported_as_a_failing_server_not_a_bare_read_timeout(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    respx_mock.post(BASE).mock(side_effect=httpx.ReadTimeout("timed out"))
    path = write(tmp_path, "big.json", synthea_bundle("p1", 2))
    with pytest.raises(FhirLoadError) as failed:
        load_files(BASE, [path], replace=True)
    message = str(failed.value)
    assert message.startswith("big.json: transaction 1 of 1 (0 of 4 resources written before it): ")
    assert "did not answer in time (ReadTimeout)" in message and "out of memory?" in message


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_a_refused_connection_is_reported_as_an_unavailable_server(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    respx_mock.post(BASE).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(FhirLoadError, match=r"the FHIR server is unavailable \(ConnectError\)"):
        load_files(BASE, [write(tmp_path, "p.json", synthea_bundle("p1", 1))], replace=True)


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_progress_is_reported_after_each_transaction(respx_mock: respx.MockRouter, tmp_path: Path) -> None:
    respx_mock.post(BASE).mock(side_effect=answered)
    seen: list[tuple[str, int, int]] = []
    load_files(BASE, [write(tmp_path, "big.json", synthea_bundle("p1", 10))], replace=True, chunk_size=4,
               progress=lambda *step: seen.append(step))
    assert seen == [("big.json", 4, 12), ("big.json", 8, 12), ("big.json", 12, 12)]


@respx.mock(assert_all_mocked=True, assert_all_called=False)
def test_the_load_command_shows_progress_per_file_and_a_failure_with_exit_1(
    respx_mock: respx.MockRouter, tmp_path: Path
) -> None:
    respx_mock.post(BASE).mock(side_effect=[answered, answered, httpx.Response(503, text="Service Unavailable")])
    big = write(tmp_path, "big.json", synthea_bundle("p1", 6))
    other = write(tmp_path, "other.json", {"resourceType": "Bundle", "type": "collection",
                                           "entry": [{"resource": patient(pid="p2")},
                                                     {"resource": condition("C11.9", "NPC", rid="c2", pid="p2")}]})
    result = CliRunner().invoke(
        app, ["load", "--fhir", BASE, "--replace", "--chunk-size", "4", str(big), str(other)]
    )
    assert result.exit_code == 1
    assert "big.json: 4 of 8 resources written" in result.stderr
    assert "big.json: 8 resources (8 created, 0 unchanged or updated), Patient/p1" in result.stdout
    assert "other.json: transaction 1 of 1 (0 of 2 resources written before it): HTTP 503 (server failure)" in (
        result.stderr
    )
