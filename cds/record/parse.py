"""Lenient extraction of the fields the rules read from FHIR R4 JSON (dicts).

Every reader takes ``object`` and returns a value or None: data of the wrong shape is skipped, so one
malformed resource costs at most the criteria that needed it, each then `unknown` with a reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any, Final

import orjson
from msgspec import Raw

from cds.fhir.decoding import LeanResource
from cds.record.dates import FhirDate, add_months, parse_fhir_date
from cds.record.model import (
    Allergy,
    Concept,
    Condition,
    ConditionStage,
    Dosage,
    Immunization,
    MedicationUse,
    Observation,
    PatientInfo,
    Procedure,
    Quantity,
    Reaction,
    VolumeDose,
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
# mCODE's RadiotherapyDoseDeliveredToVolume (http://hl7.org/fhir/us/mcode/StructureDefinition/
# mcode-radiotherapy-dose-delivered-to-volume, STU2-STU4; CodeX Radiation Therapy reuses it): read by the
# end of its URL, as local profiles copy it under their own base.
RADIOTHERAPY_DOSE_SUFFIX = "radiotherapy-dose-delivered-to-volume"

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
    "WK": 1 / 7,
    "MO": 1 / 30,
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


def components(resource: Mapping[str, Any], parent: Observation) -> list[Observation]:
    """A panel's components (blood pressure 85354-9: systolic 8480-6, diastolic 8462-4), each read as a
    result of its own code: the parent's reference, status and date; its own value, ranges and
    dataAbsentReason (a component holds them under the same names as an Observation)."""
    found: list[Observation] = []
    for item in arr(resource.get("component")):
        m = obj(item)
        code = concept(m.get("code")) if m is not None else None
        if m is None or code is None:
            continue
        found.append(new_observation(parent.ref, parent.status, code, parent.when, parent.sort_key, m))
    return found


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


# Final: a C static in the compiled build, not a look-up in the module's dict per call.
_RAW_CONCEPT_MEMO_MAX: Final = 8192
_raw_concept_memo: Final[dict[bytes, Concept | None]] = {}


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
    status_field = resource.status
    status: str | None = status_field if type(status_field) is str else s(status_field)
    return new_observation(
        ref, status.lower() if status else None, code, parse_fhir_date(when_text), when_text or "", resource
    )


def latest_date(*dates: FhirDate | None) -> FhirDate | None:
    """The latest of the dates given (by the last day each can mean), or None."""
    found: FhirDate | None = None
    for d in dates:
        if d is not None and (found is None or d.latest_day() > found.latest_day()):
            found = d
    return found


# UCUM units of an Age (FHIR R4 age units): how to step a date forward by one of each.
_AGE_MONTHS = {"a": 12.0, "mo": 1.0}
_AGE_DAYS = {"wk": 7.0, "d": 1.0, "h": 1 / 24, "min": 1 / 1440}


def date_at_age(birth: FhirDate | None, age: object) -> FhirDate | None:
    """The day an Age (``onsetAge``, a bound of ``onsetRange``) was reached: the birthday it names, the
    earliest day it can mean. As precise as the birth date (a birth year gives a year)."""
    q = quantity(age)
    if birth is None or q is None or q.value < 0:
        return None
    unit = (q.unit or "").strip()
    if unit in ("y", "yr", "yrs", "year", "years"):
        unit = "a"
    try:
        if unit in _AGE_MONTHS:
            day = add_months(birth.day, round(q.value * _AGE_MONTHS[unit]))
        elif unit in _AGE_DAYS:
            day = date.fromordinal(birth.day.toordinal() + int(q.value * _AGE_DAYS[unit]))
        else:
            return None
    except (ValueError, OverflowError):
        return None
    text = day.isoformat()
    return FhirDate(
        day,
        birth.precision,
        text[:4] if birth.precision == "year" else text[:7] if birth.precision == "month" else text,
    )


_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ]
    )
    for name in names
}
_YEAR_IN_TEXT = re.compile(r"\b(1[89]\d\d|2\d\d\d)\b")
_MONTH_BEFORE_YEAR = re.compile(r"\b([a-z]{3,9})\.?\s+(?:\d{1,2}(?:st|nd|rd|th)?,?\s+)?(1[89]\d\d|2\d\d\d)\b", re.I)


def date_in_words(text: str | None) -> FhirDate | None:
    """What ``onsetString`` gives: a FHIR date written at its start ("2019-03", "2019-03-10"), else a
    month and year ("March 2019") or a year alone ("since 2019", "in 2019") as that month or year; words
    without a year ("childhood", "years ago") give no date."""
    if not text:
        return None
    written = parse_fhir_date(text)
    if written is not None:
        return written
    named = _MONTH_BEFORE_YEAR.search(text)
    if named and named.group(1).lower() in _MONTHS:
        month, year = _MONTHS[named.group(1).lower()], int(named.group(2))
        return FhirDate(date(year, month, 1), "month", f"{year:04d}-{month:02d}")
    year_only = _YEAR_IN_TEXT.search(text)
    if year_only:
        year = int(year_only.group(1))
        return FhirDate(date(year, 1, 1), "year", f"{year:04d}")
    return None


def onset(resource: Mapping[str, Any], birth: FhirDate | None) -> tuple[FhirDate | None, FhirDate | None]:
    """``onset[x]`` in every form, as (onset, its latest end): onsetDateTime; onsetPeriod (start, end);
    onsetAge and onsetRange (ages: the birthdays they name, from the birth date); onsetString (a date
    or year written in it, :func:`date_in_words`)."""
    when = parse_fhir_date(resource.get("onsetDateTime"))
    if when is not None:
        return when, when
    start, end = _period(resource.get("onsetPeriod"))
    if start is not None or end is not None:
        return start or end, end or start
    at_age = date_at_age(birth, resource.get("onsetAge"))
    if at_age is not None:
        return at_age, at_age
    rng = obj(resource.get("onsetRange"))
    if rng is not None:
        low, high = date_at_age(birth, rng.get("low")), date_at_age(birth, rng.get("high"))
        if low is not None or high is not None:
            return low or high, high or low
    worded = date_in_words(s(resource.get("onsetString")))
    return worded, worded


def condition(resource: Mapping[str, Any], birth: FhirDate | None = None) -> Condition | None:
    """``birth``: the patient's birth date, for an onset given as an age."""
    code = concept(resource.get("code"))
    if code is None:
        return None
    began, began_end = onset(resource, birth)
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
    recorded = parse_fhir_date(resource.get("recordedDate"))
    notes = [text for text in (s((obj(n) or {}).get("text")) for n in arr(resource.get("note"))) if text]
    return Condition(
        ref=ref_of(resource),
        code=code,
        clinical_status=status_code(resource.get("clinicalStatus")),
        verification_status=status_code(resource.get("verificationStatus")),
        onset=began,
        abatement=abatement,
        abated=abated,
        recorded=recorded,
        severity=concept(resource.get("severity")),
        morphology=tuple(morphology),
        latest=latest_date(began, began_end, recorded, abatement),
        notes=tuple(notes),
        stages=condition_stages(resource),
    )


