"""Upload synthetic patients to a FHIR R4 server: any Bundle → transactions of ``PUT Type/id``.

Used by the integration suite and by ``trial-cds load BUNDLE... --fhir URL``. Every resource is written
with ``PUT <type>/<id>`` (an update that creates the resource when it does not exist), so loading the same
files again leaves the server as it was: idempotent, unlike ``POST``.

The input may be any Bundle (``collection`` like the fixtures, ``transaction`` like Synthea's,
``searchset``, ``batch``): only ``entry.resource`` is read; ``entry.request`` and ``fullUrl`` are not
sent. References that point at another entry of the same Bundle by its ``fullUrl`` (``urn:uuid:…`` or an
absolute URL such as ``https://fhir.example.org/r4/Patient/npc-01``) are rewritten to the relative
``Type/id`` the server will hold, so no server-side ``urn:uuid`` resolution is needed. A resource without an
id is given one derived from its content (a stable hash: a re-run writes the same resource again).

``trial-cds load`` (:func:`load_files`) does not overwrite a resource that belongs to another patient: synthetic
Bundles often reuse ids ("obs-1"), and a PUT by id would silently move another patient's resource to this one.
Before sending a file it reads every Patient-owned resource of the Bundle (one with a ``subject`` or
``patient`` reference to a Patient) from the server by id; when the server holds that ``Type/id`` for another
patient, nothing of the file is sent and the error names the clash. ``replace=True`` (``--replace``) skips the
check; ``--id-prefix`` loads the files beside what is there. A read by id is the one interaction every FHIR
server offers: a search by several ``_id`` values, or a conditional update ("PUT Type?_id=…&subject=…"), whose
"no match" creates or fails differently from server to server, would not give the same answer everywhere. It
costs one GET per resource, once per file, which synthetic data sets afford.

Large Bundles (a Synthea patient holds up to ~15,000 resources; sent as one transaction one exhausted a 1 GB
HAPI) are sent by :func:`load_files` in bounded chunks (``chunk_size`` resources, ``chunk_bytes`` of JSON),
each its own transaction. The resources are put in dependency order first (what an entry refers to comes
before it), and every in-Bundle reference is already the ``Type/id`` the client assigned, so a chunk may
refer to the chunks before it. Synthea's patient Bundles refer to practitioners, organisations and locations
conditionally (``Practitioner?identifier=…``); each such reference is resolved by a search on the server
(once per load) and rewritten to ``Type/id``: load Synthea's ``hospitalInformation*`` and
``practitionerInformation*`` files with the patients (they are sent first). When nothing matches, the load
stops and says so, unless ``placeholders=True`` (``--placeholders``), which writes a placeholder resource that
holds only the identifier (tagged :data:`PLACEHOLDER_TAG`). A server failure is reported as such (HTTP
status and OperationOutcome text, or "no answer / unavailable: out of memory?"), with how far the file got.

The synthetic data are written as they are otherwise; this module never reads or logs patient content
beyond what the upload needs, and it sends the bearer token only to the given base URL.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cds.fhir import http as fhir_http
from cds.fhir.http import FHIR_JSON

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_PATIENT_REF = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_TRAILING_REF = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")
_LITERAL_REF = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")
_CONDITIONAL_REF = re.compile(r"^([A-Z][A-Za-z]{1,63})\?(.+)$")
#: Synthea's Bundles of shared resources, which its patient Bundles refer to: loaded before the patients.
_SHARED_FILES = re.compile(r"^(hospitalInformation|practitionerInformation)")

#: The tag of a placeholder written for a conditional reference nothing matched (``placeholders=True``).
PLACEHOLDER_TAG = {"system": "urn:trial-cds:load", "code": "placeholder"}
#: Default bounds of one transaction of :func:`load_files`.
CHUNK_SIZE = 500
CHUNK_BYTES = 5_000_000


class FhirLoadError(Exception):
    """A Bundle cannot be converted, or the server refused the transaction (message without PHI)."""


@dataclass
class LoadResult:
    """What one transaction did."""

    source: str
    resources: int
    #: HTTP status of each entry as the server answered it ("201 Created", "200 OK", …) → count.
    statuses: dict[str, int] = field(default_factory=dict)
    patient_ids: list[str] = field(default_factory=list)
    #: Transactions the file was sent in.
    chunks: int = 1
    #: Placeholders written for conditional references that matched nothing (``placeholders=True``).
    placeholders: int = 0

    @property
    def created(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("201"))

    @property
    def updated(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("200"))


# --------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------


def _walk_references(value: Any) -> Iterable[dict[str, Any]]:
    """Every ``Reference`` object (a dict with a string ``reference``) below ``value``."""
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value
        for key, item in value.items():
            if key != "contained":  # contained resources reference each other with "#id"
                yield from _walk_references(item)
            else:
                for contained in item if isinstance(item, list) else []:
                    yield from _walk_references(contained)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_references(item)


def _content_id(resource: Mapping[str, Any]) -> str:
    canonical = json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "h" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


def bundle_resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources of a Bundle's entries, in order (entries without a resource, e.g. DELETE requests of a
    transaction, are left out)."""
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise FhirLoadError("not a FHIR Bundle")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirLoadError("Bundle.entry is not a list")
    out: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise FhirLoadError(f"entry {index} is not a JSON object")
        resource = entry.get("resource")
        if resource is None:
            continue
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            raise FhirLoadError(f"entry {index}: resource has no resourceType")
        out.append(dict(resource))
    return out


