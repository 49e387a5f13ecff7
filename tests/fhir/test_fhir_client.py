"""cds/fhir/client.py: allow-list, reads, searches, paging, retries, the time budget, headers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from structlog.testing import capture_logs

from cds.fhir.client import (
    FhirClient,
    FhirServerNotAllowed,
    QueryResult,
    check_fhir_server,
    classify_query,
    parse_retry_after,
    with_count,
)
from cds.settings import Settings

BASE = "https://fhir.example.org/baseR4"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.secret-fhir-access-token.sig"
PATIENT_ID = "pat-8d3f"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"fhir_allowlist": [BASE], "time_budget_s": 2.0, "page_size": 200}
    values.update(overrides)
    return Settings(**values)


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "meta": {"versionId": "3", "lastUpdated": "2024-05-02T10:15:00.000+00:00"},
        "name": [{"use": "official", "family": "Lindqvist", "given": ["Maja"]}],
        "gender": "female",
        "birthDate": "1961-03-14",
    }


def hba1c(obs_id: str, value: float = 7.9, date: str = "2024-04-18T08:30:00+00:00") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "meta": {"lastUpdated": "2024-04-18T09:00:00.000+00:00"},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }


def searchset(
    resources: list[dict[str, Any]], *, next_url: str | None = None, total: int | None = None
) -> dict[str, Any]:
    links = [{"relation": "self", "url": f"{BASE}/Observation?patient={PATIENT_ID}"}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": "b8e1c7a2-1f3e-4c1e-9d55-0c1f2a7e9e01",
        "meta": {"lastUpdated": "2024-05-02T10:15:00.000+00:00"},
        "type": "searchset",
        "link": links,
        "entry": [
            {
                "fullUrl": f"{BASE}/{r['resourceType']}/{r.get('id')}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }
    if total is not None:
        bundle["total"] = total
    return bundle


def fhir_json(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"Content-Type": "application/fhir+json", **headers})


@pytest.fixture
def fhir() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield mock


def client(settings: Settings | None = None, token: str | None = TOKEN) -> FhirClient:
    return FhirClient(BASE, settings or make_settings(), access_token=token)


async def fetch_one(query: str, settings: Settings | None = None) -> QueryResult:
    return (await client(settings).search_all({"q": query}))["q"]


# --------------------------------------------------------------------------------------------------
# check_fhir_server
# --------------------------------------------------------------------------------------------------


def test_check_fhir_server_accepts_an_allowlisted_base_url() -> None:
    assert check_fhir_server(BASE, make_settings()) == BASE


@pytest.mark.parametrize(
    "url",
    [
        "https://fhir.example.org/baseR4/",
        "HTTPS://FHIR.Example.ORG/baseR4",
        "https://fhir.example.org:443/baseR4",
    ],
)
def test_check_fhir_server_normalises_slash_case_and_default_port(url: str) -> None:
    assert check_fhir_server(url, make_settings()) == BASE


def test_check_fhir_server_normalises_the_allowlist_entries_too() -> None:
    settings = make_settings(fhir_allowlist=["HTTPS://fhir.example.org/baseR4/"])
    assert check_fhir_server(BASE, settings) == BASE


@pytest.mark.parametrize(
    "url",
    [
        "https://fhir.example.org/baseR4-evil",
        "https://fhir.example.org/baseR4/Patient",
        "https://fhir.example.org",
        "https://fhir.example.org.evil.test/baseR4",
        "https://fhir.example.org:8443/baseR4",
        "https://fhir.example.org/BASER4",
    ],
)
def test_check_fhir_server_rejects_a_url_that_is_not_exactly_allowlisted(url: str) -> None:
    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(url, make_settings())


def test_check_fhir_server_rejects_everything_with_an_empty_allowlist() -> None:
    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(BASE, Settings(fhir_allowlist=[]))


def test_check_fhir_server_rejects_plain_http_to_a_remote_host_even_if_allowlisted() -> None:
    # Settings refuse such an entry at start-up; model_copy skips that check, to test the second line of defence.
    settings = make_settings().model_copy(update={"fhir_allowlist": ["http://fhir.example.org/baseR4"]})
    with pytest.raises(FhirServerNotAllowed, match="https"):
        check_fhir_server("http://fhir.example.org/baseR4", settings)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/fhir",
        "http://127.10.0.3/fhir",
        "http://[::1]:8080/fhir",
        "http://localhost:8080/fhir",
    ],
)
def test_check_fhir_server_allows_http_for_loopback_hosts(url: str) -> None:
    assert check_fhir_server(url, make_settings(fhir_allowlist=[url])) == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/fhir", "http://127.1.2.3/fhir", "http://[::1]:8080/fhir", "https://127.0.0.1/r4"]
)
def test_check_fhir_server_in_demo_mode_allows_loopback_addresses_without_an_allowlist(url: str) -> None:
    assert check_fhir_server(url, Settings(demo=True)) == url


@pytest.mark.parametrize(
    "url", ["http://localhost:8080/fhir", "https://fhir.example.org/other", "https://10.1.2.3/fhir"]
)
def test_check_fhir_server_in_demo_mode_still_refuses_other_servers(url: str) -> None:
    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(url, Settings(demo=True))


def test_check_fhir_server_outside_demo_mode_refuses_an_unlisted_loopback_address() -> None:
    with pytest.raises(FhirServerNotAllowed, match="allow-list"):
        check_fhir_server("http://127.0.0.1:8080/fhir", Settings())


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@fhir.example.org/baseR4",
        "https://fhir.example.org/baseR4?tenant=1",
        "https://fhir.example.org/baseR4#x",
        "ftp://fhir.example.org/baseR4",
        "fhir.example.org/baseR4",
        "",
        "https://fhir.example.org:99999/baseR4",
    ],
)
def test_check_fhir_server_rejects_malformed_urls(url: str) -> None:
    with pytest.raises(FhirServerNotAllowed):
        # model_copy: Settings refuse such entries at start-up; this tests the request-time check.
        check_fhir_server(url, make_settings().model_copy(update={"fhir_allowlist": [BASE, url]}))


def test_client_refuses_a_base_url_that_is_not_allowlisted() -> None:
    with pytest.raises(FhirServerNotAllowed):
        FhirClient("https://other.example.org/fhir", make_settings())


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "read", "rtype"),
    [
        ("Patient/123", True, "Patient"),
        ("Patient/123/_history/2", True, "Patient"),
        ("Observation?patient=123", False, "Observation"),
        ("Observation", False, "Observation"),
        ("Patient/123/$everything", False, "Patient"),
        ("Patient/123/Observation", False, "Patient"),
    ],
)
def test_classify_query_tells_reads_from_searches(query: str, read: bool, rtype: str) -> None:
    kind = classify_query(query)
    assert (kind.read, kind.resource_type) == (read, rtype)


def test_with_count_adds_count_only_when_missing() -> None:
    assert with_count("Observation?patient=1", 50) == "Observation?patient=1&_count=50"
    assert with_count("Observation", 50) == "Observation?_count=50"
    assert with_count("Observation?patient=1&_count=1", 50) == "Observation?patient=1&_count=1"


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    now = datetime(2024, 5, 2, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Thu, 02 May 2024 10:00:05 GMT", now=now) == 5.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --------------------------------------------------------------------------------------------------
# Reads and searches
# --------------------------------------------------------------------------------------------------


async def test_read_returns_the_resource(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Patient/{PATIENT_ID}").mock(return_value=fhir_json(patient()))
    results = await client().search_all({"patient": f"Patient/{PATIENT_ID}"})
    result = results["patient"]
    assert result.error is None
    assert result.resources == [patient()]
    assert (result.pages, result.requests, result.partial) == (1, 1, False)


async def test_read_404_means_the_resource_does_not_exist(fhir: respx.MockRouter) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-found", "diagnostics": "Resource Patient/404 is not known"}],
    }
    fhir.get(f"{BASE}/Patient/gone").mock(return_value=fhir_json(outcome, 404))
    result = await fetch_one("Patient/gone")
    assert result.error is None
    assert result.resources == []
    assert result.not_found


async def test_read_410_means_the_resource_does_not_exist(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Patient/deleted").mock(return_value=httpx.Response(410))
    result = await fetch_one("Patient/deleted")
    assert result.error is None and result.resources == [] and result.not_found


async def test_search_404_is_an_error(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation").mock(return_value=httpx.Response(404))
    result = await fetch_one(f"Observation?patient={PATIENT_ID}")
    assert result.error is not None and "404" in result.error


async def test_search_adds_count_from_settings(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(searchset([hba1c("o1")])))
    await client(make_settings(page_size=50)).search_all({"obs": f"Observation?patient={PATIENT_ID}&code=4548-4"})
    params = route.calls.last.request.url.params
    assert params["_count"] == "50"
    assert params["patient"] == PATIENT_ID
    assert params["code"] == "4548-4"


async def test_search_with_its_own_count_reads_one_page_only(fhir: respx.MockRouter) -> None:
    first = fhir.get(f"{BASE}/Observation").mock(
        return_value=fhir_json(searchset([hba1c("o1")], next_url=f"{BASE}?_getpages=t1&_getpagesoffset=1&_count=1"))
    )
    more = fhir.get(BASE, params={"_getpages": "t1"}).mock(return_value=fhir_json(searchset([hba1c("o2")])))
    result = await fetch_one(f"Observation?patient={PATIENT_ID}&_count=1&_sort=-date")
    assert first.calls.last.request.url.params["_count"] == "1"
    assert [r["id"] for r in result.resources] == ["o1"]
    assert not result.partial
    assert not more.called


async def test_search_leaves_out_operation_outcome_entries(fhir: respx.MockRouter) -> None:
    bundle = searchset([hba1c("o1")])
    bundle["entry"].append(
        {
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "warning", "code": "processing", "diagnostics": "Unknown code system"}],
            },
            "search": {"mode": "outcome"},
        }
    )
    fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(bundle))
    result = await fetch_one("Observation?patient=1")
    assert [r["resourceType"] for r in result.resources] == ["Observation"]
    assert result.outcomes_dropped == 1


async def test_search_without_total_and_without_entries_is_empty(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Condition").mock(
        return_value=fhir_json({"resourceType": "Bundle", "type": "searchset", "link": []})
    )
    result = await fetch_one("Condition?patient=1")
    assert result.error is None and result.resources == [] and result.pages == 1


# --------------------------------------------------------------------------------------------------
# Paging
# --------------------------------------------------------------------------------------------------


async def test_hapi_getpages_paging_reads_three_pages(fhir: respx.MockRouter) -> None:
    page2 = f"{BASE}?_getpages=9a3c1f&_getpagesoffset=2&_count=2&_pretty=true&_bundletype=searchset"
    page3 = f"{BASE}?_getpages=9a3c1f&_getpagesoffset=4&_count=2&_pretty=true&_bundletype=searchset"
    fhir.get(f"{BASE}/Observation").mock(
        return_value=fhir_json(searchset([hba1c("o1"), hba1c("o2")], next_url=page2, total=5))
    )
    p2 = fhir.get(BASE, params={"_getpages": "9a3c1f", "_getpagesoffset": "2"}).mock(
        return_value=fhir_json(searchset([hba1c("o3"), hba1c("o4")], next_url=page3, total=5))
    )
    p3 = fhir.get(BASE, params={"_getpages": "9a3c1f", "_getpagesoffset": "4"}).mock(
        return_value=fhir_json(searchset([hba1c("o5")], total=5))
    )
    result = await fetch_one("Observation?patient=1", make_settings(page_size=2))
    assert result.error is None
    assert [r["id"] for r in result.resources] == ["o1", "o2", "o3", "o4", "o5"]
    assert (result.pages, result.requests, result.partial) == (3, 3, False)
    # next links are followed as given, opaque, with the token (same server)
    assert str(p2.calls.last.request.url) == page2
    assert p3.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_offset_paging_with_relative_next_links(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation", params={"_offset": "0"}).mock(
        return_value=fhir_json(searchset([hba1c("o1")], next_url="Observation?patient=1&_count=1&_offset=1"))
    )
    fhir.get(f"{BASE}/Observation", params={"_offset": "1"}).mock(
        return_value=fhir_json(searchset([hba1c("o2")], next_url="Observation?patient=1&_count=1&_offset=2"))
    )
    fhir.get(f"{BASE}/Observation", params={"_offset": "2"}).mock(return_value=fhir_json(searchset([hba1c("o3")])))
    result = await fetch_one("Observation?patient=1&_offset=0", make_settings(page_size=1))
    assert [r["id"] for r in result.resources] == ["o1", "o2", "o3"]
    assert result.pages == 3 and not result.partial


async def test_page_limit_keeps_what_was_read_and_marks_partial(fhir: respx.MockRouter) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("_getpagesoffset", "0"))
        nxt = f"{BASE}?_getpages=loop&_getpagesoffset={offset + 1}"
        return fhir_json(searchset([hba1c(f"o{offset}")], next_url=nxt))

    fhir.get(url__startswith=BASE).mock(side_effect=endless)
    result = await fetch_one("Observation?patient=1", make_settings(max_pages=3))
    assert result.error is None
    assert [r["id"] for r in result.resources] == ["o0", "o1", "o2"]
    assert result.partial
    assert result.requests == 3
    assert result.problems == ["page limit reached after 3 pages"]


async def test_page_loop_is_detected_and_stops(fhir: respx.MockRouter) -> None:
    page2 = f"{BASE}?_getpages=abc&_getpagesoffset=1"
    fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(searchset([hba1c("o1")], next_url=page2)))
    route2 = fhir.get(BASE, params={"_getpages": "abc"}).mock(
        return_value=fhir_json(searchset([hba1c("o2")], next_url=page2))
    )
    result = await fetch_one("Observation?patient=1")
    assert route2.call_count == 1
    assert [r["id"] for r in result.resources] == ["o1", "o2"]
    assert result.partial
    assert "page loop" in result.problems[0]


async def test_next_link_to_another_host_is_not_followed(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation").mock(
        return_value=fhir_json(searchset([hba1c("o1")], next_url="https://attacker.example.net/steal?page=2"))
    )
    elsewhere = fhir.get(url__startswith="https://attacker.example.net").mock(return_value=httpx.Response(200))
    result = await fetch_one("Observation?patient=1")
    assert not elsewhere.called
    assert [r["id"] for r in result.resources] == ["o1"]
    assert result.partial
    assert "another server" in result.problems[0]


async def test_next_link_with_another_scheme_or_port_is_not_followed(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation").mock(
        return_value=fhir_json(searchset([hba1c("o1")], next_url="http://fhir.example.org/baseR4?_getpages=x"))
    )
    fhir.get(f"{BASE}/Condition").mock(
        return_value=fhir_json(searchset([], next_url="https://fhir.example.org:8443/baseR4?_getpages=y"))
    )
    other = fhir.get(url__regex=r"^(http://|https://fhir\.example\.org:8443)").mock(return_value=httpx.Response(200))
    results = await client().search_all({"obs": "Observation?patient=1", "cond": "Condition?patient=1"})
    assert not other.called
    assert results["obs"].partial and results["cond"].partial


# --------------------------------------------------------------------------------------------------
# Failures and retries
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_access_is_an_error(fhir: respx.MockRouter, status: int) -> None:
    fhir.get(f"{BASE}/Observation").mock(return_value=httpx.Response(status))
    result = await fetch_one("Observation?patient=1")
    assert result.error == f"the FHIR server refused access (HTTP {status})"
    assert result.requests == 1  # not retried


async def test_500_is_retried_then_fails(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Observation").mock(return_value=httpx.Response(500))
    result = await fetch_one("Observation?patient=1")
    assert route.call_count == 3
    assert result.error == "the FHIR server failed (HTTP 500)"
    assert result.resources == []


async def test_503_is_retried_then_fails(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Observation").mock(return_value=httpx.Response(503, headers={"Retry-After": "0"}))
    result = await fetch_one("Observation?patient=1")
    assert route.call_count == 3
    assert result.error == "the FHIR server failed (HTTP 503)"


async def test_503_then_success_is_retried(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation").mock(side_effect=[httpx.Response(503), fhir_json(searchset([hba1c("o1")]))])
    result = await fetch_one("Observation?patient=1")
    assert result.error is None and result.requests == 2


async def test_429_with_retry_after_zero_then_success(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Observation").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "0"}), fhir_json(searchset([hba1c("o1")]))]
    )
    result = await fetch_one("Observation?patient=1")
    assert route.call_count == 2
    assert result.error is None
    assert [r["id"] for r in result.resources] == ["o1"]


async def test_retry_after_longer_than_the_budget_fails_at_once(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Observation").mock(return_value=httpx.Response(429, headers={"Retry-After": "120"}))
    started = time.monotonic()
    result = await fetch_one("Observation?patient=1")
    assert time.monotonic() - started < 0.5
    assert route.call_count == 1
    assert result.error == "the FHIR server is rate limiting (HTTP 429)"


async def test_redirect_is_not_followed(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Patient/1").mock(
        return_value=httpx.Response(302, headers={"Location": "https://elsewhere.example.net/Patient/1"})
    )
    elsewhere = fhir.get(url__startswith="https://elsewhere.example.net").mock(return_value=fhir_json(patient()))
    result = await fetch_one("Patient/1")
    assert not elsewhere.called
    assert result.error is not None and "redirect" in result.error


async def test_connection_error_is_retried_once_then_fails(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Observation").mock(side_effect=httpx.ConnectError("connection refused"))
    result = await fetch_one("Observation?patient=1")
    assert route.call_count == 2
    assert result.error == "the FHIR server could not be reached (ConnectError)"


async def test_timeout_fails_within_the_budget(fhir: respx.MockRouter) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return fhir_json(searchset([]))

    fhir.get(f"{BASE}/Observation").mock(side_effect=slow)
    budget = 0.3
    started = time.monotonic()
    result = await fetch_one("Observation?patient=1", make_settings(time_budget_s=budget))
    elapsed = time.monotonic() - started
    assert result.error is not None and "time budget" in result.error
    assert elapsed < budget + 1.0


async def test_budget_is_shared_across_pages(fhir: respx.MockRouter) -> None:
    async def slow_page(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.15)
        offset = int(request.url.params.get("_getpagesoffset", "0"))
        return fhir_json(searchset([hba1c(f"o{offset}")], next_url=f"{BASE}?_getpages=s&_getpagesoffset={offset + 1}"))

    fhir.get(url__startswith=BASE).mock(side_effect=slow_page)
    started = time.monotonic()
    result = await fetch_one("Observation?patient=1", make_settings(time_budget_s=0.4))
    assert result.error is not None and "time budget" in result.error
    assert time.monotonic() - started < 0.4 + 1.0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html><body>Gateway login</body></html>", "not JSON"),
        (b'{"resourceType": "Bundle", "entry": [', "not JSON"),
        (b'["not", "a", "resource"]', "not a FHIR resource"),
        (b'{"hello": "world"}', "not a FHIR resource"),
    ],
)
async def test_garbage_response_is_an_error(fhir: respx.MockRouter, body: bytes, reason: str) -> None:
    fhir.get(f"{BASE}/Observation").mock(return_value=httpx.Response(200, content=body))
    result = await fetch_one("Observation?patient=1")
    assert result.error is not None and reason in result.error


async def test_malformed_bundle_entry_is_an_error(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation").mock(
        return_value=fhir_json({"resourceType": "Bundle", "type": "searchset", "entry": ["oops"]})
    )
    result = await fetch_one("Observation?patient=1")
    assert result.error is not None and "malformed" in result.error


async def test_wrong_resource_type_on_a_read_is_an_error(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Patient/1").mock(return_value=fhir_json(hba1c("o1")))
    result = await fetch_one("Patient/1")
    assert result.error == "the FHIR server answered with a Observation instead of a Patient resource"


async def test_operation_outcome_instead_of_a_bundle_is_an_error(fhir: respx.MockRouter) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]}
    fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(outcome))
    result = await fetch_one("Observation?patient=1")
    assert result.error is not None and "OperationOutcome" in result.error


async def test_too_many_resources_for_one_key_is_an_error(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation").mock(
        return_value=fhir_json(searchset([hba1c(f"o{i}") for i in range(4)], next_url=f"{BASE}?_getpages=z"))
    )
    more = fhir.get(BASE, params={"_getpages": "z"}).mock(return_value=fhir_json(searchset([])))
    result = await fetch_one("Observation?patient=1", make_settings(max_resources_per_key=3))
    assert result.error == "more than 3 resources; the search was stopped"
    assert not more.called


async def test_response_larger_than_max_body_bytes_is_an_error(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Observation").mock(return_value=fhir_json(searchset([hba1c(f"o{i}") for i in range(50)])))
    result = await fetch_one("Observation?patient=1", make_settings(max_body_bytes=2_000))
    assert result.error is not None and "larger than" in result.error


# --------------------------------------------------------------------------------------------------
# Headers, parallelism, logging
# --------------------------------------------------------------------------------------------------


async def test_authorization_header_carries_the_token(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Patient/1").mock(return_value=fhir_json(patient()))
    await client(token=TOKEN).search_all({"patient": "Patient/1"})
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_no_authorization_header_without_a_token(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Patient/1").mock(return_value=fhir_json(patient()))
    await client(token=None).search_all({"patient": "Patient/1"})
    assert "Authorization" not in route.calls.last.request.headers


async def test_accept_header_asks_for_fhir_json(fhir: respx.MockRouter) -> None:
    route = fhir.get(f"{BASE}/Patient/1").mock(return_value=fhir_json(patient()))
    await client().search_all({"patient": "Patient/1"})
    assert route.calls.last.request.headers["Accept"] == "application/fhir+json"


async def test_queries_of_one_request_run_in_parallel(fhir: respx.MockRouter) -> None:
    in_flight = 0
    peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.2)
        in_flight -= 1
        if request.url.path.endswith("/Patient/1"):
            return fhir_json(patient())
        return fhir_json(searchset([hba1c("o1")]))

    fhir.get(url__startswith=BASE).mock(side_effect=slow)
    queries = {"patient": "Patient/1", "obs": "Observation?patient=1", "cond": "Condition?patient=1"}
    results = await client(make_settings(time_budget_s=1.0)).search_all(queries)
    assert all(r.error is None for r in results.values())
    assert peak == 3


async def test_a_shared_http_client_is_used_and_left_open(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Patient/1").mock(return_value=fhir_json(patient()))
    async with httpx.AsyncClient() as http:
        fhir_client = FhirClient(BASE, make_settings(), access_token=TOKEN, http=http)
        await fhir_client.search_all({"patient": "Patient/1"})
        assert not http.is_closed


async def test_logs_carry_neither_token_nor_patient_data(fhir: respx.MockRouter) -> None:
    fhir.get(f"{BASE}/Patient/{PATIENT_ID}").mock(return_value=fhir_json(patient()))
    fhir.get(f"{BASE}/Observation").mock(return_value=httpx.Response(401))
    with capture_logs() as logs:
        await client().search_all({"patient": f"Patient/{PATIENT_ID}", "obs": f"Observation?patient={PATIENT_ID}"})
    assert logs, "the client logs its fetches"
    text = repr(logs)
    for secret in (TOKEN, PATIENT_ID, "Lindqvist", "1961-03-14", "fhir.example.org"):
        assert secret not in text
    assert any(e.get("status") == 401 for e in logs)
