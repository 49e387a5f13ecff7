"""Plasma EBV DNA load as a lab (issue 16): LOINC 47982-4 in copies/mL as labs write it, the IU/mL code
(43730-1) that does not convert without the assay's factor, and a load below the assay's range. Read through
NCT05622474's "EBV DNA >= 4000 copies/mL", the other branch of that criterion (nodal features on imaging)
ruled out by an N0 staging so that the EBV DNA result alone decides."""

from typing import Any

import pytest
from engine_support import NOW
from fhir_builders import SNOMED, patient, qty_obs, staging_obs

from cds.assessment import CriterionAssessment
from cds.engine import evaluate
from cds.portfolio import default_trials
from cds.record import PatientRecord
from cds.units import conversion_factor

COPIES = ("47982-4", "Epstein Barr virus DNA [#/volume] (viral load) in Serum or Plasma by NAA with probe detection")
IU = ("43730-1", "Epstein Barr virus DNA [Units/volume] (viral load) in Serum or Plasma by NAA with probe detection")
CN0 = (SNOMED, "1229967007", "American Joint Committee on Cancer cN0 (qualifier value)")


def ebv(code: tuple[str, str], value: float, unit: str, comparator: str | None = None) -> dict[str, Any]:
    """A load as labs send it: the unit as written, without a UCUM code."""
    return qty_obs(code[0], code[1], value, unit, date="2026-10-20", ucum_code=False, comparator=comparator)


def high_risk(*resources: dict[str, Any]) -> CriterionAssessment:
    record = PatientRecord.from_resources([patient(), staging_obs("N", CN0, "2026-10-12"), *resources])
    assessment = evaluate(default_trials()["nct05622474"], record, NOW)
    return next(c for c in assessment.criteria if c.id == "inc_high_risk_feature")


@pytest.mark.parametrize("unit", ["copies/mL", "copies/ml", "{copies}/mL", "cp/mL"])
def test_a_load_in_copies_is_read_however_the_lab_spells_the_unit(unit: str) -> None:
    result = high_risk(ebv(COPIES, 5200, unit))
    assert result.status == "met"
    assert "5200 copies/mL" in result.reason


def test_a_load_below_4000_copies_is_not_a_high_risk_feature() -> None:
    assert high_risk(ebv(COPIES, 3999, "copies/mL")).status == "not_met"


def test_a_load_below_the_assays_range_decides_a_high_threshold() -> None:
    assert high_risk(ebv(COPIES, 500, "copies/mL", comparator="<")).status == "not_met"


def test_a_load_in_iu_is_to_confirm_not_converted_to_copies() -> None:
    result = high_risk(ebv(IU, 9000, "IU/mL"))
    assert result.status == "unknown"
    assert "does not convert" in result.reason


def test_no_load_is_to_confirm() -> None:
    result = high_risk()
    assert result.status == "unknown"
    assert "Plasma EBV DNA" in " ".join(result.missing)


def test_international_units_never_convert_to_copies() -> None:
    assert conversion_factor("[IU]/mL", "{copies}/mL") is None
    assert conversion_factor("copies/mL", "{copies}/mL") == 1.0