def to_transaction(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """A transaction Bundle that writes every resource of ``bundle`` with ``PUT Type/id``.

    References by ``fullUrl`` (``urn:uuid:…`` or absolute) to other entries are rewritten to ``Type/id``;
    other references are kept as they are. Raises :class:`FhirLoadError` for a malformed Bundle, an
    invalid id or two different resources with the same ``Type/id``.
    """
    if not isinstance(bundle, Mapping) or bundle.get("resourceType") != "Bundle":
        raise FhirLoadError("not a FHIR Bundle")
    entries = [e for e in (bundle.get("entry") or []) if isinstance(e, Mapping)]
    resources: list[dict[str, Any]] = []
    targets: dict[str, str] = {}  # fullUrl → Type/id
    seen: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        resource = entry.get("resource")
        if resource is None:
            continue
        if not isinstance(resource, Mapping):
            raise FhirLoadError(f"entry {index}: resource is not a JSON object")
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not _RESOURCE_TYPE.fullmatch(rtype):
            raise FhirLoadError(f"entry {index}: resource has no valid resourceType")
        if rtype == "Bundle":
            raise FhirLoadError(f"entry {index}: nested Bundles are not loaded")
        copied = copy.deepcopy(dict(resource))
        rid = copied.get("id")
        if rid is None:
            rid = _content_id(copied)
            copied["id"] = rid
        if not isinstance(rid, str) or not _FHIR_ID.fullmatch(rid):
            raise FhirLoadError(f"entry {index}: {rtype} has an id that is not a valid FHIR id")
        key = f"{rtype}/{rid}"
        if key in seen:
            if seen[key] != copied:
                raise FhirLoadError(f"two different resources in the Bundle are both {key}")
            continue
        seen[key] = copied
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            targets[full_url] = key
        resources.append(copied)

    for resource in resources:
        for ref in _walk_references(resource):
            value = ref["reference"]
            if value in targets:
                ref["reference"] = targets[value]
            elif value.startswith("urn:uuid:") or value.startswith("urn:oid:"):
                raise FhirLoadError(
                    f"{resource['resourceType']}/{resource['id']}: reference {value!r} matches no entry"
                )

    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def prefix_ids(bundle: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A copy of ``bundle`` whose resource ids all start with ``prefix`` (references within the Bundle —
    ``Type/id``, ``urn:uuid`` and absolute ``fullUrl`` ones — follow), so that the same synthetic patients can
    be loaded on a shared server without meeting other people's data. ``prefix=""`` returns a copy."""
    out = copy.deepcopy(dict(bundle))
    if not prefix:
        return out
    if not _FHIR_ID.fullmatch(prefix + "x"):
        raise FhirLoadError("the id prefix may hold only letters, digits, '-' and '.'")
    renamed: dict[str, str] = {}
    for entry in out.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and isinstance(resource.get("id"), str):
            old = f"{resource['resourceType']}/{resource['id']}"
            resource["id"] = prefix + resource["id"]
            if not _FHIR_ID.fullmatch(resource["id"]):
                raise FhirLoadError(f"{old}: the prefixed id is longer than 64 characters")
            renamed[old] = f"{resource['resourceType']}/{resource['id']}"
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str) and full_url.endswith("/" + old):
                entry["fullUrl"] = full_url[: -len(old)] + renamed[old]
    for entry in out.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        for ref in _walk_references(resource):
            value = ref["reference"]
            match = _TRAILING_REF.search(value)
            if match and not value.startswith("#"):
                old = f"{match.group(1)}/{match.group(2)}"
                if old in renamed:
                    ref["reference"] = value[: match.start()] + renamed[old] + (match.group(3) or "")
    return out


def patient_ids(bundle: Mapping[str, Any]) -> list[str]:
    """The ids of the Patient resources of a Bundle."""
    return [
        r["id"] for r in bundle_resources(bundle) if r["resourceType"] == "Patient" and isinstance(r.get("id"), str)
    ]


def owner(resource: Mapping[str, Any]) -> str | None:
    """The id of the Patient ``resource`` belongs to: its own for a Patient, else the one its ``subject`` or
    ``patient`` refers to; None for shared resources (Practitioner, Organization, Medication, …)."""
    if resource.get("resourceType") == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    for element in ("subject", "patient"):
        ref = resource.get(element)
        if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str):
            match = _PATIENT_REF.search(ref["reference"])
            if match:
                return match.group(1)
    return None


