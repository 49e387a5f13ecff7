"""Lean decoding of FHIR JSON: only the fields the service reads, straight from the bytes.

Why: a patient-view request carries the patient's record, often thousands of resources, and parsing all of
it into Python dicts (and freeing them afterwards) cost more than everything the engine does with it.
msgspec decodes a resource into a :class:`LeanResource` that holds only the top-level fields listed in
:data:`READ_FIELDS`, skipping every other field at C speed without building objects for it. The fields are
kept as their JSON text (``msgspec.Raw``) and parsed, once, when first read; the few scalars every resource
is asked for (type, id, status, dates) are decoded at once.

A LeanResource reads like the dict it stands for (``get``, ``[]``, ``in``, iteration over its present
fields), so every reader works on both. **A reader that needs a top-level field not in READ_FIELDS must add
it there** (``tests/fhir/test_fhir_json.py`` checks every ``.get("…")`` of the readers against it).

Lean decoding is an optimisation: where it cannot promise the same result as parsing the whole text with
orjson (text that is not UTF-8, a lone surrogate escape, a request field that is not a CDS Hooks one, JSON
of another shape, a number beyond a double among the scalars or outside the prefetch),
:func:`decode_hook_request` and :func:`decode_resource` return None and the caller parses the text as
before. One difference is left, on purpose: a number beyond a double inside a prefetched resource is not
looked for in the whole text (that would cost a pass over it); in a field that is read it makes the read
fail (:class:`UnreadableField`, so the resource counts as unreadable), in a field that is not read it is
never seen, where orjson would have refused the whole request."""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import orjson
from msgspec import UNSET, Raw

from cds.fhir.json_limits import raw_limit_violation

__all__ = [
    "READ_FIELDS",
    "LeanEntry",
    "LeanResource",
    "UnreadableField",
    "decode_hook_request",
    "decode_resource",
    "plain_dict",
]

T = TypeVar("T")

_ABSENT = Raw()  # the field was not in the text (one shared empty Raw)


if TYPE_CHECKING:
    _MappingBase = Mapping[str, Any]
else:  # at run time a Struct cannot also derive from an ABC (metaclasses); registered below instead
    _MappingBase = object


class _JsonObject(_MappingBase):
    """Mapping reads over a Struct's fields: a field is present when it was in the JSON text."""

    __slots__ = ()
    _names: frozenset[str]

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self._names:
            return default
        value = getattr(self, key)
        if type(value) is Raw:
            if not value:  # absent from the text
                return default
            value = _load(value)
            if value is not None:  # parsed once (a JSON null stays as its text: present, and None)
                setattr(self, key, value)
        elif value is UNSET:
            return default
        return value

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, UNSET)
        if value is UNSET:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._names and _present(getattr(self, key))

    def __iter__(self) -> Iterator[str]:
        fields: tuple[str, ...] = type(self).__struct_fields__  # type: ignore[attr-defined]
        return (name for name in fields if _present(getattr(self, name)))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:  # as a dict: empty is false (and ``x or {}`` must not count every field)
        fields: tuple[str, ...] = type(self).__struct_fields__  # type: ignore[attr-defined]
        return any(_present(getattr(self, name)) for name in fields)

    def keys(self) -> KeysView[str]:
        return KeysView(self)

    def items(self) -> ItemsView[str, Any]:
        return ItemsView(self)

    def values(self) -> ValuesView[Any]:
        return ValuesView(self)

    def to_dict(self) -> dict[str, Any]:
        """The fields read, as plain JSON values (nested lean objects too)."""
        return {name: _plain(value) for name, value in self.items()}


def _present(value: Any) -> bool:
    """Whether a field's value was in the JSON text (an empty Raw or UNSET: it was not)."""
    return value is not UNSET and (type(value) is not Raw or bool(value))


def _plain(value: Any) -> Any:
    if isinstance(value, _JsonObject):
        return value.to_dict()
    if type(value) is list:
        return [_plain(v) for v in value]
    return value


class UnreadableField(ValueError):
    """A kept field's JSON text holds a number beyond a double: the resource cannot be read."""


