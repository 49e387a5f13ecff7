"""cds.fhir.check: which searches a FHIR server declares, from a canned CapabilityStatement."""

from __future__ import annotations

from typing import Any

import pytest

from cds.fhir.check import CapabilityError, all_supported, check_capabilities, needs_of, render_table

TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "condition": "Condition?patient={{context.patientId}}",
    "observation": "Observation?patient={{context.patientId}}&code:in=http://example.org/vs&_count=1",
    "procedure": "Procedure?patient={{context.patientId}}",
    "immunization": "Immunization?patient={{context.patientId}}",
}


def capability(**overrides: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "searchParam": [{"name": "_id", "type": "token"}],
                "resource": [
                    {"type": "Patient", "interaction": [{"code": "read"}, {"code": "search-type"}]},
                    {
                        "type": "Condition",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [{"name": "patient", "type": "reference"}],
                    },
                    {
                        "type": "Observation",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [
                            {"name": "patient", "type": "reference"},
                            {"name": "code", "type": "token"},
                        ],
                    },
                    {
                        # Declares only `subject`, as some servers do.
                        "type": "Procedure",
                        "interaction": [{"code": "search-type"}],
                        "searchParam": [{"name": "subject", "type": "reference"}],
                    },
                ],
            }
        ],
    }
    statement.update(overrides)
    return statement


def table(rows: list[Any]) -> dict[tuple[str, str], str]:
    return {(r.resource_type, r.capability): r.supported for r in rows}


def test_needs_of_templates() -> None:
    needs = {n.key: n for n in needs_of(TEMPLATES)}
    assert needs["patient"].read and needs["patient"].resource_type == "Patient"
    assert needs["condition"].search_params == ("patient",)
    # modifiers stripped, result parameters (_count) not a per-resource capability
    assert needs["observation"].search_params == ("patient", "code")


def test_rows_for_a_canned_capability_statement() -> None:
    rows = check_capabilities(capability(), TEMPLATES)
    got = table(rows)
    assert got[("(server)", "fhirVersion")] == "yes"
    assert got[("(server)", "transaction")] == "yes"
    assert got[("Patient", "read")] == "yes"
    assert got[("Condition", "search-type")] == "yes"
    assert got[("Condition", "patient")] == "yes"
    assert got[("Observation", "patient")] == "yes"
    assert got[("Observation", "code")] == "yes"
    assert got[("Procedure", "search-type")] == "yes"
    assert got[("Procedure", "patient")] == "no"
    assert got[("Immunization", "search-type")] == "no"  # type not declared at all
    procedure = next(r for r in rows if (r.resource_type, r.capability) == ("Procedure", "patient"))
    assert "subject" in procedure.note
    assert not all_supported(rows)


def test_everything_declared_is_all_supported() -> None:
    templates = {k: v for k, v in TEMPLATES.items() if k in ("patient", "condition", "observation")}
    assert all_supported(check_capabilities(capability(), templates))


def test_other_fhir_version_and_no_transaction() -> None:
    statement = capability(fhirVersion="5.0.0")
    statement["rest"][0]["interaction"] = []
    got = table(check_capabilities(statement, {"patient": "Patient/{{context.patientId}}"}))
    assert got[("(server)", "fhirVersion")] == "no"
    assert got[("(server)", "transaction")] == "no"


def test_not_a_capability_statement() -> None:
    with pytest.raises(CapabilityError):
        check_capabilities({"resourceType": "OperationOutcome"}, TEMPLATES)


def test_render_table() -> None:
    text = render_table(check_capabilities(capability(), TEMPLATES))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["Resource", "type", "Needs"]
    assert any(line.startswith("Procedure") and " no " in line for line in lines)