# --------------------------------------------------------------------------------------------------
# Upload
# --------------------------------------------------------------------------------------------------


def _headers(token: str | None) -> dict[str, str]:
    return fhir_http.headers(token, **{"Content-Type": FHIR_JSON, "Prefer": "return=minimal"})


def _outcome_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = [
            str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code"))
            for i in body.get("issue") or []
            if isinstance(i, dict)
        ]
        return "; ".join(texts)[:1000]
    return str(body)[:300]


def _result(source: str, transaction: dict[str, Any], response: httpx.Response) -> LoadResult:
    statuses: dict[str, int] = {}
    try:
        body = response.json()
    except ValueError as exc:
        raise FhirLoadError(f"{source}: the server's answer to the transaction is not JSON") from exc
    for entry in body.get("entry") or [] if isinstance(body, dict) else []:
        status = str(((entry or {}).get("response") or {}).get("status") or "?")
        code = status.split()[0]
        statuses[code] = statuses.get(code, 0) + 1
    resources = [e["resource"] for e in transaction["entry"]]
    return LoadResult(
        source=source,
        resources=len(resources),
        statuses=statuses,
        patient_ids=[r["id"] for r in resources if r["resourceType"] == "Patient"],
    )


def _base(url: str) -> str:
    return url.rstrip("/")


def upload_bundle(
    base_url: str,
    bundle: Mapping[str, Any],
    *,
    token: str | None = None,
    http: httpx.Client | None = None,
    source: str = "bundle",
    timeout_s: float = 120.0,
) -> LoadResult:
    """POST ``bundle`` (converted with :func:`to_transaction`) to ``base_url`` as one transaction."""
    transaction = to_transaction(bundle)
    if not transaction["entry"]:
        return LoadResult(source=source, resources=0)
    client = http or fhir_http.client(timeout_s)
    try:
        response = client.post(
            _base(base_url), content=json.dumps(transaction).encode("utf-8"), headers=_headers(token)
        )
    except httpx.HTTPError as exc:
        raise FhirLoadError(f"{source}: the FHIR server could not be reached ({type(exc).__name__})") from exc
    finally:
        if http is None:
            client.close()
    if response.status_code != 200:
        raise FhirLoadError(
            f"{source}: the FHIR server refused the transaction (HTTP {response.status_code}): "
            f"{_outcome_text(response)}"
        )
    return _result(source, transaction, response)