def _load(text: Raw | bytes) -> Any:
    try:
        return orjson.loads(memoryview(text))
    except orjson.JSONDecodeError as exc:  # msgspec checked the syntax: a number beyond a double
        raise UnreadableField(f"a field's JSON cannot be read: {exc}") from None


class LeanEntry(_JsonObject, msgspec.Struct, repr_omit_defaults=True, omit_defaults=True, gc=False):
    """A Bundle entry: its resource, and its fullUrl (kept as text: read only for Patient entries, whose
    fullUrl other entries may reference, as Synthea's urn:uuid references do)."""

    resource: LeanResource | msgspec.UnsetType | None = UNSET
    fullUrl: Raw = _ABSENT


class LeanResource(_JsonObject, msgspec.Struct, repr_omit_defaults=True, omit_defaults=True, gc=False):
    """The top-level fields of a FHIR resource that cds reads (the record, the prefetch checks, the order
    hooks); every other field is skipped. Short scalars are decoded at once (UNSET when absent); the rest
    is kept as JSON text until read."""

    # In the order FHIR writes an Observation's elements (servers serialise in element order), most of a
    # long record: msgspec looks a key up from the field after the last one found, so keys in field order
    # are found at the first comparison, and a key out of order costs a scan of every field.
    resourceType: Any = UNSET
    id: Any = UNSET
    meta: Raw = _ABSENT
    contained: Raw = _ABSENT
    extension: Raw = _ABSENT
    status: Any = UNSET
    category: Raw = _ABSENT
    code: Raw = _ABSENT
    subject: Raw = _ABSENT
    patient: Raw = _ABSENT
    focus: Raw = _ABSENT  # a staging Observation's tumour
    effectiveDateTime: Any = UNSET
    effectivePeriod: Raw = _ABSENT
    effectiveInstant: Raw = _ABSENT
    issued: Any = UNSET
    valueQuantity: Raw = _ABSENT
    valueCodeableConcept: Raw = _ABSENT
    valueString: Raw = _ABSENT
    valueBoolean: Raw = _ABSENT
    valueInteger: Raw = _ABSENT
    dataAbsentReason: Raw = _ABSENT
    note: Raw = _ABSENT  # Observation, Condition
    method: Raw = _ABSENT  # the staging system of a staging Observation
    referenceRange: Raw = _ABSENT
    hasMember: Raw = _ABSENT
    component: Raw = _ABSENT
    # Condition, AllergyIntolerance
    clinicalStatus: Raw = _ABSENT
    verificationStatus: Raw = _ABSENT
    severity: Raw = _ABSENT
    onsetDateTime: Raw = _ABSENT
    onsetAge: Raw = _ABSENT
    onsetPeriod: Raw = _ABSENT
    onsetRange: Raw = _ABSENT
    onsetString: Raw = _ABSENT
    abatementDateTime: Raw = _ABSENT
    abatementPeriod: Raw = _ABSENT
    abatementBoolean: Raw = _ABSENT
    abatementString: Raw = _ABSENT
    recordedDate: Raw = _ABSENT
    stage: Raw = _ABSENT  # Condition.stage
    criticality: Raw = _ABSENT
    reaction: Raw = _ABSENT
    # MedicationStatement, MedicationRequest, MedicationAdministration, Medication
    doNotPerform: Raw = _ABSENT
    medicationCodeableConcept: Raw = _ABSENT
    medicationReference: Raw = _ABSENT
    authoredOn: Raw = _ABSENT
    dateAsserted: Raw = _ABSENT
    reasonCode: Raw = _ABSENT  # R4; R5 writes `reason` (CodeableReference)
    reasonReference: Raw = _ABSENT
    reason: Raw = _ABSENT
    dosage: Raw = _ABSENT
    dosageInstruction: Raw = _ABSENT
    dispenseRequest: Raw = _ABSENT
    ingredient: Raw = _ABSENT
    # Procedure, Immunization
    vaccineCode: Raw = _ABSENT
    occurrenceDateTime: Raw = _ABSENT
    performedDateTime: Raw = _ABSENT
    performedPeriod: Raw = _ABSENT
    # Patient
    gender: Raw = _ABSENT
    birthDate: Raw = _ABSENT
    deceasedBoolean: Raw = _ABSENT
    deceasedDateTime: Raw = _ABSENT
    # CapabilityStatement, StructureDefinition, …: a record says when content is of an earlier FHIR version
    fhirVersion: Raw = _ABSENT
    # Bundle
    link: Raw = _ABSENT
    entry: list[LeanEntry] | msgspec.UnsetType | None = UNSET


