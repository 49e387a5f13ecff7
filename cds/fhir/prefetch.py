"""Prefetch templates → the patient's resources (CDS Hooks 2.0, "Providing FHIR Resources").

For each prefetch key of a service:

* key present with a resource or a Bundle → used as is (a Bundle's entries; a single resource);
* key present with JSON ``null`` → the CDS client has no data for it: nothing is fetched;
* key absent, or present with an OperationOutcome (or a Bundle of OperationOutcomes only: the client
  tried and failed) → fetched from ``fhirServer`` with the request's access token;
* key present with the first page of a search (a Bundle with a ``next`` link: CDS clients may page
  prefetch) → the other pages are read from ``fhirServer`` when the request has one (allow-listed, with
  its access token, within the time budget and the paging bounds); without one, or when that fails, the
  first page is used and the key is marked partial (the cards say the record was incomplete).

If data that must be fetched cannot be (no ``fhirServer``, refused, failed, too slow, garbage),
:class:`DataUnavailable` is raised and the API answers 412 Precondition Failed, as the specification
requires. Malformed prefetch data or tokens raise :class:`PrefetchError` (→ 400).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx
import structlog
from msgspec import UNSET

from cds.fhir.client import Continuation, FhirClient, QueryResult, check_fhir_server, classify_query, has_count
from cds.fhir.decoding import LeanEntry, LeanResource, UnreadableField
from cds.fhir.resources import unique_resources
from cds.settings import Settings

log = structlog.get_logger(__name__)

KeySource = Literal[
    "prefetch",
    "prefetch-null",
    "prefetch-completed",
    "prefetch-partial",
    "fetched",
    "fetched-partial",
    "not-applicable",
]

#: The user tokens of CDS Hooks 2.0 and the resource type of ``userId`` each one stands for.
USER_TOKENS: dict[str, str] = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}

_TOKEN = re.compile(r"\{\{(.*?)\}\}")
_CONTEXT_PATH = re.compile(r"context(?:\.[A-Za-z_][A-Za-z0-9_-]*)+")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REFERENCE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")
_MAX_BUNDLE_NESTING = 3


class PrefetchError(ValueError):
    """Malformed prefetch or template tokens → the API answers 400."""


class TokenUnavailable(PrefetchError):
    """A well-formed token has no value in this request (a context field that is absent or not a
    primitive, a user token for another type of user): the template cannot be rendered, so its key
    does not apply to this request."""

    def __init__(self, token: str, reason: str) -> None:
        super().__init__(f"prefetch token {{{{{token}}}}} {reason}")
        self.token = token


class DataUnavailable(Exception):
    """Needed data could be neither prefetched nor fetched → the API answers 412 with an OperationOutcome."""

    def __init__(self, issues: Sequence[str]) -> None:
        self.issues: list[str] = list(issues)  # human-readable, no PHI, no tokens
        super().__init__("; ".join(self.issues))


@dataclass(frozen=True)
class FhirAccess:
    base_url: str | None  # request.fhirServer
    access_token: str | None  # request.fhirAuthorization.access_token

    def __repr__(self) -> str:  # never show the token
        token = "***" if self.access_token else None
        return f"FhirAccess(base_url={self.base_url!r}, access_token={token!r})"


@dataclass
class GatheredData:
    #: Deduplicated by (resourceType, id), from every key and page; OperationOutcomes not included. Dicts,
    #: or LeanResources (cds.fhir.decoding) where the request was decoded lean: read them as Mappings.
    resources: list[Mapping[str, Any]]
    #: key → "prefetch" | "prefetch-null" | "prefetch-completed" (a prefetched first page, the rest read
    #: from fhirServer) | "prefetch-partial" | "fetched" | "fetched-partial" | "not-applicable" (the
    #: template has a token without a value in this request).
    key_sources: dict[str, str]
    http_requests: int
    #: e.g. "observations: page limit reached after 20 pages" (no PHI).
    problems: list[str]
    #: The resources of each key (not deduplicated across keys).
    by_key: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------------


def _user_reference(user_id: str | None, context: Mapping[str, Any]) -> tuple[str, str] | None:
    candidate = user_id if user_id is not None else context.get("userId")
    if not isinstance(candidate, str):
        return None
    match = _REFERENCE.fullmatch(candidate.strip())
    return (match.group(1), match.group(2)) if match else None


def _context_value(path: str, context: Mapping[str, Any]) -> str:
    value: Any = context
    for part in path.split(".")[1:]:
        if not isinstance(value, Mapping) or part not in value:
            raise TokenUnavailable(path, "has no value in this request's context")
        value = value[part]
    if value is None:
        raise TokenUnavailable(path, "has no value in this request's context")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        if not value.strip():
            raise TokenUnavailable(path, "has an empty value in this request's context")
        return value
    raise TokenUnavailable(path, "does not refer to a primitive value of the context")


def _token_value(name: str, context: Mapping[str, Any], user_id: str | None) -> str:
    if name in USER_TOKENS:
        user = _user_reference(user_id, context)
        if user is None:
            raise TokenUnavailable(name, "needs a userId of the form ResourceType/id")
        if user[0] != USER_TOKENS[name]:
            raise TokenUnavailable(name, f"does not apply to a user of type {user[0]}")
        return user[1]
    if _CONTEXT_PATH.fullmatch(name):
        return _context_value(name, context)
    raise PrefetchError(f"unknown prefetch token {{{{{name}}}}}")


def render_template(template: str, context: Mapping[str, Any], user_id: str | None) -> str:
    """Replace the prefetch tokens of ``template``: ``{{context.X}}`` (any context key, nested keys
    with dots), ``{{userPractitionerId}}``, ``{{userPractitionerRoleId}}``, ``{{userPatientId}}``,
    ``{{userRelatedPersonId}}`` (from ``user_id``, else ``context.userId``, e.g. ``Practitioner/123``).

    Values in the query are percent-encoded; values in the path must be FHIR ids (or ``Type/id``).
    Raises :class:`TokenUnavailable` when a token has no value in this request, :class:`PrefetchError`
    for unknown or malformed tokens and for path values that are not ids.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        value = _token_value(name, context, user_id)
        in_query = "?" in template[: match.start()]
        if in_query:
            return quote(value, safe="")
        if (_FHIR_ID.fullmatch(value) and value not in (".", "..")) or _REFERENCE.fullmatch(value):
            return value
        raise PrefetchError(f"the value of prefetch token {{{{{name}}}}} is not a FHIR id")

    rendered = _TOKEN.sub(replace, template)
    if "{{" in rendered or "}}" in rendered:
        raise PrefetchError("malformed prefetch token (unbalanced braces)")
    return rendered