def clashes(
    base_url: str, transaction: Mapping[str, Any], *, http: httpx.Client, token: str | None = None, source: str
) -> list[str]:
    """The resources of ``transaction`` that the server holds, under the same ``Type/id``, for another
    patient: "Observation/obs-1 (Patient/a on the server, Patient/b here)". Reads each Patient-owned
    resource (not the Patients themselves: the same id is the same patient to this tool)."""
    found: list[str] = []
    for entry in transaction["entry"]:
        resource = entry["resource"]
        mine = owner(resource)
        if mine is None or resource["resourceType"] == "Patient":
            continue
        key = f"{resource['resourceType']}/{resource['id']}"
        try:
            response = http.get(f"{_base(base_url)}/{key}", headers=fhir_http.headers(token))
        except httpx.HTTPError as exc:
            raise FhirLoadError(f"{source}: the FHIR server could not be reached ({type(exc).__name__})") from exc
        if response.status_code in (404, 410):  # not there, or deleted: nobody's
            continue
        if response.status_code != 200:
            raise FhirLoadError(
                f"{source}: cannot read {key} to check whose it is (HTTP {response.status_code}); "
                "--replace loads without the check"
            )
        try:
            existing = response.json()
        except ValueError as exc:
            raise FhirLoadError(f"{source}: the server's answer to GET {key} is not JSON") from exc
        theirs = owner(existing) if isinstance(existing, Mapping) else None
        if theirs is not None and theirs != mine:
            found.append(f"{key} (Patient/{theirs} on the server, Patient/{mine} here)")
    return found


