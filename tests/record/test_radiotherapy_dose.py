"""The dose a radiotherapy Procedure records (mCODE RadiotherapyDoseDeliveredToVolume), read leniently: an
extension of another shape costs that dose only, never the Procedure."""

from __future__ import annotations

from typing import Any

import orjson
from fhir_builders import MCODE_DOSE_TO_VOLUME, dose_delivered, patient, procedure

from cds.fhir.decoding import decode_resource
from cds.record import PatientRecord
from cds.record.model import Procedure, Quantity, VolumeDose

COURSE = ("1217123003", "Radiotherapy course of treatment (regime/therapy)")


def read(proc: dict[str, Any]) -> Procedure:
    (found,) = PatientRecord.from_resources([patient(), proc]).procedures
    return found


def test_each_volume_dose_is_read_with_its_volume_and_unit() -> None:
    proc = dose_delivered(dose_delivered(procedure(*COURSE, "2022-01-10"), 7000, "cGy", "BodyStructure/gtv"), 60, "Gy")
    assert read(proc).doses == (
        VolumeDose(volume="BodyStructure/gtv", dose=Quantity(value=7000, unit="cGy")),
        VolumeDose(volume=None, dose=Quantity(value=60, unit="Gy")),
    )


def test_a_dose_extension_copied_under_a_local_profile_url_is_read() -> None:
    proc = dose_delivered(procedure(*COURSE, "2022-01-10"), 7000)
    proc["extension"][0]["url"] = "http://example.org/fhir/StructureDefinition/radiotherapy-dose-delivered-to-volume"
    assert [d.dose.value for d in read(proc).doses] == [7000]


def test_extensions_of_another_shape_are_skipped_and_the_procedure_kept() -> None:
    proc = procedure(*COURSE, "2022-01-10")
    proc["extension"] = [
        "not an extension",
        {"url": MCODE_DOSE_TO_VOLUME},
        {"url": MCODE_DOSE_TO_VOLUME, "extension": [{"url": "totalDoseDelivered", "valueQuantity": {"unit": "cGy"}}]},
        {"url": MCODE_DOSE_TO_VOLUME, "extension": ["x", {"url": "fractionsDelivered", "valueUnsignedInt": 30}]},
        {
            "url": "http://example.org/other",
            "extension": [{"url": "totalDoseDelivered", "valueQuantity": {"value": 1}}],
        },
    ]
    found = read(proc)
    assert found.code.label() == COURSE[1]
    assert found.doses == ()


def test_lean_decoding_reads_the_same_doses() -> None:
    proc = dose_delivered(procedure(*COURSE, "2022-01-10"), 7000, "cGy", "BodyStructure/gtv")
    lean = decode_resource(orjson.dumps(proc))
    assert lean is not None
    assert PatientRecord.from_resources([patient(), lean]).procedures[0].doses == read(proc).doses
