"""Lean decoding of FHIR JSON (cds/fhir/decoding.py) never changes an answer.

The same assessment, the same cards and the same 4xx errors whether a patient's record is read lean
(msgspec, only READ_FIELDS, kept fields parsed on first read) or parsed whole with orjson: on every fixture
bundle, every engine review case, over HTTP and on the command line. Where lean decoding cannot promise
that, it gives up (None) and the caller parses with orjson, so the answer is the one given before. The one
difference left on purpose: a number beyond a double inside a resource, which makes the resource
unreadable when the field is read and is never seen when it is skipped - never a 500.
"""

from __future__ import annotations

import ast
import contextlib
import textwrap
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import engine_support
import fhir_builders
import httpx
import msgspec
import orjson
import pytest
from api_support import SERVICE, is_operation_outcome, make_client, seed_trial_only, with_server
from cards import test_order_hooks as order_hooks
from engine import test_engine_review as review
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cds.api.services import trial_eligibility_service
from cds.assessment import Assessment
from cds.cards import ASSESSMENT_EXTENSION
from cds.cli import app as cli_app
from cds.demo import ANCHOR_DATE, DemoPatient, demo_request, load_demo_patients
from cds.engine import evaluate
from cds.fhir import decoding as fhir_json
from cds.fhir.decoding import (
    READ_FIELDS,
    LeanEntry,
    LeanResource,
    UnreadableField,
    decode_hook_request,
    decode_resource,
)
from cds.portfolio import default_trials
from cds.record import PatientRecord
from hooks import HOOKS

ROOT = Path(__file__).resolve().parents[2]
PATIENTS_DIR = ROOT / "fixtures" / "patients"
FIXTURES = sorted(PATIENTS_DIR.glob("*.json"))
NOW = engine_support.NOW  # the fixtures' evaluation date, 2026-11-01T12:00Z
NOW_TEXT = "2026-11-01T12:00:00Z"
TRIALS = default_trials()
TRIAL = TRIALS["npc-liver-mets-ldrt"]
# Decoded at once, absent and JSON null alike read as absent (LeanResource's docstring).
SCALAR_FIELDS = frozenset({"resourceType", "id", "status", "effectiveDateTime", "issued"})
REVIEW_CASES = sorted(name for name in vars(review) if name.startswith("test_"))


def dumped(assessment: Assessment) -> dict[str, Any]:
    return assessment.model_dump(mode="json")


def assessments(bundle: Mapping[str, Any], now: datetime = NOW) -> dict[str, dict[str, Any]]:
    record = PatientRecord.from_bundle(bundle)
    return {trial_id: dumped(evaluate(trial, record, now)) for trial_id, trial in TRIALS.items()}


