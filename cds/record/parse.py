"""Lenient extraction of the fields the rules read from FHIR R4 JSON (dicts).

Every reader takes ``object`` and returns a value or None: data of the wrong shape is skipped, so one
malformed resource costs at most the criteria that needed it, each then `unknown` with a reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from msgspec import Raw

from cds.fhir.decoding import LeanResource
from cds.record.dates import FhirDate, parse_fhir_date
from cds.record.model import (
    Allergy,
    Concept,
    Condition,
    Dosage,
    Immunization,
    MedicationUse,
    Observation,
    PatientInfo,
    Procedure,
    Quantity,
    Reaction,
    new_observation,
)

# The datatype readers, re-exported: the record's other modules read them as parse.<name>.
from cds.record.values import Coding
from cds.record.values import arr as arr
from cds.record.values import coding as coding
from cds.record.values import concept as concept
from cds.record.values import num as num
from cds.record.values import obj as obj
from cds.record.values import observation_value as observation_value
from cds.record.values import quantity as quantity
from cds.record.values import reference_ranges as reference_ranges
from cds.record.values import s as s
from cds.record.values import status_code as status_code

MCODE_HISTOLOGY_SUFFIX = "histology-morphology-behavior"

# How many administrations a day a timing code means (HL7 v3 GTSAbbreviation).
TIMING_CODES_PER_DAY: dict[str, float] = {
    "QD": 1,
    "AM": 1,
    "PM": 1,
    "QHS": 1,
    "BID": 2,
    "TID": 3,
    "QID": 4,
    "QOD": 0.5,
    "Q4H": 6,
    "Q6H": 4,
    "Q8H": 3,
    "Q12H": 2,
    "Q24H": 1,
}
_PERIOD_PER_DAY: dict[str, float] = {"s": 86400, "min": 1440, "h": 24, "d": 1, "wk": 1 / 7, "mo": 1 / 30, "a": 1 / 365}


def ref_of(resource: Mapping[str, Any]) -> str:
    rid = resource.get("id")
    return f"{resource.get('resourceType')}/{rid if isinstance(rid, str) and rid else '(no id)'}"


def _period(value: object) -> tuple[FhirDate | None, FhirDate | None]:
    m = obj(value)
    if m is None:
        return None, None
    return parse_fhir_date(m.get("start")), parse_fhir_date(m.get("end"))


def patient(resource: Mapping[str, Any]) -> PatientInfo:
    gender = s(resource.get("gender"))
    died = s(resource.get("deceasedDateTime"))
    deceased = resource.get("deceasedBoolean") is True or died is not None
    return PatientInfo(
        ref=ref_of(resource),
        gender=gender.lower() if gender else None,
        birth_date=parse_fhir_date(resource.get("birthDate")),
        deceased=deceased,
        deceased_on=parse_fhir_date(died),
    )


def observation(resource: Mapping[str, Any], ref: str | None = None) -> Observation | None:
    """What choosing among results needs (code, status, date), read now; ``ref`` when the caller has
    it already (``ref_of(resource)``)."""
    get = resource.get
    code = concept(get("code"))
    if code is None:
        return None
    when_text = get("effectiveDateTime")
    if type(when_text) is not str or not when_text:  # the common case first; else the full order
        when_text = (
            s(when_text)
            or s(get("effectiveInstant"))
            or s((obj(get("effectivePeriod")) or {}).get("start"))
            or s(get("issued"))
        )
    status = get("status")
    if type(status) is not str:
        status = s(status)
    status = status.lower() if status else None
    return new_observation(
        ref if ref is not None else ref_of(resource),
        status,
        code,
        parse_fhir_date(when_text),
        when_text or "",
        resource,
    )


_RAW_CONCEPT_MEMO_MAX = 8192
_raw_concept_memo: dict[bytes, Concept | None] = {}


def raw_concept(raw: Raw) -> Concept | None:
    """:func:`concept` of a CodeableConcept kept as JSON text (a lean resource's field): the same text
    recurs across a record and across patients, so each distinct text is read once (bounded memo)."""
    text = bytes(raw)
    try:
        return _raw_concept_memo[text]
    except KeyError:
        pass
    found = concept(orjson.loads(text))
    if len(_raw_concept_memo) >= _RAW_CONCEPT_MEMO_MAX:  # keys come from request data
        _raw_concept_memo.clear()
    _raw_concept_memo[text] = found
    return found


def lean_observation(resource: LeanResource, ref: str) -> Observation | None:
    """:func:`observation` of a lean resource (:mod:`cds.fhir.decoding`), its code read through
    :func:`raw_concept`; the same fields in the same order, so the same answer."""
    raw = resource.code
    code = (raw_concept(raw) if raw else None) if type(raw) is Raw else concept(resource.get("code"))
    if code is None:
        return None
    when_text = resource.effectiveDateTime
    if type(when_text) is not str or not when_text:
        when_text = (
            s(when_text)
            or s(resource.get("effectiveInstant"))
            or s((obj(resource.get("effectivePeriod")) or {}).get("start"))
            or s(resource.issued)
        )
    status = resource.status
    if type(status) is not str:
        status = s(status)
    status = status.lower() if status else None
    return new_observation(ref, status, code, parse_fhir_date(when_text), when_text or "", resource)


def condition(resource: Mapping[str, Any]) -> Condition | None:
    code = concept(resource.get("code"))
    if code is None:
        return None
    onset = parse_fhir_date(resource.get("onsetDateTime"))
    if onset is None:
        onset = _period(resource.get("onsetPeriod"))[0]
    abatement = parse_fhir_date(resource.get("abatementDateTime"))
    if abatement is None:
        abatement = _period(resource.get("abatementPeriod"))[0]
    abated = (
        abatement is not None
        or resource.get("abatementBoolean") is True
        or s(resource.get("abatementString")) is not None
    )
    morphology: list[Concept] = []
    for ext in arr(resource.get("extension")):
        em = obj(ext)
        if em is not None and str(em.get("url", "")).endswith(MCODE_HISTOLOGY_SUFFIX):
            c = concept(em.get("valueCodeableConcept"))
            if c is not None:
                morphology.append(c)
    return Condition(
        ref=ref_of(resource),
        code=code,
        clinical_status=status_code(resource.get("clinicalStatus")),
        verification_status=status_code(resource.get("verificationStatus")),
        onset=onset,
        abatement=abatement,
        abated=abated,
        recorded=parse_fhir_date(resource.get("recordedDate")),
        severity=concept(resource.get("severity")),
        morphology=tuple(morphology),
    )


def _per_day(timing: object) -> float | None:
    t = obj(timing)
    if t is None:
        return None
    code = concept(t.get("code"))
    if code is not None:
        for cd in code.codings:
            if cd.code.upper() in TIMING_CODES_PER_DAY:
                return TIMING_CODES_PER_DAY[cd.code.upper()]
    repeat = obj(t.get("repeat"))
    if repeat is None:
        return None
    frequency = num(repeat.get("frequency"))
    period = num(repeat.get("period"))
    unit = s(repeat.get("periodUnit"))
    if frequency is None and period is None:
        return None
    frequency = frequency or 1.0
    period = period or 1.0
    if unit not in _PERIOD_PER_DAY or period <= 0:
        return None
    return frequency / period * _PERIOD_PER_DAY[unit]


def _dose_quantity(dose_and_rate: object) -> Quantity | None:
    for item in arr(dose_and_rate):
        m = obj(item)
        if m is None:
            continue
        q = quantity(m.get("doseQuantity"))
        if q is not None:
            return q
        rng = obj(m.get("doseRange"))
        if rng is not None:
            high = quantity(rng.get("high"))
            if high is not None:  # the most that may be given: the safe side for a dose threshold
                return high
    return None


def dosage(value: object) -> Dosage | None:
    m = obj(value)
    if m is None:
        return None
    dose = _dose_quantity(m.get("doseAndRate"))
    if dose is None:
        dose = quantity(m.get("dose"))  # MedicationAdministration.dosage.dose
    return Dosage(route=concept(m.get("route")), dose=dose, per_day=_per_day(m.get("timing")), text=s(m.get("text")))


def referenced_medication(
    resource: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The Medication that ``resource.medicationReference`` names: contained ("#id"), else among
    ``medications`` (by "Medication/id" or id); None when there is none."""
    ref = s((obj(resource.get("medicationReference")) or {}).get("reference"))
    target: Mapping[str, Any] | None = None
    if ref and ref.startswith("#"):
        for contained in arr(resource.get("contained")):
            cm = obj(contained)
            if cm is not None and cm.get("id") == ref[1:]:
                target = cm
    elif ref:
        target = medications.get(ref) or medications.get(ref.rsplit("/", 1)[-1])
    return target


def medication_concept(resource: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> Concept | None:
    direct = concept(resource.get("medicationCodeableConcept"))
    if direct is not None:
        return direct
    display = s((obj(resource.get("medicationReference")) or {}).get("display"))
    target = referenced_medication(resource, medications)
    codings: list[Coding] = []
    texts: list[str] = []
    if target is not None:
        c = concept(target.get("code"))
        if c is not None:
            codings.extend(c.codings)
            if c.text:
                texts.append(c.text)
        for ingredient in arr(target.get("ingredient")):
            im = obj(ingredient)
            ic = concept(im.get("itemCodeableConcept")) if im else None
            if ic is not None:
                codings.extend(ic.codings)
                if ic.text:
                    texts.append(ic.text)
    if display:
        texts.append(display)
    if not codings and not texts:
        return None
    return Concept(codings=tuple(codings), text="; ".join(texts) if texts else None)


def medication_use(resource: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> MedicationUse | None:
    rtype = resource.get("resourceType")
    med = medication_concept(resource, medications)
    if med is None:
        return None
    status = s(resource.get("status"))
    start: FhirDate | None = None
    end: FhirDate | None = None
    point = False
    if rtype == "MedicationRequest":
        dosages_raw = arr(resource.get("dosageInstruction"))
        dispense = obj(resource.get("dispenseRequest")) or {}
        start, end = _period(dispense.get("validityPeriod"))
        if start is None:
            start = parse_fhir_date(resource.get("authoredOn"))
            point = end is None
    else:
        dosages_raw = arr(resource.get("dosage")) if rtype == "MedicationStatement" else [resource.get("dosage")]
        eff = parse_fhir_date(resource.get("effectiveDateTime"))
        if eff is not None:
            start, point = eff, True
        else:
            start, end = _period(resource.get("effectivePeriod"))
    dosages = tuple(d for d in (dosage(x) for x in dosages_raw) if d is not None)
    return MedicationUse(
        ref=ref_of(resource),
        resource_type=str(rtype),
        status=status.lower() if status else None,
        medication=med,
        start=start,
        end=end,
        dosages=dosages,
        point_in_time=point,
    )


def procedure(resource: Mapping[str, Any]) -> Procedure | None:
    code = concept(resource.get("code"))
    if code is None:
        return None
    start = parse_fhir_date(resource.get("performedDateTime"))
    end = start
    if start is None:
        start, end = _period(resource.get("performedPeriod"))
    status = s(resource.get("status"))
    return Procedure(
        ref=ref_of(resource),
        status=status.lower() if status else None,
        code=code,
        category=concept(resource.get("category")),
        start=start,
        end=end,
    )


def immunization(resource: Mapping[str, Any]) -> Immunization | None:
    vaccine = concept(resource.get("vaccineCode"))
    if vaccine is None:
        return None
    status = s(resource.get("status"))
    return Immunization(
        ref=ref_of(resource),
        status=status.lower() if status else None,
        vaccine=vaccine,
        when=parse_fhir_date(resource.get("occurrenceDateTime")),
    )


def allergy(resource: Mapping[str, Any]) -> Allergy | None:
    code = concept(resource.get("code"))
    reactions: list[Reaction] = []
    for item in arr(resource.get("reaction")):
        m = obj(item)
        if m is None:
            continue
        sev = s(m.get("severity"))
        reactions.append(Reaction(substance=concept(m.get("substance")), severity=sev.lower() if sev else None))
    if code is None and not any(r.substance for r in reactions):
        return None
    crit = s(resource.get("criticality"))
    return Allergy(
        ref=ref_of(resource),
        code=code or Concept(),
        clinical_status=status_code(resource.get("clinicalStatus")),
        verification_status=status_code(resource.get("verificationStatus")),
        criticality=crit.lower() if crit else None,
        reactions=tuple(reactions),
    )
