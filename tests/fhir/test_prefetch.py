"""cds/fhir/prefetch.py: prefetch tokens, present / null / absent / OperationOutcome keys, merge, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from cds.fhir.client import FhirServerNotAllowed
from cds.fhir.prefetch import (
    DataUnavailable,
    FhirAccess,
    PrefetchError,
    TokenUnavailable,
    gather,
    merge_resources,
    render_template,
)
from cds.settings import Settings

BASE = "https://ehr.example.org/fhir/R4"
TOKEN = "opaque-access-token-5f1c9e"
PATIENT_ID = "1288992"
CONTEXT: dict[str, Any] = {
    "userId": "Practitioner/dr-alvarez",
    "patientId": PATIENT_ID,
    "encounterId": "89284",
}

TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "hba1c": "Observation?patient={{context.patientId}}&code=http://loinc.org|4548-4",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
}


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"fhir_allowlist": [BASE], "time_budget_s": 2.0}
    values.update(overrides)
    return Settings(**values)


def patient(last_updated: str = "2024-05-02T10:15:00Z") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "meta": {"lastUpdated": last_updated},
        "name": [{"family": "Okafor", "given": ["Chidi"]}],
        "gender": "male",
        "birthDate": "1958-11-02",
    }


def hba1c(obs_id: str, value: float = 8.1, last_updated: str = "2024-04-18T09:00:00Z") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "meta": {"lastUpdated": last_updated},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": "2024-04-18",
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }


def diabetes(cond_id: str = "c-t2dm") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cond_id,
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {
            "coding": [
                {
                    "system": "http://snomed.info/sct",
                    "code": "44054006",
                    "display": "Type 2 diabetes mellitus",
                }
            ]
        },
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "onsetDateTime": "2015-06-01",
    }


def operation_outcome() -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout", "diagnostics": "Prefetch of Observation timed out"}],
    }


def searchset(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": f"{BASE}/{r['resourceType']}/{r.get('id')}", "resource": r} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def fhir_json(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"Content-Type": "application/fhir+json"})


@pytest.fixture
def fhir() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield mock


async def run(
    prefetch: dict[str, Any] | None,
    *,
    templates: dict[str, str] | None = None,
    fhir_server: str | None = BASE,
    token: str | None = TOKEN,
    settings: Settings | None = None,
    user_id: str | None = "Practitioner/dr-alvarez",
) -> Any:
    return await gather(
        templates or TEMPLATES,
        context=CONTEXT,
        user_id=user_id,
        prefetch=prefetch,
        fhir=FhirAccess(base_url=fhir_server, access_token=token),
        settings=settings or make_settings(),
    )


# --------------------------------------------------------------------------------------------------
# render_template
# --------------------------------------------------------------------------------------------------


def test_render_replaces_context_tokens() -> None:
    assert render_template(TEMPLATES["patient"], CONTEXT, None) == f"Patient/{PATIENT_ID}"
    assert (
        render_template("Encounter?_id={{context.encounterId}}&patient={{context.patientId}}", CONTEXT, None)
        == f"Encounter?_id=89284&patient={PATIENT_ID}"
    )


@pytest.mark.parametrize(
    ("token", "user_id", "expected"),
    [
        ("userPractitionerId", "Practitioner/dr-alvarez", "dr-alvarez"),
        ("userPractitionerRoleId", "PractitionerRole/role-77", "role-77"),
        ("userPatientId", "Patient/1288992", "1288992"),
        ("userRelatedPersonId", "RelatedPerson/rp-3", "rp-3"),
    ],
)
def test_render_replaces_each_user_token(token: str, user_id: str, expected: str) -> None:
    rendered = render_template(f"{{{{{token}}}}}-x?_id={{{{{token}}}}}", {}, user_id)
    assert rendered == f"{expected}-x?_id={expected}"


def test_render_user_token_for_another_type_of_user_is_unavailable() -> None:
    with pytest.raises(TokenUnavailable) as caught:
        render_template("Patient/{{userPatientId}}", CONTEXT, "Practitioner/dr-alvarez")
    assert caught.value.token == "userPatientId"


def test_render_user_token_falls_back_to_context_user_id() -> None:
    assert render_template("PractitionerRole?practitioner={{userPractitionerId}}", CONTEXT, None) == (
        "PractitionerRole?practitioner=dr-alvarez"
    )


def test_render_context_user_id_token_keeps_the_reference_as_a_path() -> None:
    assert render_template("{{context.userId}}", CONTEXT, None) == "Practitioner/dr-alvarez"


def test_render_reads_nested_context_fields_with_dots() -> None:
    context = {"patientId": "1", "selection": {"order": {"id": "med-req-5"}}}
    assert render_template("MedicationRequest?_id={{context.selection.order.id}}", context, None) == (
        "MedicationRequest?_id=med-req-5"
    )


def test_render_percent_encodes_query_values() -> None:
    context = {"patientId": "1", "code": "http://loinc.org|4548-4", "note": "a b&c=d#e"}
    assert render_template("Observation?code={{context.code}}&x={{context.note}}", context, None) == (
        "Observation?code=http%3A%2F%2Floinc.org%7C4548-4&x=a%20b%26c%3Dd%23e"
    )


def test_render_primitive_values_numbers_and_booleans() -> None:
    context = {"count": 5, "flag": True}
    assert render_template("Observation?_count={{context.count}}&f={{context.flag}}", context, None) == (
        "Observation?_count=5&f=true"
    )


@pytest.mark.parametrize("value", ["../../admin", "1?x=2", "a/b/c", "..", "a b"])
def test_render_rejects_path_values_that_are_not_ids(value: str) -> None:
    with pytest.raises(PrefetchError) as caught:
        render_template("Patient/{{context.patientId}}", {"patientId": value}, None)
    assert not isinstance(caught.value, TokenUnavailable)
    assert value not in str(caught.value)


@pytest.mark.parametrize("template", ["Patient/{{patientId}}", "Patient/{{Patient.id}}", "Observation?x={{user}}"])
def test_render_unknown_token_is_a_prefetch_error(template: str) -> None:
    with pytest.raises(PrefetchError) as caught:
        render_template(template, CONTEXT, "Practitioner/1")
    assert not isinstance(caught.value, TokenUnavailable)


@pytest.mark.parametrize("template", ["Patient/{{context.patientId", "Patient/context.patientId}}"])
def test_render_unbalanced_braces_are_a_prefetch_error(template: str) -> None:
    with pytest.raises(PrefetchError):
        render_template(template, CONTEXT, None)


@pytest.mark.parametrize(
    "context",
    [{}, {"patientId": None}, {"patientId": ""}, {"patientId": {"id": "1"}}, {"patientId": ["1"]}],
)
def test_render_missing_or_non_primitive_context_value_is_unavailable(context: dict[str, Any]) -> None:
    with pytest.raises(TokenUnavailable):
        render_template("Patient/{{context.patientId}}", context, None)


# --------------------------------------------------------------------------------------------------
# Prefetch present / null / absent / OperationOutcome
# --------------------------------------------------------------------------------------------------


async def test_prefetched_keys_are_used_without_any_fetch(fhir: respx.MockRouter) -> None:
    data = await run(
        {"patient": patient(), "hba1c": searchset([hba1c("o1")]), "conditions": searchset([diabetes()])},
    )
    assert len(fhir.calls) == 0
    assert data.http_requests == 0
    assert data.key_sources == {"patient": "prefetch", "hba1c": "prefetch", "conditions": "prefetch"}
    assert [r["resourceType"] for r in data.resources] == ["Patient", "Observation", "Condition"]


async def test_null_prefetch_means_no_data_and_nothing_is_fetched(fhir: respx.MockRouter) -> None:
    data = await run({"patient": patient(), "hba1c": None, "conditions": None})
    assert len(fhir.calls) == 0
    assert data.key_sources["hba1c"] == "prefetch-null"
    assert data.by_key["hba1c"] == []
    assert [r["resourceType"] for r in data.resources] == ["Patient"]


async def test_absent_key_is_fetched_with_the_access_token(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Condition").mock(return_value=fhir_json(searchset([diabetes()])))
    data = await run({"patient": patient(), "hba1c": None})
    assert data.key_sources["conditions"] == "fetched"
    assert data.http_requests == 1
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.url.params["patient"] == PATIENT_ID
    assert request.url.params["clinical-status"] == "active"
    assert diabetes() in data.resources


async def test_absent_prefetch_fetches_every_key(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Patient/{PATIENT_ID}").mock(return_value=fhir_json(patient()))
    obs = fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(searchset([hba1c("o1")])))
    fhir.get(f"{BASE}/Condition").mock(return_value=fhir_json(searchset([])))
    data = await run(None)
    assert data.key_sources == {"patient": "fetched", "hba1c": "fetched", "conditions": "fetched"}
    assert data.http_requests == 3
    assert obs.calls.last.request.url.params["code"] == "http://loinc.org|4548-4"


async def test_operation_outcome_prefetch_counts_as_absent_and_is_fetched(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(searchset([hba1c("o1")])))
    data = await run({"patient": patient(), "hba1c": operation_outcome(), "conditions": None})
    assert route.called
    assert data.key_sources["hba1c"] == "fetched"
    assert all(r["resourceType"] != "OperationOutcome" for r in data.resources)
    assert any("OperationOutcome" in p for p in data.problems)


async def test_bundle_of_only_operation_outcomes_counts_as_absent(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(searchset([hba1c("o1")])))
    data = await run({"patient": patient(), "hba1c": searchset([operation_outcome()]), "conditions": None})
    assert route.called
    assert data.key_sources["hba1c"] == "fetched"


async def test_operation_outcome_entries_beside_data_are_dropped_not_fetched(fhir: respx.MockRouter) -> None:
    data = await run({"patient": patient(), "hba1c": searchset([hba1c("o1"), operation_outcome()]), "conditions": None})
    assert len(fhir.calls) == 0
    assert data.key_sources["hba1c"] == "prefetch"
    assert [r["resourceType"] for r in data.by_key["hba1c"]] == ["Observation"]


async def test_empty_prefetched_bundle_is_data_not_absence(fhir: respx.MockRouter) -> None:
    data = await run({"patient": patient(), "hba1c": searchset([]), "conditions": searchset([])})
    assert len(fhir.calls) == 0
    assert data.key_sources["hba1c"] == "prefetch"


async def test_prefetch_keys_not_in_the_templates_are_ignored(fhir: respx.MockRouter) -> None:
    data = await run(
        {"patient": patient(), "hba1c": None, "conditions": None, "someone-else": {"resourceType": "Basic"}}
    )
    assert "someone-else" not in data.key_sources
    assert [r["resourceType"] for r in data.resources] == ["Patient"]


async def test_prefetched_bundle_with_a_next_link_and_no_fhir_server_is_marked_partial(
    fhir: respx.MockRouter,
) -> None:
    bundle = searchset([hba1c("o1")], next_url=f"{BASE}?_getpages=abc&_getpagesoffset=1")
    data = await run({"patient": patient(), "hba1c": bundle, "conditions": None}, fhir_server=None)
    assert len(fhir.calls) == 0
    assert data.key_sources["hba1c"] == "prefetch-partial"
    assert data.problems == [
        "hba1c: the prefetched Bundle has a next link with no fhirServer to read the other pages from; "
        "only its first page was used"
    ]


# Paged prefetch: the reference sandbox (like many EHRs) sends 20 resources a page, the first page with its
# next link; the other pages are on the fhirServer.


def sandbox_pages(total: int, per_page: int = 20) -> tuple[dict[str, Any], Any]:
    """The first page of an Observation search as a paging CDS client prefetches it, and a respx side
    effect serving the other pages (HAPI's _getpages links), as a FHIR server does."""
    observations = [hba1c(f"o{i}") for i in range(total)]

    def page(offset: int) -> dict[str, Any]:
        rest = offset + per_page
        next_url = f"{BASE}?_getpages=sandbox-1&_getpagesoffset={rest}&_count={per_page}" if rest < total else None
        return searchset(observations[offset:rest], next_url)

    def serve(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return fhir_json(operation_outcome(), 401)
        return fhir_json(page(int(request.url.params["_getpagesoffset"])))

    return page(0), serve


async def test_prefetched_first_page_is_completed_from_the_fhir_server(fhir: respx.MockRouter) -> None:
    first, serve = sandbox_pages(45)
    route = fhir.get(url__startswith=BASE).mock(side_effect=serve)
    data = await run({"patient": patient(), "hba1c": first, "conditions": None})
    assert data.key_sources["hba1c"] == "prefetch-completed"
    assert [r["id"] for r in data.by_key["hba1c"]] == [f"o{i}" for i in range(45)]
    assert data.http_requests == route.call_count == 2
    assert [c.request.url.params["_getpagesoffset"] for c in route.calls] == ["20", "40"]
    assert data.problems == []


async def test_completing_a_prefetched_bundle_sends_the_access_token(fhir: respx.MockRouter) -> None:
    first, serve = sandbox_pages(25)
    route = fhir.get(url__startswith=BASE).mock(side_effect=serve)
    await run({"patient": patient(), "hba1c": first, "conditions": None})
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


async def test_completing_a_prefetched_bundle_counts_its_first_page_towards_the_page_limit(
    fhir: respx.MockRouter,
) -> None:
    first, serve = sandbox_pages(100)
    route = fhir.get(url__startswith=BASE).mock(side_effect=serve)
    data = await run({"patient": patient(), "hba1c": first, "conditions": None}, settings=make_settings(max_pages=3))
    assert route.call_count == 2
    assert data.key_sources["hba1c"] == "prefetch-partial"
    assert len(data.by_key["hba1c"]) == 60
    assert data.problems == ["hba1c: page limit reached after 3 pages (the first page prefetched)"]


async def test_completing_a_prefetched_bundle_counts_its_first_page_towards_the_resource_limit(
    fhir: respx.MockRouter,
) -> None:
    first, serve = sandbox_pages(45)
    fhir.get(url__startswith=BASE).mock(side_effect=serve)
    settings = make_settings(max_resources_per_key=30)
    data = await run({"patient": patient(), "hba1c": first, "conditions": None}, settings=settings)
    assert data.key_sources["hba1c"] == "prefetch-partial"
    assert len(data.by_key["hba1c"]) == 20
    assert "more than 30 resources" in data.problems[0]


async def test_failing_to_complete_a_prefetched_bundle_keeps_its_first_page(fhir: respx.MockRouter) -> None:
    first, serve = sandbox_pages(45)
    fhir.get(url__startswith=BASE).mock(side_effect=serve)
    data = await run({"patient": patient(), "hba1c": first, "conditions": None}, token="expired-token")
    assert data.key_sources["hba1c"] == "prefetch-partial"
    assert len(data.by_key["hba1c"]) == 20
    assert data.problems == [
        "hba1c: the prefetched Bundle has a next link; reading the other pages from fhirServer failed "
        "(the FHIR server refused access (HTTP 401)); only its first page was used"
    ]


async def test_completing_a_prefetched_bundle_stays_within_the_time_budget(fhir: respx.MockRouter) -> None:
    first, _ = sandbox_pages(45)

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return fhir_json(searchset([]))

    fhir.get(url__startswith=BASE).mock(side_effect=slow)
    started = time.monotonic()
    data = await run(
        {"patient": patient(), "hba1c": first, "conditions": None}, settings=make_settings(time_budget_s=0.3)
    )
    assert time.monotonic() - started < 1.3
    assert data.key_sources["hba1c"] == "prefetch-partial"
    assert "the time budget of 0.3 s was exceeded" in data.problems[0]


async def test_next_link_of_a_prefetched_bundle_to_another_server_is_not_followed(fhir: respx.MockRouter) -> None:
    bundle = searchset([hba1c("o1")], next_url="https://elsewhere.example.net/fhir?_getpages=abc")
    data = await run({"patient": patient(), "hba1c": bundle, "conditions": None})
    assert len(fhir.calls) == 0
    assert data.key_sources["hba1c"] == "prefetch-partial"
    assert data.problems == [
        "hba1c: paging stopped: the next link points to another server (the first page prefetched)"
    ]


async def test_completed_pages_holding_another_patient_are_a_prefetch_error(fhir: respx.MockRouter) -> None:
    someone_else = {**patient(), "id": "someone-else"}
    fhir.get(url__startswith=BASE).mock(return_value=fhir_json(searchset([someone_else])))
    bundle = searchset([hba1c("o1")], next_url=f"{BASE}?_getpages=abc&_getpagesoffset=1")
    with pytest.raises(PrefetchError, match="Patient"):
        await run({"patient": patient(), "hba1c": bundle, "conditions": None})


async def test_prefetched_bundle_of_a_template_with_its_own_count_is_not_completed(fhir: respx.MockRouter) -> None:
    templates = {**TEMPLATES, "hba1c": TEMPLATES["hba1c"] + "&_count=1&_sort=-date"}
    bundle = searchset([hba1c("o1")], next_url=f"{BASE}?_getpages=abc&_getpagesoffset=1")
    data = await run({"patient": patient(), "hba1c": bundle, "conditions": None}, templates=templates)
    assert len(fhir.calls) == 0
    assert data.key_sources["hba1c"] == "prefetch"


async def test_template_with_a_token_for_another_user_type_is_not_applicable(fhir: respx.MockRouter) -> None:
    templates = {**TEMPLATES, "me": "Patient/{{userPatientId}}"}
    data = await run({"patient": patient(), "hba1c": None, "conditions": None}, templates=templates)
    assert len(fhir.calls) == 0
    assert data.key_sources["me"] == "not-applicable"
    assert any(p.startswith("me: ") for p in data.problems)


# --------------------------------------------------------------------------------------------------
# Merge
# --------------------------------------------------------------------------------------------------


async def test_resources_under_several_keys_are_deduplicated(fhir: respx.MockRouter) -> None:
    templates = {
        **TEMPLATES,
        "labs": "Observation?patient={{context.patientId}}&category=laboratory",
    }
    data = await run(
        {
            "patient": patient(),
            "hba1c": searchset([hba1c("o1"), hba1c("o2")]),
            "conditions": searchset([diabetes()]),
            "labs": searchset([hba1c("o2"), hba1c("o3"), patient()]),
        },
        templates=templates,
    )
    ids = [(r["resourceType"], r["id"]) for r in data.resources]
    assert ids == [
        ("Patient", PATIENT_ID),
        ("Observation", "o1"),
        ("Observation", "o2"),
        ("Condition", "c-t2dm"),
        ("Observation", "o3"),
    ]


def test_merge_keeps_the_copy_with_the_latest_last_updated() -> None:
    old = hba1c("o1", value=7.0, last_updated="2024-01-01T00:00:00Z")
    new = hba1c("o1", value=7.4, last_updated="2024-03-01T12:00:00+01:00")
    assert merge_resources([[old], [new]]) == [new]
    assert merge_resources([[new], [old]]) == [new]


def test_merge_keeps_the_first_copy_without_last_updated() -> None:
    first, second = hba1c("o1", value=7.0), hba1c("o1", value=7.4)
    del first["meta"], second["meta"]
    assert merge_resources([[first], [second]]) == [first]


def test_merge_keeps_resources_without_id_and_drops_operation_outcomes() -> None:
    anonymous = hba1c("x")
    del anonymous["id"]
    merged = merge_resources([[anonymous, operation_outcome()], [dict(anonymous)]])
    assert merged == [anonymous, anonymous]


async def test_fetched_pages_and_prefetched_data_are_merged(fhir: respx.MockRouter) -> None:
    page2 = f"{BASE}?_getpages=77f&_getpagesoffset=2&_count=2&_bundletype=searchset"
    fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(searchset([hba1c("o1"), hba1c("o2")], page2)))
    fhir.get(BASE, params={"_getpages": "77f"}).mock(return_value=fhir_json(searchset([hba1c("o2"), hba1c("o3")])))
    data = await run({"patient": patient(), "conditions": searchset([diabetes()])}, settings=make_settings(page_size=2))
    assert data.key_sources["hba1c"] == "fetched"
    assert data.http_requests == 2
    assert [r["id"] for r in data.resources if r["resourceType"] == "Observation"] == ["o1", "o2", "o3"]


# --------------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------------


async def test_absent_key_without_fhir_server_is_data_unavailable(fhir: respx.MockRouter) -> None:
    with pytest.raises(DataUnavailable) as caught:
        await run({"patient": patient()}, fhir_server=None)
    assert caught.value.issues == [
        "hba1c: not prefetched, and the request has no fhirServer to fetch it from",
        "conditions: not prefetched, and the request has no fhirServer to fetch it from",
    ]


async def test_401_while_fetching_is_data_unavailable_without_the_token(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation").mock(return_value=httpx.Response(401))
    with pytest.raises(DataUnavailable) as caught:
        await run({"patient": patient(), "conditions": None})
    assert caught.value.issues == ["hba1c: the FHIR server refused access (HTTP 401)"]
    assert TOKEN not in str(caught.value) and PATIENT_ID not in str(caught.value)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_after_retry_are_data_unavailable(fhir: respx.MockRouter, status: int) -> None:
    route = fhir.get(f"{BASE}/Observation").mock(return_value=httpx.Response(status))
    with pytest.raises(DataUnavailable) as caught:
        await run({"patient": patient(), "conditions": None})
    assert route.call_count > 1
    assert caught.value.issues == [f"hba1c: the FHIR server failed (HTTP {status})"]


async def test_garbage_from_the_fhir_server_is_data_unavailable(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Patient/{PATIENT_ID}").mock(return_value=httpx.Response(200, text="<html>Sign in</html>"))
    with pytest.raises(DataUnavailable, match="not JSON"):
        await run({"hba1c": None, "conditions": None})


async def test_timeout_is_data_unavailable_within_the_budget(fhir: respx.MockRouter) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return fhir_json(searchset([]))

    fhir.get(f"{BASE}/Observation").mock(side_effect=slow)
    fhir.get(f"{BASE}/Condition").mock(return_value=fhir_json(searchset([diabetes()])))
    budget = 0.3
    started = time.monotonic()
    with pytest.raises(DataUnavailable) as caught:
        await run({"patient": patient()}, settings=make_settings(time_budget_s=budget))
    assert time.monotonic() - started < budget + 1.0
    assert caught.value.issues == ["hba1c: the time budget of 0.3 s was exceeded"]


async def test_page_limit_while_fetching_is_fetched_partial(fhir: respx.MockRouter) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("_getpagesoffset", "0"))
        return fhir_json(searchset([hba1c(f"o{offset}")], f"{BASE}?_getpages=p&_getpagesoffset={offset + 1}"))

    fhir.get(url__startswith=BASE).mock(side_effect=endless)
    data = await run({"patient": patient(), "conditions": None}, settings=make_settings(max_pages=2))
    assert data.key_sources["hba1c"] == "fetched-partial"
    assert data.problems == ["hba1c: page limit reached after 2 pages"]


async def test_too_many_fetched_resources_is_data_unavailable(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(searchset([hba1c(f"o{i}") for i in range(3)])))
    with pytest.raises(DataUnavailable, match="more than 2 resources"):
        await run({"patient": patient(), "conditions": None}, settings=make_settings(max_resources_per_key=2))


async def test_fhir_server_not_allowlisted_is_refused_before_any_request(fhir: respx.MockRouter) -> None:
    with pytest.raises(FhirServerNotAllowed):
        await run({"patient": patient()}, fhir_server="https://rogue.example.net/fhir")
    assert len(fhir.calls) == 0


async def test_fetch_without_token_sends_no_authorization(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Condition").mock(return_value=fhir_json(searchset([])))
    await run({"patient": patient(), "hba1c": None}, token=None)
    assert "Authorization" not in route.calls.last.request.headers


@pytest.mark.parametrize(
    ("prefetch", "message"),
    [
        ({"patient": "Patient/1288992"}, "not a JSON object"),
        ({"patient": ["not", "a", "resource"]}, "not a JSON object"),
        ({"patient": {"id": "1288992", "gender": "male"}}, "no resourceType"),
        (
            {"hba1c": {"resourceType": "Bundle", "type": "searchset", "entry": ["x"]}},
            "entry is not a JSON object",
        ),
        ({"hba1c": {"resourceType": "Bundle", "type": "searchset", "entry": {"resource": {}}}}, "not a list"),
        ({"hba1c": {"resourceType": "Bundle", "entry": [{"resource": {"id": "o1"}}]}}, "no resourceType"),
        ({"patient": hba1c("o1")}, "expected a Patient resource"),
        ({"hba1c": diabetes()}, "expected a Observation resource or Bundle"),
    ],
)
async def test_garbage_in_prefetch_is_a_prefetch_error(
    fhir: respx.MockRouter, prefetch: dict[str, Any], message: str
) -> None:
    with pytest.raises(PrefetchError, match=message):
        await run({"patient": patient(), "hba1c": None, "conditions": None, **prefetch})
    assert len(fhir.calls) == 0


async def test_prefetch_that_is_not_an_object_is_a_prefetch_error() -> None:
    with pytest.raises(PrefetchError):
        await run(["patient"])  # type: ignore[arg-type]


async def test_too_many_prefetched_resources_is_a_prefetch_error() -> None:
    bundle = searchset([hba1c(f"o{i}") for i in range(3)])
    with pytest.raises(PrefetchError, match="more than 2 resources"):
        await run(
            {"patient": patient(), "hba1c": bundle, "conditions": None},
            settings=make_settings(max_resources_per_key=2),
        )


def test_fhir_access_repr_hides_the_token() -> None:
    assert TOKEN not in repr(FhirAccess(base_url=BASE, access_token=TOKEN))