# --------------------------------------------------------------------------------------------------
# Prefetched values
# --------------------------------------------------------------------------------------------------


@dataclass
class PrefetchedValue:
    resources: list[Mapping[str, Any]]
    only_outcomes: bool  # the client's attempt failed: treat the key as absent
    #: The Bundle's ``next`` link, as sent: the client paged the search and this is its first page.
    next_url: str | None = None

    @property
    def has_next(self) -> bool:
        return self.next_url is not None


def _resource_type(key: str, value: Any, where: str) -> str:
    """The resourceType of a prefetched JSON object, or PrefetchError."""
    if type(value) is LeanResource:
        rtype = value.resourceType
    elif isinstance(value, dict):
        rtype = value.get("resourceType")
    else:
        raise PrefetchError(f"prefetch key {key!r}: {where} is not a JSON object")
    if not isinstance(rtype, str) or not rtype:
        raise PrefetchError(f"prefetch key {key!r}: {where} has no resourceType")
    return rtype


def _flatten_bundle(key: str, bundle: Mapping[str, Any], depth: int, out: list[Mapping[str, Any]]) -> int:
    """Appends the resources of ``bundle`` (nested Bundles flattened) to ``out``; returns the number of
    OperationOutcomes left out."""
    if depth > _MAX_BUNDLE_NESTING:
        raise PrefetchError(f"prefetch key {key!r}: Bundles nested too deeply")
    entries = bundle.get("entry", [])
    if entries is None:
        return 0
    if not isinstance(entries, list):
        raise PrefetchError(f"prefetch key {key!r}: Bundle.entry is not a list")
    outcomes = 0
    for entry in entries:
        if type(entry) is LeanEntry:  # decoded lean: an object with an object, null or no resource
            resource = None if entry.resource is UNSET else entry.resource
        elif isinstance(entry, dict):
            resource = entry.get("resource")
        else:
            raise PrefetchError(f"prefetch key {key!r}: a Bundle entry is not a JSON object")
        if resource is None:
            continue
        rtype = _resource_type(key, resource, "a Bundle entry's resource")
        if rtype == "OperationOutcome":
            outcomes += 1
        elif rtype == "Bundle":
            outcomes += _flatten_bundle(key, resource, depth + 1, out)
        else:
            out.append(resource)
    return outcomes


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    """The ``next`` link of a prefetched Bundle ("" when it has one without a usable URL), else None."""
    try:
        links = bundle.get("link")
    except UnreadableField:
        raise PrefetchError("a prefetched Bundle's link cannot be read") from None
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url.strip() if isinstance(url, str) else ""
    return None