def collection(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def observation(value: Any = 3.8, **extra: Any) -> dict[str, Any]:
    """npc-01's ANC result as the fixtures write it (LOINC 751-8, 2026-10-26)."""
    return {
        "resourceType": "Observation",
        "id": "anc-1",
        "status": "final",
        "code": {"coding": [{"system": fhir_builders.LOINC, "code": "751-8", "display": "Neutrophils"}]},
        "subject": {"reference": f"Patient/{fhir_builders.PID}"},
        "effectiveDateTime": "2026-10-26T08:00:00Z",
        "valueQuantity": {"value": value, "unit": "10^3/uL", "system": fhir_builders.UCUM, "code": "10*3/uL"},
        **extra,
    }


def with_text(data: Any, placeholder: str, text: bytes) -> bytes:
    """``data`` as JSON with the one quoted ``placeholder`` string replaced by ``text`` (JSON that a Python
    value cannot give: 1e400, a lone surrogate escape, bytes that are not UTF-8...)."""
    raw = orjson.dumps(data)
    quoted = orjson.dumps(placeholder)
    assert raw.count(quoted) == 1, placeholder
    return raw.replace(quoted, text)


def criterion(assessment: Assessment, criterion_id: str) -> Any:
    return next(c for c in assessment.criteria if c.id == criterion_id)


# ---------------------------------------------------------------------------------------------------
# 1-2. The same assessment, lean or through dicts.


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_bundle_gives_the_same_assessment_lean(path: Path) -> None:
    raw = path.read_bytes()
    lean = decode_resource(raw)
    assert lean is not None, "lean decoding fell back to orjson on a fixture bundle"
    assert assessments(lean) == assessments(orjson.loads(raw))


@pytest.mark.parametrize("case", REVIEW_CASES)
def test_engine_review_case_gives_the_same_assessment_lean(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reviewed case of test_engine_review.py, run with its ``assess`` checking every record it is
    given both ways: its own expectations are that file's business, only the two paths are compared here."""
    checked: list[str] = []
    differences: list[str] = []

    def lean_checked_assess(
        criterion_id: str,
        resources: list[dict[str, Any]],
        *,
        with_patient: dict[str, Any] | None = None,
        now: datetime = NOW,
    ) -> Any:
        plain = engine_support.assess_all(resources, with_patient=with_patient, now=now)
        pat = with_patient if with_patient is not None else fhir_builders.patient()
        lean_bundle = decode_resource(orjson.dumps(collection([pat, *resources])))
        checked.append(criterion_id)
        if lean_bundle is None:
            differences.append(f"{criterion_id} (lean decoding fell back to orjson)")
        elif dumped(evaluate(TRIAL, PatientRecord.from_bundle(lean_bundle), now)) != dumped(plain):
            differences.append(criterion_id)
        return criterion(plain, criterion_id)

    monkeypatch.setattr(review, "assess", lean_checked_assess)
    with contextlib.suppress(AssertionError):  # the case's own expectation: test_engine_review.py's business
        getattr(review, case)()
    assert checked, f"{case} never called assess"
    assert differences == [], f"{case}: lean decoding changed the assessment of the records for {differences}"


# ---------------------------------------------------------------------------------------------------
# 3. Over HTTP: the same cards with and without lean decoding.

FIXTURE_PATIENTS: dict[str, DemoPatient] = load_demo_patients(ANCHOR_DATE, PATIENTS_DIR)
# Eligible, SI units, entered-in-error results, steroids, a transplant, an allergy, a vaccine, surgery,
# ignored resources, an empty record.
HTTP_PATIENTS = ["npc-01", "npc-17", "npc-27", "npc-37", "npc-40", "npc-62", "npc-67", "npc-68", "npc-72", "npc-73"]


SERVICE_TYPES = trial_eligibility_service(HOOKS["patient-view"], TRIALS).resource_types


def patient_request(patient_id: str) -> dict[str, Any]:
    """A patient-view request with every prefetch key filled from the fixture patient's bundle, as
    demo_request fills it (a read → the resource, a search → a searchset Bundle, nothing → null); a copy, for
    the tests to change."""
    request: dict[str, Any] = orjson.loads(
        orjson.dumps(demo_request(FIXTURE_PATIENTS[patient_id], HOOKS["patient-view"], SERVICE_TYPES))
    )
    return request


def post(client: TestClient, raw: bytes, path: str = SERVICE) -> httpx.Response:
    response: httpx.Response = client.post(path, content=raw, headers={"content-type": "application/json"})
    return response


def post_without_lean_decoding(client: TestClient, raw: bytes, path: str = SERVICE) -> httpx.Response:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fhir_json, "decode_hook_request", lambda raw: None)
        response = post(client, raw, path)
    return response


def without_uuids(value: Any) -> Any:
    """Cards without their uuids (new on every call); authoredOn comes from the test clock, so it stays."""
    if isinstance(value, dict):
        return {k: without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [without_uuids(v) for v in value]
    return value


@pytest.fixture
def lean_requests(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any] | None]:
    """What decode_hook_request returned for each request to the service."""
    seen: list[dict[str, Any] | None] = []
    real = fhir_json.decode_hook_request

    def spy(raw: bytes) -> dict[str, Any] | None:
        decoded = real(raw)
        seen.append(decoded)
        return decoded

    monkeypatch.setattr(fhir_json, "decode_hook_request", spy)  # as cds.api.models reaches it
    return seen


def took_lean_path(seen: list[dict[str, Any] | None]) -> bool:
    return bool(seen) and all(
        decoded is not None and any(type(v) is LeanResource for v in (decoded.get("prefetch") or {}).values())
        for decoded in seen
    )


def card_criteria(response: httpx.Response) -> dict[str, dict[str, Any]]:
    (card,) = response.json()["cards"]
    return {c["id"]: c for c in card["extension"][ASSESSMENT_EXTENSION]["criteria"]}


def test_fixture_patients_get_the_same_cards_over_http_lean(
    tmp_path: Path, lean_requests: list[dict[str, Any] | None]
) -> None:
    client = make_client(tmp_path, show_not_eligible=True)
    for patient_id in HTTP_PATIENTS:
        raw = orjson.dumps(patient_request(patient_id))
        lean = post(client, raw)
        assert lean.status_code == 200, (patient_id, lean.text)
        plain = post_without_lean_decoding(client, raw)
        assert plain.status_code == 200, (patient_id, plain.text)
        assert lean.json()["cards"], patient_id
        assert without_uuids(lean.json()) == without_uuids(plain.json()), patient_id
    assert len(lean_requests) == len(HTTP_PATIENTS)
    assert took_lean_path(lean_requests)


# Valid requests of unusual shape: lean decoding reads them (no fallback) and answers as before.
def _entry_without_resource(body: dict[str, Any]) -> None:
    body["prefetch"]["observation"]["entry"].append({"fullUrl": "urn:uuid:0b4a0e1c-8f57-4b6c-9d51-26b2c1f1b3a1"})


def _entry_with_null_resource(body: dict[str, Any]) -> None:
    body["prefetch"]["observation"]["entry"].append({"resource": None})


def _bundle_with_null_entry(body: dict[str, Any]) -> None:
    body["prefetch"]["condition"]["entry"] = None


def _null_prefetch_value(body: dict[str, Any]) -> None:
    body["prefetch"]["procedure"] = None


def _nested_bundle(body: dict[str, Any]) -> None:
    inner = body["prefetch"]["condition"]
    body["prefetch"]["condition"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": inner}]}


def _operation_outcome_entry(body: dict[str, Any]) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning", "code": "incomplete"}]}
    body["prefetch"]["observation"]["entry"].append({"resource": outcome, "search": {"mode": "outcome"}})


def _operation_outcome_value(body: dict[str, Any]) -> None:
    body["prefetch"]["medicationRequest"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "forbidden"}],
    }


def _next_link(body: dict[str, Any]) -> None:
    body["prefetch"]["observation"]["link"] = [{"relation": "next", "url": "https://fhir.example.org/r4/x?page=2"}]


