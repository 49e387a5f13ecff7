"""The nasopharyngeal carcinoma patients of the Synthea population (our module, scripts/synthea/npc_module.py,
with the incidence raised for the test population): they are there, the bundled trial finds among them
patients likely eligible, to review and not eligible, and everything the module wrote reaches the engine
as codes its value sets read. Skips without the population, as the other population tests do."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from npc_module_codes import NOT_READ, READ_BY, b, key, module_codes, read_module
from synthea_population import Screened

from cds.assessment import Verdict
from cds.valuesets import ValueSetLibrary, default_library

pytestmark = pytest.mark.population

TRIAL_ID = "npc-liver-mets-ldrt"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
AJCC_8TH = "897275008"
STAGING = {b.T_CATEGORY["code"], b.N_CATEGORY["code"], b.M_CATEGORY["code"], b.STAGE_GROUP["code"]}


@pytest.fixture(scope="module")
def lib() -> ValueSetLibrary:
    return default_library()


@pytest.fixture(scope="module")
def npc_patients(screened: list[Screened], lib: ValueSetLibrary) -> list[tuple[Screened, list[dict[str, Any]]]]:
    """The patients with a nasopharyngeal carcinoma Condition, with their resources."""
    out = []
    for s in screened:
        resources = [e["resource"] for e in orjson.loads(s.path.read_bytes()).get("entry", [])]
        if any(r["resourceType"] == "Condition" and in_set(lib, "cond-npc", r.get("code")) for r in resources):
            out.append((s, resources))
    return out


def in_set(lib: ValueSetLibrary, name: str, concept: dict[str, Any] | None) -> bool:
    return any(
        lib[name].match_code(lib.aliases.canonical(c.get("system", "")), c.get("code", "")) is not None
        for c in (concept or {}).get("coding", [])
    )


def codings(resource: dict[str, Any]) -> Iterator[dict[str, str]]:
    for field in ("code", "valueCodeableConcept", "medicationCodeableConcept"):
        yield from resource.get(field, {}).get("coding", [])


def test_the_population_holds_some_forty_npc_patients(
    npc_patients: list[tuple[Screened, list[dict[str, Any]]]],
) -> None:
    assert 20 <= len(npc_patients) <= 80, len(npc_patients)


def test_the_bundled_trial_finds_each_verdict_among_them(
    npc_patients: list[tuple[Screened, list[dict[str, Any]]]],
) -> None:
    verdicts = Counter(s.assessments[TRIAL_ID].verdict for s, _ in npc_patients)
    for verdict in (Verdict.LIKELY_ELIGIBLE, Verdict.NEEDS_REVIEW, Verdict.NOT_ELIGIBLE):
        assert verdicts[verdict] > 0, f"no NPC patient {verdict.value}: {dict(verdicts)}"


def test_no_one_without_npc_is_a_candidate_for_the_bundled_trial(
    screened: list[Screened], npc_patients: list[tuple[Screened, list[dict[str, Any]]]]
) -> None:
    npc = {s.path for s, _ in npc_patients}
    candidates = [
        s.path.name
        for s in screened
        if s.path not in npc and s.assessments[TRIAL_ID].verdict is not Verdict.NOT_ELIGIBLE
    ]
    assert candidates == []


def test_every_code_the_module_wrote_is_one_the_engine_reads(
    npc_patients: list[tuple[Screened, list[dict[str, Any]]]], lib: ValueSetLibrary
) -> None:
    """As exported (system URIs, the Flexporter's additions): each code of the module is matched by the value
    sets the trial reads it through, and none reaches the record under a system the tests do not know."""
    module = {code["code"] for _, code in module_codes(read_module())}
    unread: set[tuple[str, str, str]] = set()
    unknown: set[tuple[str, str]] = set()
    for _, resources in npc_patients:
        for r in resources:
            for c in codings(r):
                system, code = c.get("system", ""), c.get("code", "")
                if code not in module:
                    continue
                if (system, code) in NOT_READ:
                    continue
                names = READ_BY.get((system, code))
                if names is None:
                    unknown.add((system, code))
                    continue
                canonical = lib.aliases.canonical(system)
                unread |= {(system, code, n) for n in names if lib[n].match_code(canonical, code) is None}
    assert unknown == set()
    assert unread == set()


def test_npc_and_metastasis_conditions_carry_snomed_and_icd10(
    npc_patients: list[tuple[Screened, list[dict[str, Any]]]], lib: ValueSetLibrary
) -> None:
    """Except the diagnosis the module codes in ICD-10-CM alone (the histology still to come)."""
    icd_only = key(b.NPC_ICD10)
    lacking = []
    for s, resources in npc_patients:
        for r in resources:
            if r["resourceType"] != "Condition":
                continue
            if not (in_set(lib, "cond-npc", r["code"]) or in_set(lib, "cond-distant-metastasis", r["code"])):
                continue
            systems = {c["system"] for c in r["code"]["coding"]}
            if (r["code"]["coding"][0]["system"], r["code"]["coding"][0]["code"]) != icd_only and systems != {
                SNOMED,
                "http://hl7.org/fhir/sid/icd-10-cm",
            }:
                lacking.append((s.path.name, r["code"]["coding"]))
    assert lacking == []


def test_staging_states_its_system_and_the_data_of_the_registry_trials_is_there(
    npc_patients: list[tuple[Screened, list[dict[str, Any]]]],
) -> None:
    found: Counter[str] = Counter()
    without_method = []
    for s, resources in npc_patients:
        for r in resources:
            if r["resourceType"] != "Observation":
                continue
            code = r["code"]["coding"][0]["code"]
            found[code] += 1
            if code in STAGING and [c["code"] for c in r.get("method", {}).get("coding", [])] != [AJCC_8TH]:
                without_method.append((s.path.name, code))
    assert without_method == []
    for needed in (
        *STAGING,
        b.KARNOFSKY["code"],
        b.ECOG["code"],
        b.EBV_DNA["code"],
        b.WBC[0]["code"],
        b.ALP[0]["code"],
    ):
        assert found[needed] > 0, needed


def test_a_local_recurrence_is_recorded_as_one(npc_patients: list[tuple[Screened, list[dict[str, Any]]]]) -> None:
    recurrences = [
        r
        for _, resources in npc_patients
        for r in resources
        if r["resourceType"] == "Condition" and r["code"]["coding"][0]["code"] == b.NPC_RECURRENCE["code"]
    ]
    assert recurrences
    for r in recurrences:
        assert r["clinicalStatus"]["coding"][0]["code"] == "recurrence"
        assert r["code"]["text"] == "Locally recurrent nasopharyngeal carcinoma"
