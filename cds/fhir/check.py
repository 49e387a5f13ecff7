"""Does a FHIR server support what this service asks of it? (``trial-cds check --fhir URL``)

Reads the server's CapabilityStatement (``GET [base]/metadata``) and, for each prefetch template of the
service (the same templates as in discovery; one read of the Patient and one ``<Type>?patient=`` search per
resource type the trials use), says whether the server declares the interaction and every search parameter
the template needs. Also checked: that the server speaks FHIR R4, and that it accepts transaction Bundles
(for ``trial-cds load``).

A CapabilityStatement is a declaration: "yes" means declared, not proven. Paging (``_count`` and the next
links) is not declared in a CapabilityStatement, so it is not a row here; the integration suite proves it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

import httpx

from cds.fhir import http as fhir_http
from cds.portfolio import load_trials
from hooks import HOOKS
from hooks.base import resource_types

Support = Literal["yes", "no", "unknown"]

#: Search parameters every server understands as result controls; they are not declared per resource.
RESULT_PARAMETERS = frozenset(
    {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_contained", "_format"}
)

_TOKEN = re.compile(r"\{\{.*?\}\}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


@dataclass(frozen=True)
class CheckRow:
    """One line of the table: what is needed, and whether the server declares it."""

    resource_type: str
    #: "read", "search-type", a search parameter name ("patient"), "fhirVersion" or "transaction".
    capability: str
    supported: Support
    #: The prefetch key this row serves ("" for server-level rows).
    key: str = ""
    note: str = ""


class CapabilityError(Exception):
    """The server's /metadata could not be read or is not a CapabilityStatement."""


# --------------------------------------------------------------------------------------------------
# Templates → what each one needs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    key: str
    resource_type: str
    read: bool
    search_params: tuple[str, ...]


def needs_of(templates: Mapping[str, str]) -> list[Need]:
    """What each prefetch template asks of the server: a read of its type, or a search with parameters
    (modifiers and chains stripped: ``code:in`` → ``code``, ``subject.name`` → ``subject``)."""
    out: list[Need] = []
    for key, template in templates.items():
        rendered = _TOKEN.sub("x", template)
        path, _, query = rendered.partition("?")
        segments = [s for s in path.strip("/").split("/") if s]
        if not segments or not _RESOURCE_TYPE.fullmatch(segments[0]):
            continue
        rtype = segments[0]
        if not query and len(segments) == 2:
            out.append(Need(key, rtype, read=True, search_params=()))
            continue
        names: list[str] = []
        for name, _ in parse_qsl(query, keep_blank_values=True):
            base = name.split(":", 1)[0].split(".", 1)[0]
            if base and base not in RESULT_PARAMETERS and base not in names:
                names.append(base)
        out.append(Need(key, rtype, read=False, search_params=tuple(names)))
    return out