def _same_observation_twice_newer_copy_second(body: dict[str, Any]) -> None:
    entries = body["prefetch"]["observation"]["entry"]
    copy = orjson.loads(orjson.dumps(entries[3]))
    copy["resource"]["meta"] = {"lastUpdated": "2026-10-30T00:00:00Z"}
    copy["resource"]["valueQuantity"]["value"] = 0.4  # ANC: now too low
    entries.append(copy)


def _unknown_fields_everywhere(body: dict[str, Any]) -> None:
    body["prefetch"]["patient"]["photo"] = [{"title": "skipped"}]
    body["prefetch"]["observation"]["total"] = 17
    body["prefetch"]["observation"]["entry"][0]["search"] = {"mode": "match", "score": 1}
    body["context"]["encounterId"] = "enc-1"


def _resource_about_another_patient(body: dict[str, Any]) -> None:
    entry = orjson.loads(orjson.dumps(body["prefetch"]["observation"]["entry"][3]))
    entry["resource"]["id"] = "other-anc"
    entry["resource"]["subject"] = {"reference": "Patient/someone-else"}
    entry["resource"]["effectiveDateTime"] = "2026-10-31T08:00:00Z"
    entry["resource"]["valueQuantity"]["value"] = 0.2
    body["prefetch"]["observation"]["entry"].append(entry)


UNUSUAL_SHAPES: dict[str, Callable[[dict[str, Any]], None]] = {
    "entry without a resource": _entry_without_resource,
    "entry with a null resource": _entry_with_null_resource,
    "Bundle.entry null": _bundle_with_null_entry,
    "prefetch value null": _null_prefetch_value,
    "Bundle inside a Bundle": _nested_bundle,
    "OperationOutcome entry": _operation_outcome_entry,
    "OperationOutcome as a prefetch value": _operation_outcome_value,
    "next link": _next_link,
    "same Observation twice, newer copy second": _same_observation_twice_newer_copy_second,
    "unknown fields everywhere": _unknown_fields_everywhere,
    "a resource about another patient": _resource_about_another_patient,
}


@pytest.mark.parametrize("shape", list(UNUSUAL_SHAPES))
def test_unusual_but_valid_request_gets_the_same_answer_lean(
    tmp_path: Path, lean_requests: list[dict[str, Any] | None], shape: str
) -> None:
    client = make_client(tmp_path, show_not_eligible=True)
    body = patient_request("npc-01")
    UNUSUAL_SHAPES[shape](body)
    raw = orjson.dumps(body)
    lean = post(client, raw)
    plain = post_without_lean_decoding(client, raw)
    assert lean.status_code == plain.status_code, (lean.text, plain.text)
    assert without_uuids(lean.json()) == without_uuids(plain.json())
    assert took_lean_path(lean_requests)


def test_keys_written_with_escapes_read_as_the_same_keys(tmp_path: Path, lean_requests: list[Any]) -> None:
    client = make_client(tmp_path, show_not_eligible=True)
    raw = orjson.dumps(patient_request("npc-01"))
    # "resource\u0054ype", "gen\u0064er": the same keys as JSON text, spelled with escapes.
    escaped = raw.replace(b'"resourceType"', b'"resource\\u0054ype"').replace(b'"gender"', b'"gen\\u0064er"')
    assert escaped != raw
    lean = post(client, escaped)
    assert lean.status_code == 200, lean.text
    assert without_uuids(lean.json()) == without_uuids(post_without_lean_decoding(client, escaped).json())
    assert lean.json()["cards"], "the keys were read: the patient has a card"
    assert took_lean_path(lean_requests)


def test_order_sign_gets_the_same_warnings_lean(tmp_path: Path, lean_requests: list[Any]) -> None:
    """The order hooks read the record lean too: Medications of the prefetch included (medicationReference)."""
    client = make_client(tmp_path)
    by_reference = order_hooks.pembrolizumab("draft-pembro-ref")
    del by_reference["medicationCodeableConcept"]
    by_reference["medicationReference"] = {"reference": "Medication/med-pembro"}
    orders = [
        order_hooks.acetaminophen(),
        order_hooks.dexamethasone_4mg_bid(),
        order_hooks.vaccine("draft-mmr", "03", "measles, mumps and rubella virus vaccine"),
        order_hooks.service_request("draft-surgery", "71273005", "Partial hepatectomy"),
        by_reference,
    ]
    body = order_hooks.order_request(client, "order-sign", orders)
    medication = {
        "resourceType": "Medication",
        "id": "med-pembro",
        "code": {"coding": [{"system": order_hooks.RXNORM, "code": "1547545", "display": "pembrolizumab"}]},
    }
    body["prefetch"]["medicationRequest"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": medication, "search": {"mode": "include"}}],
    }
    raw = orjson.dumps(body)
    lean = post(client, raw, order_hooks.SIGN)
    assert lean.status_code == 200, lean.text
    plain = post_without_lean_decoding(client, raw, order_hooks.SIGN)
    assert [c["summary"] for c in lean.json()["cards"]] == [c["summary"] for c in plain.json()["cards"]]
    assert len(lean.json()["cards"]) == 4  # pembrolizumab (through the prefetched Medication), dex, MMR, surgery
    assert without_uuids(lean.json()) == without_uuids(plain.json())
    assert took_lean_path(lean_requests)


# ---------------------------------------------------------------------------------------------------
# 4. Every top-level field a reader asks for is decoded.

READER_MODULES = [
    "cds/record/parse.py",
    "cds/record/__init__.py",
    "cds/record/reading.py",
    "cds/record/values.py",
    "cds/fhir/prefetch.py",
    "cds/fhir/resources.py",
    "cds/orders.py",
]