def read_bundle(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise FhirLoadError(f"{path}: cannot read a JSON Bundle ({exc})") from exc
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise FhirLoadError(f"{path}: not a FHIR Bundle")
    return data


def order_files(paths: Iterable[Path]) -> list[Path]:
    """``paths`` with Synthea's hospital and practitioner Bundles first (the patients refer to them), the rest
    in the order given."""
    given = list(paths)
    return [p for p in given if _SHARED_FILES.match(p.name)] + [p for p in given if not _SHARED_FILES.match(p.name)]


def dependency_order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of a transaction (as :func:`to_transaction` makes them) so that a resource comes after the
    resources of the same transaction it refers to; otherwise in their order. A cycle of references (rare) is
    broken where it closes."""
    by_key = {e["request"]["url"]: e for e in entries}
    out: list[dict[str, Any]] = []
    state: dict[str, int] = {}  # 1: being placed (on the stack), 2: placed

    def place(key: str) -> None:
        stack: list[tuple[str, Iterator[str]]] = [(key, _targets(by_key[key]["resource"]))]
        state[key] = 1
        while stack:
            current, pending = stack[-1]
            nxt = next((t for t in pending if t in by_key and t not in state), None)
            if nxt is None:
                stack.pop()
                state[current] = 2
                out.append(by_key[current])
            else:
                state[nxt] = 1
                stack.append((nxt, _targets(by_key[nxt]["resource"])))

    for entry in entries:
        if entry["request"]["url"] not in state:
            place(entry["request"]["url"])
    return out


def _targets(resource: Mapping[str, Any]) -> Iterator[str]:
    for ref in _walk_references(resource):
        if _LITERAL_REF.match(ref["reference"]):
            yield ref["reference"]


def chunked(entries: list[dict[str, Any]], max_resources: int, max_bytes: int) -> list[list[dict[str, Any]]]:
    """``entries`` cut, in order, into runs of at most ``max_resources`` entries and about ``max_bytes`` of
    JSON (a single larger entry makes a chunk of its own)."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = len(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if current and (len(current) >= max_resources or size + entry_size > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        chunks.append(current)
    return chunks


def placeholder_for(reference: str) -> dict[str, Any] | None:
    """The placeholder resource for a conditional reference by identifier (``Type?identifier=system|value``),
    or None for any other search. Its id is derived from the reference: the same one on every load."""
    match = _CONDITIONAL_REF.match(reference)
    if match is None:
        return None
    params = httpx.QueryParams(match.group(2))
    if set(params.keys()) != {"identifier"} or len(params.get_list("identifier")) != 1:
        return None
    system, bar, value = params["identifier"].partition("|")
    identifier = {"system": system, "value": value} if bar else {"value": system}
    if not identifier.get("value"):
        return None
    return {
        "resourceType": match.group(1),
        "id": "ph-" + hashlib.sha256(reference.encode("utf-8")).hexdigest()[:40],
        "meta": {"tag": [dict(PLACEHOLDER_TAG)]},
        "identifier": [identifier],
    }


class _ConditionalResolver:
    """Resolves ``Type?search`` references by a search on the server, each once per load."""

    def __init__(self, base_url: str, http: httpx.Client, token: str | None, placeholders: bool) -> None:
        self.base_url = _base(base_url)
        self.http = http
        self.token = token
        self.placeholders = placeholders
        self.known: dict[str, str] = {}

    def search(self, reference: str, source: str) -> str | None:
        """The ``Type/id`` the server holds for ``reference``, or None when nothing matches."""
        if reference in self.known:
            return self.known[reference]
        rtype, query = reference.split("?", 1)
        # Parsed and sent encoded: a raw "|" (system|value) is refused by Tomcat (HTTP 400 before HAPI sees it).
        params = httpx.QueryParams(query).merge({"_count": "2", "_elements": "id"})
        response = _send(
            self.http, "GET", f"{self.base_url}/{rtype}", params=params, headers=fhir_http.headers(self.token),
            what=f"{source}: search {rtype}",
        )
        if response.status_code != 200:
            raise FhirLoadError(
                f"{source}: the search for a conditional reference ({rtype}?…) failed: {_failure_text(response)}"
            )
        try:
            bundle = response.json()
        except ValueError as exc:
            raise FhirLoadError(f"{source}: the server's answer to a search is not JSON") from exc
        ids = [
            e["resource"]["id"]
            for e in ((bundle.get("entry") if isinstance(bundle, dict) else None) or [])
            if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
            and e["resource"].get("resourceType") == rtype and isinstance(e["resource"].get("id"), str)
        ]
        if len(ids) > 1:
            raise FhirLoadError(f"{source}: the conditional reference {reference} matches several resources")
        if ids:
            self.known[reference] = f"{rtype}/{ids[0]}"
            return self.known[reference]
        return None

    def resolve(self, transaction: dict[str, Any], source: str) -> int:
        """Rewrite the conditional references of ``transaction`` to ``Type/id``; placeholders (put first in the
        transaction) for those nothing matches when allowed. Returns the number of placeholders."""
        in_transaction = {e["request"]["url"]: e["resource"] for e in transaction["entry"]}
        added: list[dict[str, Any]] = []
        missing: list[str] = []
        for entry in transaction["entry"]:
            for ref in _walk_references(entry["resource"]):
                value = ref["reference"]
                if not _CONDITIONAL_REF.match(value):
                    continue
                target = self.search(value, source)
                if target is None and self.placeholders:
                    placeholder = placeholder_for(value)
                    if placeholder is not None:
                        target = f"{placeholder['resourceType']}/{placeholder['id']}"
                        self.known[value] = target
                        if target not in in_transaction:
                            in_transaction[target] = placeholder
                            added.append(placeholder)
                if target is None:
                    missing.append(value)
                else:
                    ref["reference"] = target
        if missing:
            kinds = sorted({m.split("?", 1)[0] for m in missing})
            raise FhirLoadError(
                f"{source}: not loaded: {len(missing)} conditional reference(s) to {', '.join(kinds)} match nothing "
                "on the server. Load Synthea's hospitalInformation and practitionerInformation files with the "
                "patients (they are sent first), or pass --placeholders to write placeholders for them"
            )
        transaction["entry"][:0] = [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in added
        ]
        return len(added)


def _send(http: httpx.Client, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
    """One request; a transport failure becomes a :class:`FhirLoadError` that says what it likely means."""
    try:
        return http.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise FhirLoadError(
            f"{what}: the FHIR server did not answer in time ({type(exc).__name__}): it is overloaded, or failing "
            "(out of memory?); see its log"
        ) from exc
    except httpx.HTTPError as exc:
        raise FhirLoadError(
            f"{what}: the FHIR server is unavailable ({type(exc).__name__}): not running, or stopped "
            "(out of memory?); see its log"
        ) from exc


def _failure_text(response: httpx.Response) -> str:
    """``HTTP 500 (server failure): <OperationOutcome text>`` for an answer that is not a success."""
    kind = "server failure" if response.status_code >= 500 else "refused"
    text = _outcome_text(response)
    return f"HTTP {response.status_code} ({kind})" + (f": {text}" if text else "")


Progress = Callable[[str, int, int], None]


def load_files(
    base_url: str,
    paths: Iterable[Path],
    *,
    token: str | None = None,
    id_prefix: str = "",
    replace: bool = False,
    placeholders: bool = False,
    timeout_s: float = 120.0,
    chunk_size: int = CHUNK_SIZE,
    chunk_bytes: int = CHUNK_BYTES,
    progress: Progress | None = None,
    on_file: Callable[[LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Upload each file (what ``trial-cds load`` does): Synthea's shared Bundles first, then the rest in order;
    each file in transactions of at most ``chunk_size`` resources / ``chunk_bytes`` (module docstring).
    ``progress(file name, resources sent, resources in the file)`` after each transaction, ``on_file`` after
    each file. Stops at the first failure, and before a file that would overwrite another patient's resources
    unless ``replace``."""
    results: list[LoadResult] = []
    with fhir_http.client(timeout_s) as http:
        resolver = _ConditionalResolver(base_url, http, token, placeholders)
        for path in order_files(paths):
            bundle = prefix_ids(read_bundle(path), id_prefix)
            transaction = to_transaction(bundle)
            if not replace:
                found = clashes(base_url, transaction, http=http, token=token, source=path.name)
                if found:
                    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
                    raise FhirLoadError(
                        f"{path.name}: not loaded: {len(found)} resource(s) would overwrite another patient's: "
                        f"{shown}. Load beside them with --id-prefix P, or overwrite them with --replace"
                    )
            added = resolver.resolve(transaction, path.name)
            result = _upload_chunks(
                base_url, transaction, http=http, token=token, source=path.name,
                chunk_size=chunk_size, chunk_bytes=chunk_bytes, progress=progress,
            )
            result.placeholders = added
            results.append(result)
            if on_file is not None:
                on_file(result)
    return results


def _upload_chunks(
    base_url: str,
    transaction: dict[str, Any],
    *,
    http: httpx.Client,
    token: str | None,
    source: str,
    chunk_size: int,
    chunk_bytes: int,
    progress: Progress | None,
) -> LoadResult:
    entries = dependency_order(transaction["entry"])
    chunks = chunked(entries, chunk_size, chunk_bytes)
    total = len(entries)
    statuses: dict[str, int] = {}
    sent = 0
    for number, chunk in enumerate(chunks, start=1):
        part = {"resourceType": "Bundle", "type": "transaction", "entry": chunk}
        where = f"{source}: transaction {number} of {len(chunks)} ({sent} of {total} resources written before it)"
        response = _send(
            http, "POST", _base(base_url), what=where,
            content=json.dumps(part, ensure_ascii=False).encode("utf-8"), headers=_headers(token),
        )
        if response.status_code != 200:
            raise FhirLoadError(f"{where}: {_failure_text(response)}")
        for code, n in _result(source, part, response).statuses.items():
            statuses[code] = statuses.get(code, 0) + n
        sent += len(chunk)
        if progress is not None:
            progress(source, sent, total)
    resources = [e["resource"] for e in entries]
    return LoadResult(
        source=source,
        resources=total,
        statuses=statuses,
        patient_ids=[r["id"] for r in resources if r["resourceType"] == "Patient"],
        chunks=len(chunks),
    )
