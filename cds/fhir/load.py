"""Upload synthetic patients to a FHIR R4 server: any Bundle → one transaction of ``PUT Type/id``.

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
Before each transaction it reads every Patient-owned resource of the Bundle (one with a ``subject`` or
``patient`` reference to a Patient) from the server by id; when the server holds that ``Type/id`` for another
patient, nothing of the file is sent and the error names the clash. ``replace=True`` (``--replace``) skips the
check; ``--id-prefix`` loads the files beside what is there. A read by id is the one interaction every FHIR
server offers: a search by several ``_id`` values, or a conditional update ("PUT Type?_id=…&subject=…"), whose
"no match" creates or fails differently from server to server, would not give the same answer everywhere. It
costs one GET per resource, once per file, which synthetic data sets afford.

The synthetic data are written as they are otherwise; this module never reads or logs patient content
beyond what the upload needs, and it sends the bearer token only to the given base URL.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
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


def load_files(
    base_url: str,
    paths: Iterable[Path],
    *,
    token: str | None = None,
    id_prefix: str = "",
    replace: bool = False,
    timeout_s: float = 120.0,
) -> list[LoadResult]:
    """Upload each file as one transaction (what ``trial-cds load`` does). Stops at the first failure, and
    before a file that would overwrite another patient's resources unless ``replace`` (module docstring)."""
    results: list[LoadResult] = []
    with fhir_http.client(timeout_s) as http:
        for path in paths:
            bundle = prefix_ids(read_bundle(path), id_prefix)
            if not replace:
                found = clashes(base_url, to_transaction(bundle), http=http, token=token, source=path.name)
                if found:
                    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
                    raise FhirLoadError(
                        f"{path.name}: not loaded: {len(found)} resource(s) would overwrite another patient's: "
                        f"{shown}. Load beside them with --id-prefix P, or overwrite them with --replace"
                    )
            results.append(upload_bundle(base_url, bundle, token=token, http=http, source=path.name))
    return results