# Keys the readers only ever read inside nested JSON (a CodeableConcept, a Quantity, a Period...), never
# as a top-level field of a resource, so LeanResource need not keep them.
NESTED_ONLY = {
    "profile",  # Resource.meta.profile
    "appliesTo",  # Observation.referenceRange.appliesTo
    "assessment",  # Condition.stage.assessment
    "boundsDuration",  # Timing.repeat.boundsDuration
    "boundsPeriod",  # Timing.repeat.boundsPeriod
    "coding",  # CodeableConcept.coding
    "comparator",  # Quantity.comparator
    "concept",  # CodeableReference.concept (R5 MedicationStatement.reason …)
    "display",  # Coding.display, Reference.display (medicationReference)
    "dose",  # MedicationAdministration.dosage.dose
    "doseAndRate",  # Dosage.doseAndRate
    "doseQuantity",  # Dosage.doseAndRate.doseQuantity
    "doseRange",  # Dosage.doseAndRate.doseRange
    "end",  # Period.end
    "event",  # Timing.event
    "frequency",  # Timing.repeat.frequency
    "high",  # Range.high, Observation.referenceRange.high
    "itemCodeableConcept",  # Medication.ingredient.itemCodeableConcept
    "lastUpdated",  # Resource.meta.lastUpdated
    "low",  # Range.low, Observation.referenceRange.low
    "period",  # Timing.repeat.period
    "periodUnit",  # Timing.repeat.periodUnit
    "reference",  # Reference.reference (subject, patient, medicationReference)
    "relation",  # Bundle.link.relation
    "repeat",  # Timing.repeat
    "route",  # Dosage.route
    "start",  # Period.start
    "substance",  # AllergyIntolerance.reaction.substance
    "summary",  # Condition.stage.summary
    "system",  # Coding.system
    "text",  # CodeableConcept.text, Dosage.text
    "timing",  # Dosage.timing
    "type",  # Observation.referenceRange.type
    "unit",  # Quantity.unit
    "url",  # Extension.url
    "validityPeriod",  # MedicationRequest.dispenseRequest.validityPeriod
    "value",  # Quantity.value
    "valueReference",  # Extension.valueReference (mCODE dose-delivered-to-volume's volume)
}
# Literal keys that are not FHIR JSON at all.
NOT_RESOURCE_KEYS = {
    "Medication",  # record: the resources kept by type (a Python dict keyed by resourceType)
    "Observation",  # record: _IGNORED_STATUS, keyed by resourceType
    "Patient",  # record: the resources kept by type
    "userId",  # prefetch: a key of the CDS Hooks context, not of a resource
    "patientId",  # prefetch: a key of the CDS Hooks context, not of a resource
}
ENTRY_FIELDS = frozenset(LeanEntry.__struct_fields__)  # a Bundle entry's fields, read on a LeanEntry


def literal_keys(source: str) -> dict[str, list[int]]:
    """Every string literal given as the first argument of ``x.get(...)`` or ``get(...)`` (a bound
    ``resource.get``), or used as a subscript ``x["..."]``, with its line numbers."""
    found: dict[str, list[int]] = {}
    for node in ast.walk(ast.parse(source)):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr == "get") or (
                isinstance(func, ast.Name) and func.id == "get"
            ):
                key = node.args[0]
        elif isinstance(node, ast.Subscript):
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            found.setdefault(key.value, []).append(key.lineno)
    return found


def reader_keys() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for module in READER_MODULES:
        for key, lines in literal_keys((ROOT / module).read_text(encoding="utf-8")).items():
            keys.setdefault(key, []).extend(f"{module}:{line}" for line in lines)
    return keys


def test_literal_key_collector_finds_gets_bound_gets_and_subscripts() -> None:
    source = textwrap.dedent(
        """
        def read(resource, name):
            get = resource.get
            return resource.get("a"), get("b", None), resource["c"], resource.get(name), resource[0]
        """
    )
    assert literal_keys(source) == {"a": [4], "b": [4], "c": [4]}


def test_every_top_level_field_the_readers_ask_for_is_decoded_lean() -> None:
    allowed = READ_FIELDS | NESTED_ONLY | NOT_RESOURCE_KEYS | ENTRY_FIELDS
    missing = {key: where for key, where in sorted(reader_keys().items()) if key not in allowed}
    assert not missing, (
        "These keys are read from FHIR JSON but a LeanResource skips them, so lean decoding would read them "
        "as absent: add each top-level field to LeanResource in cds/fhir/decoding.py (`name: Raw = _ABSENT`), "
        "or, if it is only ever read inside nested JSON, to NESTED_ONLY in tests/fhir/test_fhir_json.py:\n"
        + "\n".join(f"  {key}: {', '.join(where)}" for key, where in missing.items())
    )


def test_the_lists_of_keys_that_need_no_field_are_current() -> None:
    keys = reader_keys()
    listed = NESTED_ONLY | NOT_RESOURCE_KEYS
    assert not listed & READ_FIELDS, "a key kept by LeanResource needs no exemption"
    assert sorted(listed - set(keys)) == [], "no reader reads these keys any more: drop them from the lists"


# ---------------------------------------------------------------------------------------------------
# 5. Fallback: where lean decoding cannot say, the full parse answers (400 where the body is bad).

PLACEHOLDER = "__PLACEHOLDER__"


