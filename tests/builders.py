"""Small builders of realistic FHIR R4 JSON for engine tests. They write what an EHR writes; the tests
say which field they are about."""

from __future__ import annotations

from itertools import count
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
UCUM = "http://unitsofmeasure.org"
PID = "pt-1"
_ids = count(1)


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def patient(gender: str = "male", birth_date: str = "1974-05-10", pid: str = PID) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": birth_date}


def lab(
    loinc: str,
    display: str,
    value: float,
    unit: str,
    date: str,
    *,
    low: float | None = None,
    high: float | None = None,
    status: str = "final",
    comparator: str | None = None,
    range_unit: str | None = None,
) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    if comparator:
        quantity["comparator"] = comparator
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id("obs"),
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}]},
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": date,
        "valueQuantity": quantity,
    }
    if low is not None or high is not None:
        rng: dict[str, Any] = {}
        ru = range_unit or unit
        if low is not None:
            rng["low"] = {"value": low, "unit": ru, "system": UCUM, "code": ru}
        if high is not None:
            rng["high"] = {"value": high, "unit": ru, "system": UCUM, "code": ru}
        obs["referenceRange"] = [rng]
    return obs


def coded_obs(
    loinc: str,
    display: str,
    date: str,
    *,
    value_code: tuple[str, str, str] | None = None,
    value_int: int | None = None,
    value_string: str | None = None,
    status: str = "final",
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id("obs"),
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}]},
        "subject": {"reference": f"Patient/{PID}"},
        "effectiveDateTime": date,
    }
    if value_code is not None:
        system, code, disp = value_code
        obs["valueCodeableConcept"] = {
            "coding": [{"system": system, "code": code, "display": disp}],
            "text": disp,
        }
    if value_int is not None:
        obs["valueInteger"] = value_int
    if value_string is not None:
        obs["valueString"] = value_string
    return obs


def condition(
    code: str,
    display: str,
    *,
    system: str = ICD10,
    onset: str | None = "2026-09-15",
    clinical: str = "active",
    verification: str = "confirmed",
    abatement: str | None = None,
    severity: tuple[str, str] | None = None,
    extension: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": _id("cond"),
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]
        },
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{PID}"},
    }
    if onset:
        res["onsetDateTime"] = onset
    if abatement:
        res["abatementDateTime"] = abatement
    if severity:
        res["severity"] = {"coding": [{"system": SNOMED, "code": severity[0], "display": severity[1]}]}
    if extension:
        res["extension"] = extension
    return res


def med_statement(
    code: str | None,
    display: str,
    *,
    status: str = "active",
    start: str | None = "2026-10-20",
    end: str | None = None,
    effective: str | None = None,
    route: tuple[str, str] | None = None,
    dose_mg: float | None = None,
    dose_unit: str = "mg",
    per_day: int | None = None,
    system: str = RXNORM,
) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": display}
    if code:
        concept["coding"] = [{"system": system, "code": code, "display": display}]
    res: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": _id("ms"),
        "status": status,
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{PID}"},
    }
    if effective:
        res["effectiveDateTime"] = effective
    elif start or end:
        res["effectivePeriod"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    dosage: dict[str, Any] = {}
    if route:
        dosage["route"] = {"coding": [{"system": SNOMED, "code": route[0], "display": route[1]}]}
    if dose_mg is not None:
        dosage["doseAndRate"] = [
            {"doseQuantity": {"value": dose_mg, "unit": dose_unit, "system": UCUM, "code": dose_unit}}
        ]
    if per_day is not None:
        dosage["timing"] = {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}}
    if dosage:
        res["dosage"] = [dosage]
    return res


def procedure(
    code: str,
    display: str,
    date: str | None,
    *,
    end: str | None = None,
    status: str = "completed",
    category: tuple[str, str] | None = None,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": _id("proc"),
        "status": status,
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{PID}"},
    }
    if date and end:
        res["performedPeriod"] = {"start": date, "end": end}
    elif date:
        res["performedDateTime"] = date
    if category:
        res["category"] = {"coding": [{"system": SNOMED, "code": category[0], "display": category[1]}]}
    return res


def immunization(cvx: str, display: str, date: str | None, status: str = "completed") -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Immunization",
        "id": _id("imm"),
        "status": status,
        "vaccineCode": {"coding": [{"system": CVX, "code": cvx, "display": display}]},
        "patient": {"reference": f"Patient/{PID}"},
    }
    if date:
        res["occurrenceDateTime"] = date
    return res


def allergy(
    display: str, *, code: str | None = None, criticality: str | None = None, severity: str | None = None
) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": display}
    if code:
        concept["coding"] = [{"system": RXNORM, "code": code, "display": display}]
    res: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": _id("alg"),
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }
            ]
        },
        "code": concept,
        "patient": {"reference": f"Patient/{PID}"},
    }
    if criticality:
        res["criticality"] = criticality
    if severity:
        res["reaction"] = [{"manifestation": [{"text": "anaphylaxis"}], "severity": severity}]
    return res


def med_request(
    code: str | None,
    display: str,
    *,
    status: str = "active",
    authored: str | None = "2026-10-20",
    system: str = RXNORM,
    route: tuple[str, str] | None = None,
    bounds: tuple[str | None, str | None] | None = None,
) -> dict[str, Any]:
    """A MedicationRequest (an order), as EHRs and Synthea write them: authoredOn, often no end."""
    concept: dict[str, Any] = {"text": display}
    if code:
        concept["coding"] = [{"system": system, "code": code, "display": display}]
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": _id("mr"),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{PID}"},
    }
    if authored:
        res["authoredOn"] = authored
    instruction: dict[str, Any] = {}
    if route:
        instruction["route"] = {"coding": [{"system": SNOMED, "code": route[0], "display": route[1]}]}
    if bounds:
        period = {k: v for k, v in (("start", bounds[0]), ("end", bounds[1])) if v}
        instruction["timing"] = {"repeat": {"boundsPeriod": period, "frequency": 1, "period": 1, "periodUnit": "d"}}
    if instruction:
        res["dosageInstruction"] = [instruction]
    return res


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    """A collection Bundle of the resources, as an export or a FHIR server search writes one."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r} for r in resources],
    }