#: Every top-level field a reader of FHIR JSON in cds may ask a LeanResource for.
READ_FIELDS: frozenset[str] = frozenset(LeanResource.__struct_fields__)
LeanResource._names = READ_FIELDS
LeanEntry._names = frozenset(LeanEntry.__struct_fields__)
# isinstance(x, Mapping) holds, as for the dicts they stand for (readers check it).
Mapping.register(LeanResource)
Mapping.register(LeanEntry)


class _HookRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A CDS Hooks request (its fields, and only those: anything else goes the orjson way): the prefetch
    lean, every other field kept as JSON text and parsed with orjson, so exactly as before."""

    hook: Raw = _ABSENT
    hookInstance: Raw = _ABSENT
    fhirServer: Raw = _ABSENT
    fhirAuthorization: Raw = _ABSENT
    context: Raw = _ABSENT
    prefetch: dict[str, LeanResource | None] | msgspec.UnsetType | None = UNSET
    extension: Raw = _ABSENT


_HOOK_REQUEST = msgspec.json.Decoder(_HookRequest)
_RESOURCE = msgspec.json.Decoder(LeanResource)
_ENCODER = msgspec.json.Encoder()

# What msgspec lets through where it skips a field or keeps its text, and orjson refuses (a 400 "not valid
# JSON" on the full parse): text that is not UTF-8. (Lone surrogate escapes msgspec refuses everywhere, as
# orjson does.) Numbers beyond a double in a kept field of a resource fail when the field is read
# (UnreadableField: that resource is unreadable), in a skipped field are never read.


def _plain_text(raw: bytes) -> bool:
    """True when ``raw`` is UTF-8 (msgspec does not check the text of the fields it skips or keeps)."""
    if raw.isascii():
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_hook_request_within(
    raw: bytes, parsed: Callable[[], Any], *, max_depth: int, max_string_length: int
) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`decode_hook_request`, and, when it decodes the body, the first of the body's limits the body
    breaks (:func:`cds.fhir.json_limits.raw_limit_violation`; None: within them). ``parsed`` gives the
    body fully parsed, asked for only when the text alone does not settle the limits."""
    data = decode_hook_request(raw)
    if data is None:
        return None, None
    return data, raw_limit_violation(raw, parsed, max_depth=max_depth, max_string_length=max_string_length)


def decode_hook_request(raw: bytes) -> dict[str, Any] | None:
    """The request as a dict with lean prefetched resources, or None: parse ``raw`` with orjson instead
    (not plain text, not an object of the request's fields with a prefetch object of resources, or not
    valid JSON)."""
    request = _decode(_HOOK_REQUEST, raw)
    if request is None:
        return None
    data: dict[str, Any] = {}
    for name in request.__struct_fields__:
        value = getattr(request, name)
        if type(value) is Raw:
            if not value:
                continue
            try:
                value = orjson.loads(memoryview(value))
            except orjson.JSONDecodeError:
                return None
        elif value is UNSET:
            continue
        data[name] = value
    return data


def decode_resource(raw: bytes) -> LeanResource | None:
    """A resource (a Bundle of a patient's record, say) as a LeanResource, or None: parse ``raw`` with
    orjson instead."""
    return _decode(_RESOURCE, raw)


def _decode(decoder: msgspec.json.Decoder[T], raw: bytes) -> T | None:
    """``raw`` decoded, or None where lean decoding cannot vouch for it (not UTF-8, malformed, of another
    shape, nested past msgspec's recursion guard)."""
    if not _plain_text(raw):
        return None
    try:
        return decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


def plain_dict(resource: LeanResource) -> dict[str, Any]:
    """The fields read of a lean resource as one plain dict (encoded back to JSON text and parsed at once,
    in C: cheaper than reading field by field when most of its fields will be read)."""
    loaded: dict[str, Any] = _load(_ENCODER.encode(resource))
    return loaded