def _expected(template: str) -> tuple[bool, str | None]:
    """(read?, resource type) of a template, or (False, None) when its type is itself a token."""
    path = template.partition("?")[0].strip("/")
    if path.startswith("{{"):
        return False, None
    kind = classify_query(_TOKEN.sub("x", template))
    return kind.read, kind.resource_type


def classify_prefetch_value(key: str, template: str, value: Any, settings: Settings) -> PrefetchedValue:
    """Validate one non-null prefetch value against its template."""
    rtype = _resource_type(key, value, "the value")
    resource: Mapping[str, Any] = value
    read, expected_type = _expected(template)
    if rtype == "OperationOutcome":
        return PrefetchedValue(resources=[], only_outcomes=True)
    if rtype == "Bundle":
        out: list[Mapping[str, Any]] = []
        outcomes = _flatten_bundle(key, resource, 1, out)
        resources, only_outcomes = out, outcomes > 0 and not out
        next_url = _next_link(resource)
    else:
        if expected_type is not None and rtype != expected_type:
            shape = "resource" if read else "resource or Bundle"
            raise PrefetchError(f"prefetch key {key!r}: expected a {expected_type} {shape}, got a {rtype}")
        resources, only_outcomes, next_url = [resource], False, None
    if len(resources) > settings.max_resources_per_key:
        raise PrefetchError(f"prefetch key {key!r}: more than {settings.max_resources_per_key} resources")
    return PrefetchedValue(resources=resources, only_outcomes=only_outcomes, next_url=next_url)


# --------------------------------------------------------------------------------------------------
# Merge
# --------------------------------------------------------------------------------------------------