def condition_stages(resource: Mapping[str, Any]) -> tuple[ConditionStage, ...]:
    """``Condition.stage``: each entry with a summary or cited staging Observations."""
    found: list[ConditionStage] = []
    for item in arr(resource.get("stage")):
        m = obj(item)
        if m is None:
            continue
        summary = concept(m.get("summary"))
        cited = reference_list(m.get("assessment"))
        if summary is not None or cited:
            found.append(ConditionStage(summary, concept(m.get("type")), cited))
    return tuple(found)


def reference_list(value: object) -> tuple[str, ...]:
    """The ``reference`` strings of a list of References, as written."""
    refs: list[str] = []
    for item in arr(value):
        m = obj(item)
        ref = s(m.get("reference")) if m is not None else None
        if ref:
            refs.append(ref)
    return tuple(refs)


def staging_context(resource: Mapping[str, Any]) -> tuple[Concept | None, tuple[str, ...], tuple[str, ...]]:
    """What ties a staging Observation to its assessment: ``method`` (the staging system and edition),
    ``hasMember`` (a panel's T, N and M) and ``focus`` (the cancer staged), read when a staging rule
    reads the Observation."""
    return concept(resource.get("method")), reference_list(resource.get("hasMember")), reference_list(
        resource.get("focus")
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


_DURATION_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0}


def timing_dates(dosage_value: object) -> tuple[FhirDate | None, FhirDate | None]:
    """The first and last day a dosage's timing states: ``timing.event`` and ``timing.repeat.bounds[x]``
    (boundsPeriod, or boundsDuration counted from the period's start or the first event)."""
    m = obj(dosage_value)
    timing = obj(m.get("timing")) if m is not None else None
    if timing is None:
        return None, None
    events = [d for d in (parse_fhir_date(e) for e in arr(timing.get("event"))) if d is not None]
    first = min(events, key=lambda d: d.day) if events else None
    last = latest_date(*events)
    repeat = obj(timing.get("repeat"))
    if repeat is not None:
        start, end = _period(repeat.get("boundsPeriod"))
        first = start or first
        last = latest_date(last, start, end)
        duration = obj(repeat.get("boundsDuration"))
        length = num(duration.get("value")) if duration is not None else None
        unit = (s(duration.get("code")) or s(duration.get("unit"))) if duration is not None else None
        if end is None and first is not None and length is not None and unit in _DURATION_DAYS and length >= 0:
            try:
                day = date.fromordinal(first.day.toordinal() + int(length * _DURATION_DAYS[unit]))
            except (ValueError, OverflowError):
                day = None
            if day is not None:
                last = latest_date(last, FhirDate(day, "day", day.isoformat()))
    return first, last


