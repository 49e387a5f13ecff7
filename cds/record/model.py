"""The few fields of each FHIR resource that eligibility rules read, extracted once per request.

Why not fhir.resources models here: validating every prefetched resource costs ~140 µs each, and a
malformed resource must cost the patient one unknown criterion, not the whole answer. Extraction is
lenient and typed; a field that cannot be read is simply absent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cds.record.dates import FhirDate


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


@dataclass(frozen=True, slots=True)
class Quantity:
    value: float
    unit: str | None = None
    comparator: str | None = None


@dataclass(frozen=True, slots=True)
class RefRange:
    low: Quantity | None
    high: Quantity | None
    applies_to: tuple[str, ...] = ()  # lower-cased texts and codes of appliesTo / type


@dataclass(frozen=True, slots=True)
class ObservationValue:
    quantity: Quantity | None = None
    concept: Concept | None = None
    integer: int | None = None
    string: str | None = None
    boolean: bool | None = None

    def is_empty(self) -> bool:
        return (
            self.quantity is None
            and self.concept is None
            and self.integer is None
            and self.string is None
            and self.boolean is None
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """What every Observation needs for choosing (code, status, date) is read at once; its value and
    reference ranges only when a rule reads this result. Rules read the latest usable result of a test,
    and an oncology record holds years of results of the same tests."""

    ref: str
    status: str | None
    code: Concept
    when: FhirDate | None
    sort_key: str  # the full timestamp as written, for ordering results of the same day
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    _value: ObservationValue | None = field(default=None, init=False, repr=False, compare=False)
    _ranges: tuple[RefRange, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def value(self) -> ObservationValue:
        if self._value is None:
            from cds.record.parse import observation_value

            object.__setattr__(self, "_value", observation_value(self.raw))
        assert self._value is not None
        return self._value

    @property
    def ranges(self) -> tuple[RefRange, ...]:
        if self._ranges is None:
            from cds.record.parse import reference_ranges

            object.__setattr__(self, "_ranges", reference_ranges(self.raw))
        assert self._ranges is not None
        return self._ranges


# Observation(...) through its slots: the frozen dataclass's __init__ sets each field with
# object.__setattr__, and a long record holds thousands of Observations. Same object, same fields.
_new = object.__new__
_set_ref, _set_status, _set_code, _set_when, _set_sort_key, _set_raw, _set_value, _set_ranges = (
    Observation.__dict__[name].__set__
    for name in ("ref", "status", "code", "when", "sort_key", "raw", "_value", "_ranges")
)


def new_observation(
    ref: str,
    status: str | None,
    code: Concept,
    when: FhirDate | None,
    sort_key: str,
    raw: Mapping[str, Any],
) -> Observation:
    """``Observation(ref, status, code, when, sort_key, raw)``, faster."""
    o: Observation = _new(Observation)
    _set_ref(o, ref)
    _set_status(o, status)
    _set_code(o, code)
    _set_when(o, when)
    _set_sort_key(o, sort_key)
    _set_raw(o, raw)
    _set_value(o, None)
    _set_ranges(o, None)
    return o


@dataclass(frozen=True, slots=True)
class Condition:
    ref: str
    code: Concept
    clinical_status: str | None
    verification_status: str | None
    onset: FhirDate | None
    abatement: FhirDate | None
    abated: bool
    recorded: FhirDate | None
    severity: Concept | None
    morphology: tuple[Concept, ...] = ()


@dataclass(frozen=True, slots=True)
class Dosage:
    route: Concept | None
    dose: Quantity | None
    per_day: float | None  # administrations per day, where timing says so
    text: str | None = None


@dataclass(frozen=True, slots=True)
class MedicationUse:
    ref: str
    resource_type: str  # MedicationStatement | MedicationRequest | MedicationAdministration
    status: str | None
    medication: Concept
    start: FhirDate | None
    end: FhirDate | None
    dosages: tuple[Dosage, ...] = ()
    point_in_time: bool = False  # effectiveDateTime / authoredOn: one moment, not a period


@dataclass(frozen=True, slots=True)
class Procedure:
    ref: str
    status: str | None
    code: Concept
    category: Concept | None
    start: FhirDate | None
    end: FhirDate | None


@dataclass(frozen=True, slots=True)
class Immunization:
    ref: str
    status: str | None
    vaccine: Concept
    when: FhirDate | None


@dataclass(frozen=True, slots=True)
class Reaction:
    substance: Concept | None
    severity: str | None


@dataclass(frozen=True, slots=True)
class Allergy:
    ref: str
    code: Concept
    clinical_status: str | None
    verification_status: str | None
    criticality: str | None
    reactions: tuple[Reaction, ...] = ()


@dataclass(frozen=True, slots=True)
class PatientInfo:
    ref: str
    gender: str | None
    birth_date: FhirDate | None
    deceased: bool = False


@dataclass(slots=True)
class ReadProblems:
    """What could not be read, by resource reference (no content, so no PHI)."""

    unreadable: list[str] = field(default_factory=list)