def skipped_placeholder(body: dict[str, Any]) -> dict[str, Any]:
    body["prefetch"]["patient"]["text"] = {"status": "generated", "div": PLACEHOLDER}
    return body


def in_context(body: dict[str, Any]) -> dict[str, Any]:
    body["context"]["note"] = PLACEHOLDER
    return body


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(body: dict[str, Any]) -> dict[str, Any]:
        target: Any = body
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        return body

    return change


# name → (how to change npc-01's request, text for the placeholder or None, expected issue code)
BAD_BODIES: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], bytes | None, str]] = {
    "not UTF-8 in a skipped field": (skipped_placeholder, b'"\xff\xfe"', "structure"),
    "lone surrogate in a skipped field of a prefetched resource": (skipped_placeholder, b'"\\ud800"', "structure"),
    "lone low surrogate in a skipped field": (skipped_placeholder, b'"x\\uDC00"', "structure"),
    "lone surrogate in the context": (in_context, b'"\\ud800"', "structure"),
    "prefetch an array": (_set(("prefetch",), []), None, "structure"),
    "prefetch a string": (_set(("prefetch",), "patient"), None, "structure"),
    "prefetch value a string": (_set(("prefetch", "patient"), "npc-01"), None, "structure"),
    "prefetch value an array": (_set(("prefetch", "condition"), [1]), None, "structure"),
    "Bundle.entry not a list": (_set(("prefetch", "condition", "entry"), {"resource": {}}), None, "invalid"),
    "a Bundle entry not an object": (_set(("prefetch", "condition", "entry", 0), "Condition/1"), None, "invalid"),
    "an entry's resource not an object": (
        _set(("prefetch", "condition", "entry", 0, "resource"), ["Condition"]),
        None,
        "invalid",
    ),
    "1e999999 as the hook": (_set(("hook",), PLACEHOLDER), b"1e999999", "structure"),
    "1e400 in the context": (in_context, b"1e400", "structure"),
    "1e400 as a prefetched resource's status (a scalar field)": (
        _set(("prefetch", "observation", "entry", 0, "resource", "status"), PLACEHOLDER),
        b"1e400",
        "structure",
    ),
    "nesting beyond msgspec's recursion limit in a skipped field": (
        skipped_placeholder,
        b"[" * 1010 + b"]" * 1010,
        "too-long",
    ),
}
# Changes to the request's text as a whole.
BAD_TEXTS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "a top-level array": (lambda raw: b"[" + raw + b"]", "structure"),
    "a trailing comma": (lambda raw: raw[:-1] + b",}", "structure"),
    "two JSON documents": (lambda raw: raw + b"\n" + raw, "structure"),
    "a UTF-8 BOM": (lambda raw: b"\xef\xbb\xbf" + raw, "structure"),
}


def bad_body(name: str) -> tuple[bytes, str]:
    if name in BAD_TEXTS:
        change_text, code = BAD_TEXTS[name]
        return change_text(orjson.dumps(patient_request("npc-01"))), code
    change, text, code = BAD_BODIES[name]
    body = change(patient_request("npc-01"))
    return (with_text(body, PLACEHOLDER, text) if text is not None else orjson.dumps(body)), code


@pytest.mark.parametrize("name", [*BAD_BODIES, *BAD_TEXTS])
def test_lean_decoding_falls_back_on(name: str) -> None:
    raw, _ = bad_body(name)
    assert decode_hook_request(raw) is None


@pytest.mark.parametrize("name", [*BAD_BODIES, *BAD_TEXTS])
def test_bad_body_gets_the_same_400_as_before(tmp_path: Path, name: str) -> None:
    raw, code = bad_body(name)
    client = make_client(tmp_path)
    lean = post(client, raw)
    assert lean.status_code == 400, lean.text
    assert is_operation_outcome(lean.json(), code), lean.json()
    before = post_without_lean_decoding(client, raw)
    assert (before.status_code, before.json()) == (lean.status_code, lean.json())


# ---------------------------------------------------------------------------------------------------
# 6. A LeanResource reads like the dict it stands for.

OBSERVATION_TEXT = orjson.dumps(
    {
        "valueQuantity": {"value": 3.8, "unit": "10^3/uL"},
        "subject": {"reference": "Patient/pt-1"},
        "performer": [{"display": "skipped: not a field the readers ask for"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "751-8"}]},
        "resourceType": "Observation",
        "id": "anc-1",
    }
)


@pytest.fixture
def lean_observation() -> LeanResource:
    decoded = decode_resource(OBSERVATION_TEXT)
    assert type(decoded) is LeanResource
    return decoded


def test_lean_resource_is_a_mapping(lean_observation: LeanResource) -> None:
    assert isinstance(lean_observation, Mapping)
    entry = decode_resource(orjson.dumps(collection([fhir_builders.patient()])))
    assert entry is not None
    assert isinstance(entry["entry"][0], Mapping)


def test_get_gives_the_default_for_an_absent_field(lean_observation: LeanResource) -> None:
    assert lean_observation.get("valueInteger") is None
    assert lean_observation.get("valueInteger", "absent") == "absent"
    assert lean_observation.get("effectiveDateTime", "absent") == "absent"  # a scalar field


def test_get_gives_the_default_for_a_key_that_is_not_a_field(lean_observation: LeanResource) -> None:
    assert lean_observation.get("performer", "skipped") == "skipped"  # in the text, but not kept
    assert lean_observation.get("noSuchField") is None


