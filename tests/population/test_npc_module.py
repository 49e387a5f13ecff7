"""The nasopharyngeal carcinoma module of the test population (scripts/synthea/npc_module.py writes
scripts/synthea/modules/nasopharyngeal_carcinoma.json): written as built, anchored to the population's
reference date, realistic in incidence unless overridden, and coded so that the trial's value sets read it.
No population needed: these read the module file."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from npc_module_codes import (
    MODULE,
    MUST_NOT_MATCH,
    NOT_READ,
    POPULATION_SCRIPT,
    READ_BY,
    SYNTHEA_SYSTEMS,
    b,
    flexporter_icd10_codes,
    key,
    module_codes,
    read_module,
)

from cds.valuesets import ValueSetLibrary, default_library

ICD10CM = SYNTHEA_SYSTEMS["ICD10-CM"]


@pytest.fixture(scope="module")
def lib() -> ValueSetLibrary:
    return default_library()


def matches(lib: ValueSetLibrary, name: str, system: str, code: str) -> bool:
    return lib[name].match_code(lib.aliases.canonical(system), code) is not None


def test_the_committed_module_is_the_one_the_builder_writes() -> None:
    assert MODULE.read_text() == b.render(), "run python3 scripts/synthea/npc_module.py"


def test_every_transition_leads_to_a_state_of_the_module() -> None:
    states = read_module()["states"]
    targets = [
        (name, t)
        for name, s in states.items()
        for t in [s.get("direct_transition")]
        + [x["transition"] for x in s.get("distributed_transition", []) + s.get("conditional_transition", [])]
        if t is not None
    ]
    assert [(name, t) for name, t in targets if t not in states] == []
    ends = {"Terminal"}
    assert [
        n for n, s in states.items() if s["type"] not in ends and not any(k.endswith("transition") for k in s)
    ] == []


def test_the_module_is_anchored_to_the_population_reference_date() -> None:
    found = re.search(r"^REFERENCE_DATE=(\d{4})(\d{2})(\d{2})", POPULATION_SCRIPT.read_text(), re.MULTILINE)
    assert found, "no REFERENCE_DATE in scripts/synthea-population"
    reference = date(*map(int, found.groups()))
    assert reference == date(*b.REFERENCE_DATE)
    screening = date(*b.ANCHORS["screening"])
    # A Guard is checked once per 7-day step, and the visit follows at once (no Delay): it falls in the week
    # from the anchor, within the last 14 days (the albumin window) and before the simulation ends.
    assert reference - timedelta(days=14) <= screening
    assert screening + timedelta(days=7) < reference
    # Ten years of history are exported: the risk is drawn inside them.
    assert date(*b.ANCHORS["risk"]) >= reference.replace(year=reference.year - 10)


def test_the_module_keeps_a_realistic_incidence() -> None:
    risk = read_module()["states"]["Risk"]["distributed_transition"]
    assert risk[0]["transition"] == "Course" and risk[0]["distribution"] < 0.001


def test_every_code_the_module_writes_is_classified() -> None:
    unclassified = {
        (name, code["system"], code["code"])
        for name, code in module_codes(read_module())
        if key(code) not in READ_BY and key(code) not in NOT_READ
    }
    assert unclassified == set()


def test_every_code_the_trial_reads_is_in_its_value_sets(lib: ValueSetLibrary) -> None:
    missing = [
        (system, code, name)
        for (system, code), names in READ_BY.items()
        for name in names
        if not matches(lib, name, system, code)
    ]
    assert missing == []


def test_no_code_of_the_module_would_rule_an_npc_patient_out_by_mistake(lib: ValueSetLibrary) -> None:
    wrong = [
        (system, code, name)
        for system, code in list(READ_BY) + list(NOT_READ)
        for name in MUST_NOT_MATCH
        if matches(lib, name, system, code)
    ]
    wrong += [
        (ICD10CM, code, name)
        for code in flexporter_icd10_codes()
        for name in MUST_NOT_MATCH
        if matches(lib, name, ICD10CM, code)
    ]
    assert wrong == []


def test_m0_and_the_other_stage_groups_are_not_read_as_m1_or_ivb(lib: ValueSetLibrary) -> None:
    assert not matches(lib, "m1-values", *key(b.M0))
    assert not any(matches(lib, "stage-ivb", *key(v)) for k, v in b.STAGE.items() if k != "IVB")


def test_the_icd10_codings_the_flexporter_adds_are_npc_and_distant_metastases(lib: ValueSetLibrary) -> None:
    codes = flexporter_icd10_codes()
    assert "C11.9" in codes and "C78.7" in codes
    assert matches(lib, "cond-npc", ICD10CM, "C11.9")
    assert matches(lib, "cond-liver-metastasis", ICD10CM, "C78.7")
    assert [c for c in codes if c != "C11.9" and not matches(lib, "cond-distant-metastasis", ICD10CM, c)] == []