def merge_resources(groups: Iterable[Iterable[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    """The keys' resources, one copy of each (:func:`cds.fhir.resources.unique_resources`)."""
    return unique_resources(groups)


# --------------------------------------------------------------------------------------------------
# One request, one patient
# --------------------------------------------------------------------------------------------------


def _patient_ids(resources: Iterable[Mapping[str, Any]]) -> list[str]:
    ids: list[str] = []
    for r in resources:
        rtype = r.resourceType if type(r) is LeanResource else r.get("resourceType")
        if rtype == "Patient":
            rid = r.id if type(r) is LeanResource else r.get("id")
            ids.append(rid if isinstance(rid, str) and rid else "(no id)")
    return ids


def _patients_by_key(by_key: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, list[str]]:
    """The ids of each key's Patients (one walk over the resources, read by both checks below)."""
    return {key: _patient_ids(resources) for key, resources in by_key.items()}


def _one_prefetched_patient(
    patients: Mapping[str, list[str]], key_sources: Mapping[str, str], context: Mapping[str, Any]
) -> None:
    """A request is about one patient: prefetched data holding several Patients, or a Patient other than
    the one in context, is malformed (→ 400), never merged into one record. ``patients``: each key's
    Patient ids (:func:`_patients_by_key`)."""
    found: dict[str, None] = {}
    for key, ids in patients.items():
        if key_sources.get(key, "").startswith("prefetch"):
            found.update(dict.fromkeys(ids))
    if len(found) > 1:
        raise PrefetchError(
            f"the prefetch holds {len(found)} different Patient resources; a request is about one patient"
        )
    patient_id = context.get("patientId")
    if found and isinstance(patient_id, str) and patient_id not in found:
        raise PrefetchError("the prefetched Patient is not the patient in context (context.patientId)")


def _patient_in_context_found(
    templates: Mapping[str, str], patients: Mapping[str, list[str]], context: Mapping[str, Any]
) -> None:
    """Where the service asks for the Patient, an answer without it would be a verdict on nobody: the
    patient in context must be among the data, prefetched or fetched (else → 412)."""
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not any(_expected(t)[1] == "Patient" for t in templates.values()):
        return
    if not any(patient_id in ids for ids in patients.values()):
        raise DataUnavailable(
            ["Patient: the patient in context is neither in the prefetch nor available from the FHIR server"]
        )


# --------------------------------------------------------------------------------------------------
# Paged prefetch
# --------------------------------------------------------------------------------------------------


def _complete_prefetched(
    key: str,
    result: QueryResult,
    by_key: dict[str, list[Mapping[str, Any]]],
    key_sources: dict[str, str],
    problems: list[str],
) -> None:
    """Adds the other pages of a prefetched search to its first page. Their resources are checked as the
    first page's were (nested Bundles flattened, OperationOutcomes left out); when the pages cannot be
    read, or not all of them, the key is partial and says why — the first page still counts."""
    if result.error is None:
        entries = {"entry": [{"resource": resource} for resource in result.resources]}
        out: list[Mapping[str, Any]] = []
        try:
            _flatten_bundle(key, entries, 1, out)
        except PrefetchError as exc:
            result.error = f"the FHIR server's pages are malformed ({exc})"
        else:
            by_key[key] = [*by_key[key], *out]
    if result.error is not None:
        key_sources[key] = "prefetch-partial"
        problems.append(
            f"{key}: the prefetched Bundle has a next link; reading the other pages from fhirServer failed "
            f"({result.error}); only its first page was used"
        )
    elif result.partial:
        key_sources[key] = "prefetch-partial"
        problems.extend(f"{key}: {problem} (the first page prefetched)" for problem in result.problems)
    else:
        key_sources[key] = "prefetch-completed"
        problems.extend(f"{key}: {problem}" for problem in result.problems)


# --------------------------------------------------------------------------------------------------
# Gather
# --------------------------------------------------------------------------------------------------


async def gather(
    templates: Mapping[str, str],
    *,
    context: Mapping[str, Any],
    user_id: str | None,
    prefetch: Mapping[str, Any] | None,
    fhir: FhirAccess,
    settings: Settings,
    http: httpx.AsyncClient | None = None,
    deadline: float | None = None,
) -> GatheredData:
    """Everything the service's templates ask for: prefetched where given, fetched where not.

    Raises :class:`PrefetchError` (→ 400) for malformed prefetch data or tokens,
    :class:`DataUnavailable` (→ 412) when data that must be fetched cannot be, and
    :class:`cds.fhir.client.FhirServerNotAllowed` when fetching is needed and ``fhir.base_url`` is not
    allow-listed (the API is expected to have checked it already with ``check_fhir_server``).

    ``deadline`` (``asyncio`` loop time) lets the caller share one budget with the rest of the request;
    by default fetching gets ``settings.time_budget_s`` from its start.
    """
    started = time.perf_counter()
    if prefetch is not None and not isinstance(prefetch, Mapping):
        raise PrefetchError("prefetch must be a JSON object")
    given: Mapping[str, Any] = prefetch or {}

    by_key: dict[str, list[Mapping[str, Any]]] = {}
    key_sources: dict[str, str] = {}
    problems: list[str] = []
    to_fetch: dict[str, str] = {}
    to_complete: dict[str, Continuation] = {}

    for key, template in templates.items():
        if key in given:
            value = given[key]
            if value is None:
                key_sources[key] = "prefetch-null"
                by_key[key] = []
                continue
            prefetched = classify_prefetch_value(key, template, value, settings)
            if not prefetched.only_outcomes:
                by_key[key] = prefetched.resources
                key_sources[key] = "prefetch"
                # A template's own _count is a limit ("the most recent one"): its first page is the answer.
                if prefetched.next_url is not None and not has_count(template):
                    if prefetched.next_url and fhir.base_url:
                        to_complete[key] = Continuation(
                            next_url=prefetched.next_url, resources_read=len(prefetched.resources)
                        )
                    else:
                        key_sources[key] = "prefetch-partial"
                        why = "no fhirServer to read the other pages from" if prefetched.next_url else "no URL"
                        problems.append(
                            f"{key}: the prefetched Bundle has a next link with {why}; only its first page was used"
                        )
                continue
            problems.append(f"{key}: the CDS client sent an OperationOutcome instead of data; fetched instead")
        try:
            to_fetch[key] = render_template(template, context, user_id)
        except TokenUnavailable as exc:
            key_sources[key] = "not-applicable"
            by_key[key] = []
            problems.append(f"{key}: not fetched: {exc}")

    patients = _patients_by_key(by_key)
    _one_prefetched_patient(patients, key_sources, context)
    http_requests = 0
    if to_fetch and not fhir.base_url:
        raise DataUnavailable(
            [f"{key}: not prefetched, and the request has no fhirServer to fetch it from" for key in to_fetch]
        )
    if (to_fetch or to_complete) and fhir.base_url:
        client = FhirClient(fhir.base_url, settings, access_token=fhir.access_token, http=http)
        results = await client.search_all(to_fetch, deadline=deadline, continuations=to_complete)
        for key in to_complete:
            result = results[key]
            http_requests += result.requests
            _complete_prefetched(key, result, by_key, key_sources, problems)
        if to_complete:  # the other pages are the client's data as much as the first
            patients = _patients_by_key(by_key)
            _one_prefetched_patient(patients, key_sources, context)
        issues: list[str] = []
        for key in to_fetch:
            result = results[key]
            http_requests += result.requests
            if result.error is not None:
                issues.append(f"{key}: {result.error}")
                continue
            by_key[key] = list(result.resources)
            key_sources[key] = "fetched-partial" if result.partial else "fetched"
            problems.extend(f"{key}: {problem}" for problem in result.problems)
        if issues:
            log.info("prefetch.unavailable", keys=len(issues), http_requests=http_requests)
            raise DataUnavailable(issues)

    if to_fetch and fhir.base_url:  # fetched keys: their Patients too
        patients = _patients_by_key(by_key)
    _patient_in_context_found(templates, patients, context)
    resources = merge_resources(by_key[key] for key in templates if key in by_key)
    log.info(
        "prefetch.gathered",
        keys=len(templates),
        prefetched=sum(1 for s in key_sources.values() if s.startswith("prefetch")),
        fetched=sum(1 for s in key_sources.values() if s.startswith("fetched")),
        resources=len(resources),
        http_requests=http_requests,
        problems=len(problems),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return GatheredData(
        resources=resources,
        key_sources=key_sources,
        http_requests=http_requests,
        problems=problems,
        by_key=by_key,
    )


async def gather_for_call(
    templates: Mapping[str, str],
    *,
    context: Mapping[str, Any],
    user_id: str | None,
    prefetch: Mapping[str, Any] | None,
    fhir_server: str | None,
    access_token: str | None,
    settings: Settings,
    http: httpx.AsyncClient | None = None,
) -> GatheredData:
    """:func:`gather` for a CDS Hooks call as it came: its ``fhirServer``, when given, must be allow-listed
    even when every key is prefetched (:class:`cds.fhir.client.FhirServerNotAllowed` at once, before
    anything is read)."""
    base_url = check_fhir_server(fhir_server, settings) if fhir_server is not None else None
    return await gather(
        templates,
        context=context,
        user_id=user_id,
        prefetch=prefetch,
        fhir=FhirAccess(base_url=base_url, access_token=access_token),
        settings=settings,
        http=http,
    )