@pytest.mark.parametrize("name", ["get", "items", "keys", "values", "to_dict", "_names", "__struct_fields__"])
def test_names_of_methods_are_not_keys(lean_observation: LeanResource, name: str) -> None:
    assert lean_observation.get(name, "default") == "default"
    assert name not in lean_observation
    with pytest.raises(KeyError):
        lean_observation[name]


def test_subscript_of_an_absent_or_skipped_field_is_a_key_error(lean_observation: LeanResource) -> None:
    with pytest.raises(KeyError):
        lean_observation["valueInteger"]
    with pytest.raises(KeyError):
        lean_observation["performer"]
    with pytest.raises(KeyError):
        lean_observation["issued"]  # a scalar field


def test_subscript_of_a_present_field_is_its_value(lean_observation: LeanResource) -> None:
    assert lean_observation["resourceType"] == "Observation"
    assert lean_observation["valueQuantity"] == {"value": 3.8, "unit": "10^3/uL"}


def test_in_holds_for_present_fields_only(lean_observation: LeanResource) -> None:
    assert "code" in lean_observation
    assert "status" in lean_observation
    assert "valueInteger" not in lean_observation
    assert "performer" not in lean_observation
    number: Any = 1
    assert number not in lean_observation


def test_iteration_gives_the_present_fields_in_field_order(lean_observation: LeanResource) -> None:
    assert list(lean_observation) == ["resourceType", "id", "status", "code", "subject", "valueQuantity"]
    assert len(lean_observation) == 6
    assert list(lean_observation.keys()) == list(lean_observation)
    assert dict(lean_observation.items())["id"] == "anc-1"
    assert "final" in list(lean_observation.values())


def test_a_kept_field_is_parsed_once(lean_observation: LeanResource) -> None:
    first = lean_observation.get("code")
    assert first == {"coding": [{"system": "http://loinc.org", "code": "751-8"}]}
    assert lean_observation.get("code") is first
    assert lean_observation["code"] is first


def test_explicit_null_in_a_scalar_field_reads_as_a_present_none_like_a_dict() -> None:
    text = b'{"resourceType": "Observation", "status": null}'
    decoded, plain = decode_resource(text), orjson.loads(text)
    assert decoded is not None
    assert decoded.get("status", "absent") is None is plain.get("status", "absent")
    assert "status" in decoded
    assert decoded.to_dict() == plain


def test_explicit_null_in_a_kept_field_reads_as_none() -> None:
    decoded = decode_resource(b'{"resourceType": "Observation", "valueQuantity": null}')
    assert decoded is not None
    assert decoded.get("valueQuantity") is None
    assert decoded.get("valueQuantity") is None


def test_explicit_null_in_a_kept_field_reads_the_same_every_time() -> None:
    text = b'{"resourceType": "Observation", "valueQuantity": null}'
    for read in (
        lambda r: r.get("valueQuantity", "default"),
        lambda r: "valueQuantity" in r,
        len,
        lambda r: list(r),
    ):
        decoded = decode_resource(text)
        assert decoded is not None
        assert read(decoded) == read(decoded)
    decoded = decode_resource(text)
    assert decoded is not None
    assert decoded.get("valueQuantity", "default") is None  # present, as in the dict
    assert decoded.to_dict() == dict(decoded.items()) == orjson.loads(text)


def _restricted(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k in READ_FIELDS}


def test_to_dict_of_every_fixture_resource_is_the_resource_restricted_to_the_read_fields() -> None:
    count = 0
    for path in FIXTURES:
        for entry in orjson.loads(path.read_bytes())["entry"]:
            restricted = _restricted(entry["resource"])
            decoded = decode_resource(orjson.dumps(entry["resource"]))
            assert decoded is not None, entry["resource"]["id"]
            assert decoded.to_dict() == restricted, entry["resource"]["id"]
            count += 1
    assert count > 1000


def test_to_dict_of_a_bundle_keeps_each_entry_resource_and_full_url_only() -> None:
    bundle = orjson.loads(FIXTURES[0].read_bytes())
    decoded = decode_resource(FIXTURES[0].read_bytes())
    assert decoded is not None
    assert decoded.to_dict() == {
        "resourceType": "Bundle",
        "id": bundle["id"],
        **({"meta": bundle["meta"]} if "meta" in bundle else {}),
        "entry": [
            {"resource": _restricted(e["resource"]), **({"fullUrl": e["fullUrl"]} if "fullUrl" in e else {})}
            for e in bundle["entry"]
        ],
    }


# ---------------------------------------------------------------------------------------------------
# 7. Numbers beyond what orjson reads: the one difference, never a 500.


def test_a_number_beyond_a_double_in_a_read_field_makes_the_field_unreadable() -> None:
    decoded = decode_resource(with_text(observation(PLACEHOLDER), PLACEHOLDER, b"1e400"))
    assert decoded is not None
    assert decoded.get("code") is not None
    with pytest.raises(UnreadableField):
        decoded.get("valueQuantity")


def test_a_number_beyond_a_double_in_a_read_field_makes_the_criterion_unknown() -> None:
    raw = with_text(collection([fhir_builders.patient(), observation(PLACEHOLDER)]), PLACEHOLDER, b"1e400")
    decoded = decode_resource(raw)
    assert decoded is not None
    assessment = evaluate(TRIAL, PatientRecord.from_bundle(decoded), NOW)
    anc = criterion(assessment, "inc_anc")
    assert anc.status == "unknown"
    assert "could not be evaluated" in anc.reason and "UnreadableField" in anc.reason
    readable = evaluate(TRIAL, PatientRecord.from_bundle(collection([fhir_builders.patient(), observation(3.8)])), NOW)
    assert criterion(readable, "inc_anc").status == "met"  # the same result, readable: met


