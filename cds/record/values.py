"""The FHIR datatypes the rules read (Coding, CodeableConcept, Quantity, an Observation's value and
reference ranges) and their lenient readers.

Every reader takes ``object`` and returns a value or None: data of the wrong shape is skipped, so one
malformed resource costs at most the criteria that needed it. Below both :mod:`cds.record.model` (an
Observation reads its value and ranges from here when a rule first asks) and :mod:`cds.record.parse`
(the resources' readers)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import msgspec


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Concept:
    codings: tuple[Coding, ...] = ()
    text: str | None = None
    # Concepts key the engine's match memo; hashing the codings once, not on every lookup.
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.codings, self.text)))

    def __hash__(self) -> int:
        return self._hash

    def texts(self) -> list[str]:
        out = [c.display for c in self.codings if c.display]
        if self.text:
            out.append(self.text)
        return out

    def label(self) -> str:
        if self.text:
            return self.text
        for coding in self.codings:
            if coding.display:
                return coding.display
        return self.codings[0].code if self.codings else "?"

    def __bool__(self) -> bool:
        return bool(self.codings or self.text)


class Quantity(msgspec.Struct, frozen=True, gc=False):
    value: float
    unit: str | None = None
    comparator: str | None = None


class RefRange(msgspec.Struct, frozen=True, gc=False):
    low: Quantity | None
    high: Quantity | None
    applies_to: tuple[str, ...] = ()  # lower-cased texts and codes of appliesTo / type


class ObservationValue(msgspec.Struct, frozen=True, gc=False):
    quantity: Quantity | None = None
    concept: Concept | None = None
    integer: int | None = None
    string: str | None = None
    boolean: bool | None = None
    absent: str | None = None  # dataAbsentReason: its code (or text), lower-cased

    def is_empty(self) -> bool:
        return (
            self.quantity is None
            and self.concept is None
            and self.integer is None
            and self.string is None
            and self.boolean is None
        )


def s(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def obj(value: object) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if type(value) is dict:  # parsed JSON: the common case, without the ABC check below
        return value
    return value if isinstance(value, Mapping) else None


def arr(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def num(value: object) -> float | None:
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None  # type: ignore[arg-type, return-value]
    if kind is int:
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def coding(value: object) -> Coding | None:
    m = obj(value)
    if m is None:
        return None
    code = m.get("code")
    if type(code) is not str:
        if isinstance(code, int | float) and not isinstance(code, bool):
            code = str(code)
        code = s(code)
    if not code:
        return None
    return _coding(s(m.get("system")) or "", code.strip(), s(m.get("display")))


@lru_cache(maxsize=8192)
def _coding(system: str, code: str, display: str | None) -> Coding:
    """Codings repeat across a record (one LOINC code per result of a test): one immutable object each."""
    return Coding(system=system, code=code, display=display)


_CONCEPT_MEMO_MAX: Final = 8192
_concept_memo: Final[dict[tuple[str | None, ...], Concept | None]] = {}


def _concept_key(m: dict[str, Any]) -> tuple[str | None, ...] | None:
    """What :func:`_concept` reads of a plain CodeableConcept, as a key: its text and each coding's
    system, code and display - or None when any of them is not plain JSON text (then no memo)."""
    text = m.get("text")
    if text is not None and type(text) is not str:
        return None
    raw = m.get("coding")
    if raw is None:
        return (text,)
    if type(raw) is not list:
        return None
    key: list[str | None] = [text]
    for c in raw:
        if type(c) is not dict:
            return None
        system, code, display = c.get("system"), c.get("code"), c.get("display")
        if (
            type(code) is not str
            or (system is not None and type(system) is not str)
            or (display is not None and type(display) is not str)
        ):
            return None
        key += (system, code, display)
    return tuple(key)


def concept(value: object) -> Concept | None:
    """A CodeableConcept. The same coded concept recurs across a record and across patients (one LOINC
    code per result of a test): plain ones are read once and shared (immutable, bounded memo)."""
    if type(value) is dict:
        key = _concept_key(value)
        if key is not None:
            try:
                return _concept_memo[key]
            except KeyError:
                pass
            found = _concept(value)
            if len(_concept_memo) >= _CONCEPT_MEMO_MAX:  # keys come from request data
                _concept_memo.clear()
            _concept_memo[key] = found
            return found
    return _concept(value)


def _concept(value: object) -> Concept | None:
    m = obj(value)
    if m is None:
        return None
    raw = m.get("coding")
    codings = tuple([c for c in map(coding, raw) if c is not None]) if type(raw) is list else ()
    if not codings and isinstance(raw, list):  # a list subclass: read as before
        codings = tuple(c for c in (coding(x) for x in raw) if c is not None)
    text = s(m.get("text"))
    if not codings and not text:
        return None
    return Concept(codings=codings, text=text)


def status_code(value: object) -> str | None:
    """A CodeableConcept status (Condition.clinicalStatus) as its first code, lower-cased."""
    c = concept(value)
    if c is None:
        return None
    for cd in c.codings:
        return cd.code.lower()
    return c.text.lower() if c.text else None


def quantity(value: object) -> Quantity | None:
    m = obj(value)
    if m is None:
        return None
    v = num(m.get("value"))
    if v is None:
        return None
    unit = s(m.get("code")) or s(m.get("unit"))
    return Quantity(value=v, unit=unit, comparator=s(m.get("comparator")))


def observation_value(m: Mapping[str, Any]) -> ObservationValue:
    integer = m.get("valueInteger")
    return ObservationValue(
        quantity=quantity(m.get("valueQuantity")),
        concept=concept(m.get("valueCodeableConcept")),
        integer=integer if isinstance(integer, int) and not isinstance(integer, bool) else None,
        string=s(m.get("valueString")),
        boolean=m.get("valueBoolean") if isinstance(m.get("valueBoolean"), bool) else None,
        absent=status_code(m.get("dataAbsentReason")),
    )


def _ref_range(value: object) -> RefRange | None:
    m = obj(value)
    if m is None:
        return None
    low, high = quantity(m.get("low")), quantity(m.get("high"))
    if low is None and high is None:
        return None
    tags: list[str] = []
    for c in [concept(x) for x in arr(m.get("appliesTo"))] + [concept(m.get("type"))]:
        if c is not None:
            tags.extend(t.lower() for t in c.texts())
            tags.extend(cd.code.lower() for cd in c.codings)
    return RefRange(low=low, high=high, applies_to=tuple(tags))


def reference_ranges(resource: Mapping[str, Any]) -> tuple[RefRange, ...]:
    return tuple(r for r in (_ref_range(x) for x in arr(resource.get("referenceRange"))) if r)