def medication_use(resource: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> MedicationUse | None:
    rtype = resource.get("resourceType")
    med = medication_concept(resource, medications)
    if med is None:
        return None
    status = s(resource.get("status"))
    start: FhirDate | None = None
    end: FhirDate | None = None
    point = False
    own: list[FhirDate | None] = []
    if rtype == "MedicationRequest":
        dosages_raw = arr(resource.get("dosageInstruction"))
        dispense = obj(resource.get("dispenseRequest")) or {}
        start, end = _period(dispense.get("validityPeriod"))
        authored = parse_fhir_date(resource.get("authoredOn"))
        own += [start, end, authored]
        if start is None:
            start = authored
            point = end is None
    else:
        dosages_raw = arr(resource.get("dosage")) if rtype == "MedicationStatement" else [resource.get("dosage")]
        eff = parse_fhir_date(resource.get("effectiveDateTime"))
        if eff is not None:
            start, point = eff, True
        else:
            start, end = _period(resource.get("effectivePeriod"))
        # A statement's dateAsserted: when someone last said the patient takes it.
        own += [start, end, parse_fhir_date(resource.get("dateAsserted"))]
    # The dosage's own bounds say when an order without an end of its own stops, and how late it was
    # still meant to be taken.
    bounds = [timing_dates(x) for x in dosages_raw]
    bounded_end = latest_date(*(last for _, last in bounds))
    if end is None and bounded_end is not None and all(last is not None for _, last in bounds):
        end, point = bounded_end, False
        if start is None:
            start = min((first for first, _ in bounds if first is not None), key=lambda d: d.day, default=None)
    own += [first for first, _ in bounds] + [last for _, last in bounds]
    dosages = tuple(d for d in (dosage(x) for x in dosages_raw) if d is not None)
    reasons, reason_refs = _reasons(resource)
    return MedicationUse(
        ref=ref_of(resource),
        resource_type=str(rtype),
        status=status.lower() if status else None,
        medication=med,
        start=start,
        end=end,
        dosages=dosages,
        point_in_time=point,
        latest=latest_date(*own),
        reasons=reasons,
        reason_refs=reason_refs,
    )


def _reasons(resource: Mapping[str, Any]) -> tuple[tuple[Concept, ...], tuple[str, ...]]:
    """Why a drug is taken: R4 ``reasonCode`` and ``reasonReference``; R5 ``reason`` (CodeableReference)."""
    codes = [concept(x) for x in arr(resource.get("reasonCode"))]
    refs = [s((obj(x) or {}).get("reference")) for x in arr(resource.get("reasonReference"))]
    for item in arr(resource.get("reason")):
        m = obj(item) or {}
        codes.append(concept(m.get("concept")))
        refs.append(s((obj(m.get("reference")) or {}).get("reference")))
    return tuple(c for c in codes if c is not None), tuple(r for r in refs if r)


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
        doses=_volume_doses(resource.get("extension")),
    )


def _volume_doses(extensions: object) -> tuple[VolumeDose, ...]:
    """Each dose-delivered-to-volume extension with a ``totalDoseDelivered`` quantity; one without is
    skipped (its dose is not recorded)."""
    doses: list[VolumeDose] = []
    for item in arr(extensions):
        ext = obj(item)
        url = s(ext.get("url")) if ext is not None else None
        if ext is None or url is None or not url.endswith(RADIOTHERAPY_DOSE_SUFFIX):
            continue
        volume: str | None = None
        dose: Quantity | None = None
        for part_item in arr(ext.get("extension")):
            part = obj(part_item)
            if part is None:
                continue
            name = s(part.get("url"))
            if name == "volume":
                volume = s((obj(part.get("valueReference")) or {}).get("reference"))
            elif name == "totalDoseDelivered":
                dose = quantity(part.get("valueQuantity"))
        if dose is not None:
            doses.append(VolumeDose(volume=volume, dose=dose))
    return tuple(doses)


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