def test_a_number_beyond_a_double_in_a_read_field_of_a_condition_makes_it_unreadable() -> None:
    condition = fhir_builders.condition("C11.9", "Malignant neoplasm of nasopharynx")
    condition["code"]["coding"][0]["version"] = PLACEHOLDER
    raw = with_text(collection([fhir_builders.patient(), condition]), PLACEHOLDER, b"-1E+400")
    decoded = decode_resource(raw)
    assert decoded is not None
    record = PatientRecord.from_bundle(decoded)
    assert record.conditions == []
    assert record.unreadable == [f"Condition/{condition['id']}"]


@pytest.mark.parametrize("number", [b"1e400", b"-2.5e999"])
def test_a_number_beyond_a_double_in_a_read_field_is_200_over_http(
    tmp_path: Path, lean_requests: list[Any], number: bytes
) -> None:
    client = make_client(tmp_path, show_not_eligible=True, trials_dir=seed_trial_only(tmp_path))
    body = patient_request("npc-01")
    anc = next(e["resource"] for e in body["prefetch"]["observation"]["entry"] if e["resource"]["id"] == "npc-01-obs-4")
    anc["valueQuantity"]["value"] = PLACEHOLDER
    response = post(client, with_text(body, PLACEHOLDER, number))
    assert response.status_code == 200, response.text
    anc_criterion = card_criteria(response)["inc_anc"]
    assert anc_criterion["status"] == "unknown"
    assert "could not be evaluated" in anc_criterion["reason"]
    assert took_lean_path(lean_requests)


def test_a_number_beyond_a_double_in_a_skipped_field_is_ignored() -> None:
    plain = collection([fhir_builders.patient(), observation(3.8)])
    noted = collection([fhir_builders.patient(), observation(3.8, note=[{"text": "x", "value": PLACEHOLDER}])])
    decoded = decode_resource(with_text(noted, PLACEHOLDER, b"1e400"))
    assert decoded is not None
    assert assessments(decoded) == assessments(plain)


def test_a_number_beyond_a_double_in_a_skipped_field_gets_the_answer_without_it_over_http(
    tmp_path: Path, lean_requests: list[Any]
) -> None:
    client = make_client(tmp_path, show_not_eligible=True)
    body = patient_request("npc-01")
    without = post(client, orjson.dumps(body))
    body["prefetch"]["observation"]["entry"][3]["resource"]["performer"] = [{"display": PLACEHOLDER}]
    with_number = post(client, with_text(body, PLACEHOLDER, b"1e400"))
    assert with_number.status_code == 200, with_number.text
    assert without_uuids(with_number.json()) == without_uuids(without.json())
    assert took_lean_path(lean_requests)


def test_an_integer_beyond_64_bits_in_a_read_field_reads_as_orjson_reads_it() -> None:
    """orjson reads an integer beyond 64 bits as a float (not refused): lean reads it the same way, so the
    record is the same as through dicts."""
    ecog = fhir_builders.coded_obs("89247-1", "ECOG Performance Status score", "2026-10-26", value_int=0)
    ecog["valueInteger"] = PLACEHOLDER
    raw = with_text(collection([fhir_builders.patient(), ecog]), PLACEHOLDER, b"123456789012345678901234567890")
    decoded = decode_resource(raw)
    assert decoded is not None
    lean_value = decoded["entry"][1]["resource"].get("valueInteger")
    plain_value = orjson.loads(raw)["entry"][1]["resource"]["valueInteger"]
    assert (type(lean_value), lean_value) == (type(plain_value), plain_value)
    assert lean_value == pytest.approx(1.2345678901234568e29)
    assert assessments(decoded) == assessments(orjson.loads(raw))


def _expires_in(body: dict[str, Any]) -> dict[str, Any]:
    body = with_server(body)
    body["fhirAuthorization"]["expires_in"] = PLACEHOLDER
    return body


def _unknown_request_field(body: dict[str, Any]) -> dict[str, Any]:
    body["vendorData"] = {"score": PLACEHOLDER}
    return body


# Outside the prefetched resources the promise is whole: the same answer as before, 400 here.
OUTSIDE_RESOURCES: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], bytes]] = {
    "an integer beyond 64 bits as fhirAuthorization.expires_in": (_expires_in, b"123456789012345678901234567890"),
    "1e400 in a request field the service does not know": (_unknown_request_field, b"1e400"),
}


@pytest.mark.parametrize("name", list(OUTSIDE_RESOURCES))
def test_a_number_orjson_cannot_read_outside_the_resources_gets_the_same_answer_as_before(
    tmp_path: Path, name: str
) -> None:
    change, number = OUTSIDE_RESOURCES[name]
    raw = with_text(change(patient_request("npc-01")), PLACEHOLDER, number)
    client = make_client(tmp_path)
    before = post_without_lean_decoding(client, raw)
    assert before.status_code == 400
    assert post(client, raw).status_code == before.status_code


# ---------------------------------------------------------------------------------------------------
# 8. The body limits hold on the lean path too.