def service_templates(trials: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The prefetch templates of the services on ``trials`` (default: the bundled ones), as in discovery,
    each distinct template once."""
    types = resource_types(trials if trials is not None else load_trials())
    templates: dict[str, str] = {}
    for hook in HOOKS.values():  # every hook's service; the same template is checked once
        for key, template in hook.prefetch_templates(types).items():
            if template in templates.values():
                continue
            name, n = key, 2
            while name in templates:
                name, n = f"{key}-{n}", n + 1
            templates[name] = template
    return templates


# --------------------------------------------------------------------------------------------------
# CapabilityStatement → rows
# --------------------------------------------------------------------------------------------------


def _server_rest(capability: Mapping[str, Any]) -> Mapping[str, Any] | None:
    rests = capability.get("rest")
    if not isinstance(rests, list):
        return None
    for rest in rests:
        if isinstance(rest, Mapping) and rest.get("mode", "server") == "server":
            return rest
    return None


def _codes(items: Any, field: str) -> set[str]:
    if not isinstance(items, list):
        return set()
    return {str(i[field]) for i in items if isinstance(i, Mapping) and isinstance(i.get(field), str)}


def check_capabilities(capability: Mapping[str, Any], templates: Mapping[str, str]) -> list[CheckRow]:
    """The table for ``capability`` (a parsed CapabilityStatement) and the service's ``templates``."""
    if capability.get("resourceType") != "CapabilityStatement":
        raise CapabilityError("the server's /metadata is not a CapabilityStatement")
    rows: list[CheckRow] = []
    version = capability.get("fhirVersion")
    if isinstance(version, str):
        ok: Support = "yes" if version.startswith("4.0") else "no"
        rows.append(CheckRow("(server)", "fhirVersion", ok, note=f"FHIR {version}; the service needs R4 (4.0.x)"))
    else:
        rows.append(CheckRow("(server)", "fhirVersion", "unknown", note="no fhirVersion declared"))

    rest = _server_rest(capability)
    if rest is None:
        rows.append(CheckRow("(server)", "rest", "no", note="no rest entry in mode 'server'"))
        return rows
    system = _codes(rest.get("interaction"), "code")
    rows.append(
        CheckRow(
            "(server)",
            "transaction",
            "yes" if "transaction" in system else "no",
            note="for `trial-cds load` (uploads synthetic patients)",
        )
    )
    resources: dict[str, Mapping[str, Any]] = {}
    for resource in rest.get("resource") or []:
        if isinstance(resource, Mapping) and isinstance(resource.get("type"), str):
            resources[resource["type"]] = resource
    common_params = _codes(rest.get("searchParam"), "name")

    for need in needs_of(templates):
        declared = resources.get(need.resource_type)
        if declared is None:
            rows.append(
                CheckRow(
                    need.resource_type,
                    "read" if need.read else "search-type",
                    "no",
                    need.key,
                    "resource type not in the CapabilityStatement",
                )
            )
            continue
        interactions = _codes(declared.get("interaction"), "code")
        interaction = "read" if need.read else "search-type"
        rows.append(CheckRow(need.resource_type, interaction, "yes" if interaction in interactions else "no", need.key))
        params = _codes(declared.get("searchParam"), "name") | common_params
        for name in need.search_params:
            if name in params:
                rows.append(CheckRow(need.resource_type, name, "yes", need.key))
                continue
            note = ""
            if name == "patient" and "subject" in params:
                note = "'subject' is declared; the service searches by 'patient'"
            rows.append(CheckRow(need.resource_type, name, "no", need.key, note))
    return rows


def all_supported(rows: list[CheckRow]) -> bool:
    """True when no row says "no" (the transaction row is for loading data only and does not count)."""
    return all(r.supported != "no" for r in rows if r.capability != "transaction")


def render_table(rows: list[CheckRow]) -> str:
    """A plain-text table: resource type, capability, supported, prefetch key, note."""
    header = ("Resource type", "Needs", "Supported", "Prefetch key", "Note")
    lines = [header, *((r.resource_type, r.capability, r.supported, r.key, r.note) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]

    def fmt(line: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])) + (
            "  " + line[-1] if line[-1] else ""
        )

    out = [fmt(header), "  ".join("-" * w for w in widths) + "  ----"]
    out.extend(fmt(line) for line in lines[1:])
    return "\n".join(s.rstrip() for s in out)


# --------------------------------------------------------------------------------------------------
# Fetch
# --------------------------------------------------------------------------------------------------


def fetch_capability_statement(
    base_url: str, *, token: str | None = None, timeout_s: float = 30.0, http: httpx.Client | None = None
) -> dict[str, Any]:
    """GET ``[base]/metadata`` as FHIR JSON."""
    client = http or fhir_http.client(timeout_s)
    try:
        response = client.get(f"{base_url.rstrip('/')}/metadata", headers=fhir_http.headers(token))
    except httpx.HTTPError as exc:
        raise CapabilityError(f"the FHIR server could not be reached ({type(exc).__name__})") from exc
    finally:
        if http is None:
            client.close()
    if response.status_code != 200:
        raise CapabilityError(f"GET /metadata answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError as exc:
        raise CapabilityError("GET /metadata did not answer JSON") from exc
    if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
        raise CapabilityError("GET /metadata did not answer a CapabilityStatement")
    return body


def check_server(
    base_url: str, *, token: str | None = None, templates: Mapping[str, str] | None = None, timeout_s: float = 30.0
) -> list[CheckRow]:
    """Fetch the server's CapabilityStatement and check it against the service's templates."""
    capability = fetch_capability_statement(base_url, token=token, timeout_s=timeout_s)
    return check_capabilities(capability, templates if templates is not None else service_templates())