def test_nesting_beyond_the_limit_in_a_skipped_field_is_400_lean(tmp_path: Path, lean_requests: list[Any]) -> None:
    client = make_client(tmp_path, max_json_depth=12)
    body = patient_request("npc-01")
    assert post(client, orjson.dumps(body)).status_code == 200  # the request itself is within the limit
    deep: Any = "x"
    for _ in range(12):
        deep = {"d": [deep]}
    body["prefetch"]["patient"]["contact"] = [deep]
    response = post(client, orjson.dumps(body))
    assert response.status_code == 400, response.text
    assert is_operation_outcome(response.json(), "too-long")
    assert "deeper than 12 levels" in response.text
    assert took_lean_path(lean_requests)


LONG = "é" * 301  # characters, not bytes: over a limit of 300
LONG_STRINGS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a skipped field": lambda obs: obs.update(text={"status": "generated", "div": LONG}),
    "a kept field": lambda obs: obs["valueQuantity"].update(unit=LONG),
    "a scalar field": lambda obs: obs.update(status=LONG),
    "a key": lambda obs: obs.update({LONG: 1}),
}


@pytest.mark.parametrize("where", list(LONG_STRINGS))
def test_a_string_over_the_limit_in_a_prefetched_resource_is_400_lean(
    tmp_path: Path, lean_requests: list[Any], where: str
) -> None:
    client = make_client(tmp_path, max_string_length=300)
    body = patient_request("npc-01")
    assert post(client, orjson.dumps(body)).status_code == 200  # the request itself is within the limit
    LONG_STRINGS[where](body["prefetch"]["observation"]["entry"][3]["resource"])
    response = post(client, orjson.dumps(body))
    assert response.status_code == 400, response.text
    assert is_operation_outcome(response.json(), "too-long")
    assert "longer than 300 characters" in response.text
    assert lean_requests[-1] is not None  # decoded lean, then refused by the limits


# ---------------------------------------------------------------------------------------------------
# 9. The command line.


def screen_json(paths: list[Path]) -> str:
    result = CliRunner().invoke(
        cli_app, ["screen", *map(str, paths), "--trial", "npc-liver-mets-ldrt", "--now", NOW_TEXT, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_screen_prints_the_same_json_with_and_without_lean_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[Any] = []
    real = fhir_json.decode_resource

    def spy(raw: bytes) -> Any:
        decoded.append(real(raw))
        return decoded[-1]

    monkeypatch.setattr("cds.cli.decode_resource", spy)
    lean = screen_json(FIXTURES)
    assert len(decoded) == len(FIXTURES) and all(type(d) is LeanResource for d in decoded)
    monkeypatch.setattr("cds.cli.decode_resource", lambda raw: None)
    assert screen_json(FIXTURES) == lean
    assert len(lean.splitlines()) == len(FIXTURES)


def test_screen_reads_a_bundle_lean_decoding_gives_up_on(tmp_path: Path) -> None:
    """An entry that is not an object: lean decoding gives up, orjson reads it (the entry is skipped)."""
    bundle = orjson.loads(FIXTURES[0].read_bytes())
    bundle["entry"].append("not an entry")
    odd = tmp_path / "odd.json"
    odd.write_bytes(orjson.dumps(bundle))
    assert decode_resource(odd.read_bytes()) is None
    assert screen_json([odd]) == screen_json([FIXTURES[0]])


def test_screen_reads_escaped_surrogate_pairs_lean(tmp_path: Path) -> None:
    """A character outside the BMP written as an escaped surrogate pair is plain JSON: read lean."""
    bundle = orjson.loads(FIXTURES[0].read_bytes())
    bundle["entry"][0]["resource"]["text"] = {"status": "generated", "div": PLACEHOLDER}
    escaped = tmp_path / "escaped.json"
    escaped.write_bytes(with_text(bundle, PLACEHOLDER, b'"\\ud83d\\ude00"'))
    assert decode_resource(escaped.read_bytes()) is not None
    assert screen_json([escaped]) == screen_json([FIXTURES[0]])


# ---------------------------------------------------------------------------------------------------
# 10. Property: a LeanResource is the resource restricted to READ_FIELDS.

KEPT_FIELDS = sorted(READ_FIELDS - {"entry"})
UNKNOWN_KEYS = ["performer", "text", "identifier", "valueRange", "bodySite", "interpretation", "get", "items", ""]
json_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    json_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(json_text, children, max_size=4)),
    max_leaves=20,
)


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(
        st.lists(
            st.one_of(st.sampled_from(KEPT_FIELDS), st.sampled_from(UNKNOWN_KEYS), json_text),
            unique=True,
            max_size=10,
        ).map(lambda ks: [k for k in ks if k != "entry"])
    )
    return {key: draw(json_values) for key in keys}


def test_the_scalar_fields_are_the_fields_decoded_at_once() -> None:
    decoded_at_once = {f.name for f in msgspec.structs.fields(LeanResource) if f.type is not msgspec.Raw}
    assert decoded_at_once - {"entry"} == SCALAR_FIELDS


BOUNDED = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@BOUNDED
@given(resources())
def test_a_lean_resource_is_the_resource_restricted_to_the_read_fields(resource: dict[str, Any]) -> None:
    raw = orjson.dumps(resource)
    decoded = decode_resource(raw)
    assert decoded is not None
    for key, value in resource.items():
        assert decoded.get(key) == (value if key in READ_FIELDS else None), key
    expected = {key: value for key, value in resource.items() if key in READ_FIELDS}
    assert decoded.to_dict() == expected  # its fields read already
    fresh = decode_resource(raw)
    assert fresh is not None
    assert fresh.to_dict() == expected  # none read yet
