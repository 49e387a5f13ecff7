#!/usr/bin/env python3
"""Writes scripts/synthea/modules/nasopharyngeal_carcinoma.json, the Synthea Generic Module Framework
module of nasopharyngeal carcinoma (NPC) the test population is generated with (scripts/synthea-population).

    python3 scripts/synthea/npc_module.py          write the module
    python3 scripts/synthea/npc_module.py --check  exit 1 when the written module is not what this builds

The module is built here rather than written by hand: it is several hundred states, most of them lab panels
and staging Observations that differ only in their values, and a builder keeps each course of the disease
readable as a list of steps. docs/synthea-population.md says what each course is for; the codes come from the
project's value sets (fhir_mappings/valuesets), and the few that are not there say so in CODES_UNVERIFIED.

Timing. Synthea simulates each life up to the population's reference date (2026-11-01, scripts/synthea-population)
and a trial is screened on that day, so a patient is a candidate only if the disease is at the right point
then: metastatic, untreated, with an ECOG score and labs of the last two weeks. A module driven by age alone
would put almost nobody there. Each course therefore waits (Guard on Date) for a date set relative to the
reference date — ANCHORS below — and then unrolls with realistic delays. Moving the reference date means
moving the anchors (tests/population/test_npc_module.py checks that they agree).

Incidence. Whether a person gets NPC at all is decided once, at the first anchor, for adults of 18 to 62:
INCIDENCE is realistic (NPC is rare outside southern China: about 0.5 per 100,000 a year in the United
States). The test population raises it through Synthea's module_override
(scripts/synthea/module-overrides.properties), so that a population of a few hundred holds some forty NPC
patients, and nobody else's population does."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "modules" / "nasopharyngeal_carcinoma.json"

# The share of adults 18-62 on 2017-01-01 who get NPC within the following ten years: ~0.5/100,000 a year,
# ten years. The test population overrides it (module-overrides.properties).
INCIDENCE = 0.00005

REFERENCE_DATE = (2026, 11, 1)  # the population's reference date (scripts/synthea-population REFERENCE_DATE)
ANCHORS = {
    # When the risk is drawn: ten years before the reference date (the export keeps ten years of history).
    "risk": (2017, 1, 1),
    # Courses with years of history start their first treatment between these dates.
    "history_early": (2020, 1, 1),
    "history_late": (2022, 6, 1),
    # Diagnosis of the newly diagnosed, 5 to 7 weeks before the reference date.
    "diagnosis": (2026, 9, 14),
    # The screening visit (ECOG, Karnofsky, labs): within the last 14 days, as the trials' windows ask
    # (albumin 14 days, most labs 28 days). A Guard is checked once per 7-day time step, so the visit falls
    # in the week from the anchor; no Delay follows it (a Delay ends at a later step, maybe after the end).
    "screening": (2026, 10, 19),
}

Code = dict[str, str]


def snomed(code: str, display: str) -> Code:
    return {"system": "SNOMED-CT", "code": code, "display": display}


def loinc(code: str, display: str) -> Code:
    return {"system": "LOINC", "code": code, "display": display}


def rxnorm(code: str, display: str) -> Code:
    return {"system": "RxNorm", "code": code, "display": display}


def icd10cm(code: str, display: str) -> Code:
    return {"system": "ICD10-CM", "code": code, "display": display}  # Synthea writes http://hl7.org/fhir/sid/icd-10-cm


ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"  # Synthea passes a system it does not know through as is


def icdo3(code: str, display: str) -> Code:
    return {"system": ICDO3, "code": code, "display": display}


# ------------------------------------------------------------------------------------------------------
# Codes. Every one is in a value set of fhir_mappings/valuesets (named), unless in CODES_UNVERIFIED.

ENCOUNTER_PROBLEM = snomed("185347001", "Encounter for problem (procedure)")  # Synthea's own encounter code

# Diagnoses (cond-npc; the histology-bearing ones also in histology-npc-*). The NPC Conditions are written
# with SNOMED CT, and scripts/synthea/flexporter.yaml adds the ICD-10-CM coding (C11.9) as EHR exports do;
# one course is coded in ICD-10-CM only ("histology pending").
NPC_NONKERATINIZING = snomed("1259470002", "Primary nonkeratinizing carcinoma of the nasopharynx (disorder)")
NPC_UNDIFFERENTIATED = snomed("1259509002", "Primary undifferentiated carcinoma of nasopharynx (disorder)")
NPC_KERATINIZING = snomed("1259445002", "Primary keratinizing squamous cell carcinoma of nasopharynx (disorder)")
NPC_ICD10 = icd10cm("C11.9", "Malignant neoplasm of nasopharynx, unspecified")
# A local recurrence: no code says "recurrent" (cond-npc-local-recurrence notes). The recurrence is a new
# Condition with this histology-neutral code, and the flexporter gives it clinicalStatus "recurrence" and
# the text "Locally recurrent nasopharyngeal carcinoma" (text-local-recurrence); nothing else uses this code.
NPC_RECURRENCE = snomed("449248000", "Nasopharyngeal carcinoma (disorder)")

# Distant metastases (cond-distant-metastasis; liver also cond-liver-metastasis). ICD-10-CM added by the
# flexporter: C78.7, C79.51, C78.00, C79.31.
MET_LIVER = snomed("94381002", "Metastatic malignant neoplasm to liver (disorder)")
MET_BONE = snomed("94222008", "Metastatic malignant neoplasm to bone (disorder)")
MET_LUNG = snomed("94391008", "Metastatic malignant neoplasm to lung (disorder)")
MET_BRAIN = snomed("94225005", "Metastatic malignant neoplasm to brain (disorder)")

# Histology (obs-histology; values histology-npc-nonkeratinizing / histology-npc-keratinizing).
HISTOLOGY = loinc("59847-4", "Histology and Behavior ICD-O-3 Cancer")
ICDO_NONKERATINIZING = icdo3("8072/3", "Squamous cell carcinoma, large cell, nonkeratinizing, NOS")
ICDO_UNDIFFERENTIATED = icdo3("8020/3", "Carcinoma, undifferentiated, NOS")
ICDO_KERATINIZING = icdo3("8071/3", "Squamous cell carcinoma, keratinizing, NOS")

# Clinical TNM, AJCC 8th (obs-m-category, obs-stage-group; values m1-values, stage-ivb; T, N, M0 and the
# other stage groups from the HL7 mCODE TNM value sets and the NZ CanShare stage-group value set, the
# sources of m1-values and stage-ivb). The staging system (SNOMED 897275008, AJCC 8th edition) is set as
# Observation.method by the flexporter: the module format has no method.
T_CATEGORY = loinc("21905-5", "Primary tumor.clinical [Class] Cancer")
N_CATEGORY = loinc("21906-3", "Regional lymph nodes.clinical [Class] Cancer")
M_CATEGORY = loinc("21907-1", "Distant metastases.clinical [Class] Cancer")
STAGE_GROUP = loinc("21908-9", "Stage group.clinical Cancer")
T = {
    1: snomed("1228889001", "American Joint Committee on Cancer cT1 (qualifier value)"),
    2: snomed("1228929004", "American Joint Committee on Cancer cT2 (qualifier value)"),
    3: snomed("1228938002", "American Joint Committee on Cancer cT3 (qualifier value)"),
    4: snomed("1228944003", "American Joint Committee on Cancer cT4 (qualifier value)"),
}
N = {
    0: snomed("1229967007", "American Joint Committee on Cancer cN0 (qualifier value)"),
    1: snomed("1229973008", "American Joint Committee on Cancer cN1 (qualifier value)"),
    2: snomed("1229978004", "American Joint Committee on Cancer cN2 (qualifier value)"),
    3: snomed("1229984001", "American Joint Committee on Cancer cN3 (qualifier value)"),
}
M0 = snomed("1229901006", "American Joint Committee on Cancer cM0 (qualifier value)")
M1 = snomed("1229903009", "American Joint Committee on Cancer cM1 (qualifier value)")
STAGE = {
    "II": snomed("1222765007", "American Joint Committee on Cancer stage II (qualifier value)"),
    "III": snomed("1222801008", "American Joint Committee on Cancer stage III (qualifier value)"),
    "IVA": snomed("1222838008", "American Joint Committee on Cancer stage IVA (qualifier value)"),
    "IVB": snomed("1222841004", "American Joint Committee on Cancer stage IVB (qualifier value)"),
}

# Performance status: ECOG (obs-ecog, answers ecog-answers) and Karnofsky (LOINC 89243-0, a score 0-100).
ECOG = loinc("89247-1", "ECOG Performance Status score")
ECOG_ANSWERS = {
    0: loinc("LA9622-7", "Fully active, able to carry on all pre-disease performance without restriction"),
    1: loinc(
        "LA9623-5",
        "Restricted in physically strenuous activity but ambulatory and able to carry out work of a light or "
        "sedentary nature, e.g., light house work, office work",
    ),
    2: loinc(
        "LA9624-3",
        "Ambulatory and capable of all selfcare but unable to carry out any work activities. Up and about more "
        "than 50% of waking hours",
    ),
}
KARNOFSKY = loinc("89243-0", "Karnofsky Performance Status score")
KARNOFSKY_FOR_ECOG = {0: (90, 100), 1: (70, 80), 2: (50, 60)}  # the usual correspondence (Oken et al. 1982)

# Laboratory (lab-* value sets), in the units US laboratories report and Synthea itself uses.
Lab = tuple[Code, str, float, float]  # code, unit, low, high of the value drawn
WBC: Lab = (loinc("6690-2", "Leukocytes [#/volume] in Blood by Automated count"), "10*3/uL", 4.5, 9.5)
ANC: Lab = (loinc("751-8", "Neutrophils [#/volume] in Blood by Automated count"), "10*3/uL", 2.2, 5.8)
HEMOGLOBIN: Lab = (loinc("718-7", "Hemoglobin [Mass/volume] in Blood"), "g/dL", 12.2, 15.4)
PLATELETS: Lab = (loinc("777-3", "Platelets [#/volume] in Blood by Automated count"), "10*3/uL", 170, 330)
CREATININE: Lab = (loinc("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"), "mg/dL", 0.65, 0.98)
BILIRUBIN: Lab = (loinc("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma"), "mg/dL", 0.3, 0.9)
AST: Lab = (loinc("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma"), "U/L", 14, 34)
ALT: Lab = (loinc("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma"), "U/L", 10, 38)
ALP: Lab = (loinc("6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma"), "U/L", 50, 115)
POTASSIUM: Lab = (loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma"), "mmol/L", 3.7, 4.7)
SODIUM: Lab = (loinc("2951-2", "Sodium [Moles/volume] in Serum or Plasma"), "mmol/L", 137, 143)
CALCIUM: Lab = (loinc("17861-6", "Calcium [Mass/volume] in Serum or Plasma"), "mg/dL", 8.9, 9.9)
ALBUMIN: Lab = (loinc("1751-7", "Albumin [Mass/volume] in Serum or Plasma"), "g/dL", 3.6, 4.6)
INR: Lab = (loinc("6301-6", "INR in Platelet poor plasma by Coagulation assay"), "{INR}", 0.9, 1.1)
PT: Lab = (loinc("5902-2", "Prothrombin time (PT)"), "s", 10.0, 12.0)
APTT: Lab = (loinc("3173-2", "aPTT in Blood by Coagulation assay"), "s", 27, 34)
# Serum pregnancy test (lab-pregnancy-hcg), negative (answers-negative), for women under 55 at screening.
HCG = loinc("2118-8", "Choriogonadotropin (pregnancy test) [Presence] in Serum or Plasma")
NEGATIVE = snomed("260385009", "Negative (qualifier value)")
# Plasma EBV DNA (lab-ebv-dna): high at diagnosis of advanced disease, low after treatment.
EBV_DNA = loinc("47982-4", "Epstein Barr virus DNA [#/volume] (viral load) in Serum or Plasma by NAA with probe detection")

# Procedures (proc-radiotherapy; the biopsy is in proc-minor, so it is no "major surgery").
BIOPSY = snomed("86273004", "Biopsy (procedure)")
RADIOTHERAPY = snomed("1287742003", "Radiotherapy (procedure)")

# Medicines (med-systemic-anticancer; the two PD-1 antibodies also med-checkpoint-inhibitors). RxNorm
# ingredients, as the value sets list them. Toripalimab, the PD-1 antibody approved for NPC, has no RxNorm
# code in the value sets (med-checkpoint-inhibitors notes): pembrolizumab and nivolumab stand for the class.
CISPLATIN = rxnorm("2555", "cisplatin")
GEMCITABINE = rxnorm("12574", "gemcitabine")
DOCETAXEL = rxnorm("72962", "docetaxel")
CAPECITABINE = rxnorm("194000", "capecitabine")
PEMBROLIZUMAB = rxnorm("1547545", "pembrolizumab")
NIVOLUMAB = rxnorm("1597876", "nivolumab")

CODES_UNVERIFIED = {
    "LOINC 47982-4": "EBV DNA viral load in serum or plasma, copies/mL: as the project's value set lab-ebv-dna "
    "(its sources there)",
}


# ------------------------------------------------------------------------------------------------------
# State builders. `Course` collects states; each step names its successor when the next step is added.


class Course:
    def __init__(self, states: dict[str, Any]) -> None:
        self.states = states
        self._open: list[dict[str, Any]] = []  # states waiting for their direct_transition

    def add(self, name: str, state: dict[str, Any], *, link: bool = True) -> str:
        assert name not in self.states, name
        for waiting in self._open:
            waiting["direct_transition"] = name
        self._open = []
        self.states[name] = state
        if link:
            self._open.append(state)
        return name

    def join(self, name: str) -> None:
        """Point the states still open at an existing state (a branch rejoining)."""
        for waiting in self._open:
            waiting["direct_transition"] = name
        self._open = []

    def branch(self, name: str, choices: list[tuple[float, str]], remarks: list[str] | None = None) -> str:
        state: dict[str, Any] = {
            "type": "Simple",
            "distributed_transition": [{"distribution": p, "transition": to} for p, to in choices],
        }
        if remarks:
            state["remarks"] = remarks
        return self.add(name, state, link=False)

    # --- time
    def wait_until(self, name: str, ymd: tuple[int, int, int]) -> str:
        y, m, d = ymd
        return self.add(
            name,
            {
                "type": "Guard",
                "allow": {
                    "condition_type": "Date",
                    "operator": ">=",
                    "date": {"year": y, "month": m, "day": d, "hour": 0, "minute": 0, "second": 0, "millisecond": 0},
                },
            },
        )

    def delay(self, name: str, low: float, high: float, unit: str) -> str:
        return self.add(name, {"type": "Delay", "range": {"low": low, "high": high, "unit": unit}})

    # --- encounters
    def encounter(self, name: str, reason: str | None) -> str:
        state: dict[str, Any] = {"type": "Encounter", "encounter_class": "ambulatory", "codes": [ENCOUNTER_PROBLEM]}
        if reason:
            state["reason"] = reason
        return self.add(name, state)

    def end_encounter(self, name: str) -> str:
        return self.add(name, {"type": "EncounterEnd"})

    # --- record entries
    def condition(self, name: str, code: Code, attribute: str, encounter: str) -> str:
        return self.add(
            name,
            {
                "type": "ConditionOnset",
                "target_encounter": encounter,
                "assign_to_attribute": attribute,
                "codes": [code],
            },
        )

    def end_condition(self, name: str, attribute: str) -> str:
        return self.add(name, {"type": "ConditionEnd", "referenced_by_attribute": attribute})

    def coded_observation(self, name: str, code: Code, value: Code, category: str) -> str:
        return self.add(
            name, {"type": "Observation", "category": category, "unit": "", "codes": [code], "value_code": value}
        )

    def quantity(self, name: str, code: Code, unit: str, low: float, high: float, category: str = "laboratory") -> str:
        return self.add(
            name,
            {
                "type": "Observation",
                "category": category,
                "unit": unit,
                "codes": [code],
                "range": {"low": low, "high": high},
            },
        )

    def procedure(self, name: str, code: Code, reason: str, low: float, high: float, unit: str) -> str:
        return self.add(
            name,
            {
                "type": "Procedure",
                "codes": [code],
                "reason": reason,
                "duration": {"low": low, "high": high, "unit": unit},
            },
        )

    def order(self, name: str, code: Code, reason: str, attribute: str) -> str:
        return self.add(
            name,
            {
                "type": "MedicationOrder",
                "codes": [code],
                "reason": reason,
                "assign_to_attribute": attribute,
                "administration": True,
            },
        )

    def stop(self, name: str, attribute: str) -> str:
        return self.add(name, {"type": "MedicationEnd", "referenced_by_attribute": attribute})

    def terminal(self, name: str) -> str:
        return self.add(name, {"type": "Terminal"}, link=False)

    # --- composite steps
    def labs(self, prefix: str, tests: list[Lab], abnormal: dict[str, tuple[float, float]] | None = None) -> None:
        """One result per test; `abnormal` replaces the drawn range of the tests it names (by LOINC code)."""
        for code, unit, low, high in tests:
            low, high = (abnormal or {}).get(code["code"], (low, high))
            self.quantity(f"{prefix} {code['display'].split(' [')[0]}", code, unit, low, high)

    def staging(self, prefix: str, t: int, n: int, m1: bool, stage: str) -> None:
        self.coded_observation(f"{prefix} T category", T_CATEGORY, T[t], "exam")
        self.coded_observation(f"{prefix} N category", N_CATEGORY, N[n], "exam")
        self.coded_observation(f"{prefix} M category", M_CATEGORY, M1 if m1 else M0, "exam")
        self.coded_observation(f"{prefix} stage group", STAGE_GROUP, STAGE[stage], "exam")

    def performance(self, prefix: str, ecog: int) -> None:
        self.coded_observation(f"{prefix} ECOG", ECOG, ECOG_ANSWERS[ecog], "survey")
        low, high = KARNOFSKY_FOR_ECOG[ecog]
        self.quantity(f"{prefix} Karnofsky", KARNOFSKY, "{score}", low, high, category="survey")


FULL_PANEL = [
    WBC,
    ANC,
    HEMOGLOBIN,
    PLATELETS,
    CREATININE,
    BILIRUBIN,
    AST,
    ALT,
    ALP,
    POTASSIUM,
    SODIUM,
    CALCIUM,
    ALBUMIN,
]
COAGULATION = [INR, PT, APTT]
CBC = [WBC, ANC, HEMOGLOBIN, PLATELETS]


# ------------------------------------------------------------------------------------------------------
# The courses. Each starts at its own name and ends in "Terminal" (or in death).


def diagnosis(
    c: Course,
    p: str,
    *,
    code: Code,
    histology: Code | None,
    t: int,
    n: int,
    metastases: list[Code],
    stage: str,
    ebv: tuple[float, float],
) -> None:
    """The diagnostic work-up: biopsy, the NPC Condition, histology, EBV DNA, staging, the metastases."""
    c.encounter(f"{p} diagnosis encounter", None)
    c.procedure(f"{p} nasopharyngeal biopsy", BIOPSY, "npc", 20, 45, "minutes")
    c.condition(f"{p} NPC", code, "npc", f"{p} diagnosis encounter")
    if histology is not None:
        c.coded_observation(f"{p} histology", HISTOLOGY, histology, "laboratory")
    c.quantity(f"{p} EBV DNA", EBV_DNA, "{copies}/mL", *ebv)
    for i, met in enumerate(metastases):
        c.condition(f"{p} metastasis {i + 1}", met, f"npc_metastasis_{i + 1}", f"{p} diagnosis encounter")
    c.staging(p, t, n, bool(metastases), stage)
    c.end_encounter(f"{p} diagnosis encounter end")


def screening(
    c: Course, p: str, *, ecog: int, coagulation: bool, abnormal: dict[str, tuple[float, float]] | None = None
) -> None:
    """The visit before treatment: performance status and labs, within the trials' windows. No Delay after
    the Guard: a Delay ends only at the next 7-day step, which may fall after the simulation's end; the Guard
    passes at the first step on or after the anchor, which differs from patient to patient anyway."""
    c.wait_until(f"{p} screening date", ANCHORS["screening"])
    c.encounter(f"{p} screening encounter", "npc")
    c.performance(p, ecog)
    c.labs(p, FULL_PANEL + (COAGULATION if coagulation else []), abnormal)
    c.add(
        f"{p} woman of childbearing age",
        {
            "type": "Simple",
            "conditional_transition": [
                {
                    "condition": {
                        "condition_type": "And",
                        "conditions": [
                            {"condition_type": "Gender", "gender": "F"},
                            {"condition_type": "Age", "operator": "<", "quantity": 55, "unit": "years"},
                        ],
                    },
                    "transition": f"{p} pregnancy test",
                },
                {"transition": f"{p} screening encounter end"},
            ],
        },
        link=False,
    )
    c.coded_observation(f"{p} pregnancy test", HCG, NEGATIVE, "laboratory")
    c.end_encounter(f"{p} screening encounter end")


def chemotherapy(c: Course, p: str, drugs: list[Code], cycles: int, *, labs: bool = True) -> None:
    """Cycles every three weeks: an order per drug at each cycle (stopped at the next), labs before each."""
    for k in range(1, cycles + 1):
        c.encounter(f"{p} cycle {k}", "npc")
        if labs:
            c.labs(f"{p} cycle {k}", [*CBC, CREATININE, ALT, AST, BILIRUBIN])
        for d in drugs:
            c.order(f"{p} cycle {k} {d['display']}", d, "npc", f"{p}_{d['display']}")
        c.end_encounter(f"{p} cycle {k} end")
        c.delay(f"{p} cycle {k} interval", 21, 21, "days")
        for d in drugs:
            c.stop(f"{p} cycle {k} {d['display']} stop", f"{p}_{d['display']}")


def chemoradiotherapy(c: Course, p: str) -> None:
    """Curative intensity-modulated radiotherapy, 70 Gy in 33-35 fractions over ~7 weeks (one Procedure
    with its period), with concurrent cisplatin ordered at its start. A Procedure's duration moves the
    module's clock on: the order comes first, and is stopped when the course ends."""
    c.encounter(f"{p} radiotherapy encounter", "npc")
    c.order(f"{p} concurrent cisplatin", CISPLATIN, "npc", f"{p}_concurrent_cisplatin")
    c.procedure(f"{p} radiotherapy", RADIOTHERAPY, "npc", 45, 50, "days")
    c.end_encounter(f"{p} radiotherapy encounter end")
    c.stop(f"{p} concurrent cisplatin stop", f"{p}_concurrent_cisplatin")


def follow_up(c: Course, p: str, visits: int) -> None:
    """Surveillance after curative treatment: EBV DNA undetectable or low, every 6 months."""
    for k in range(1, visits + 1):
        c.delay(f"{p} follow-up {k} interval", 5, 7, "months")
        c.encounter(f"{p} follow-up {k}", "npc")
        c.quantity(f"{p} follow-up {k} EBV DNA", EBV_DNA, "{copies}/mL", 0, 40)
        c.end_encounter(f"{p} follow-up {k} end")


def metastatic_course(c: Course, p: str, variant: str) -> None:
    """A: de novo metastatic NPC with liver metastases, diagnosed five to seven weeks ago, untreated and
    screened now: the first-line candidates of npc-liver-mets-ldrt. The variants make each verdict occur."""
    code, histology, ecog, coag = NPC_NONKERATINIZING, ICDO_NONKERATINIZING, 0, True
    if variant == "undifferentiated":
        code, histology, ecog = NPC_UNDIFFERENTIATED, ICDO_UNDIFFERENTIATED, 1
    elif variant == "histology pending":
        code, histology = NPC_ICD10, None  # biopsy read as carcinoma, WHO type still to come: to confirm
    elif variant == "no coagulation tests":
        coag = False  # INR/PT/aPTT not drawn: to confirm
    elif variant == "ECOG 2":
        ecog = 2  # not eligible (ECOG 0-1)
    elif variant == "keratinizing":
        code, histology = NPC_KERATINIZING, ICDO_KERATINIZING  # WHO type I: not eligible
    elif variant == "bone and lung too":
        pass
    metastases = [MET_LIVER] + ([MET_BONE, MET_LUNG] if variant == "bone and lung too" else [])
    c.wait_until(f"{p} diagnosis date", ANCHORS["diagnosis"])
    c.delay(f"{p} diagnosis delay", 0, 10, "days")
    diagnosis(c, p, code=code, histology=histology, t=2, n=2, metastases=metastases, stage="IVB", ebv=(8000, 90000))
    screening(c, p, ecog=ecog, coagulation=coag)
    c.terminal(f"{p} end")


def distant_relapse_course(c: Course, p: str) -> None:
    """B: locoregionally advanced NPC treated with induction chemotherapy and chemoradiotherapy years ago,
    now with liver (and bone) metastases: radiotherapy ended more than six months before the metastasis, so
    npc-liver-mets-ldrt may take them; the primary is in remission (its Condition resolved)."""
    c.wait_until(f"{p} history date", ANCHORS["history_early"])
    c.delay(f"{p} history delay", 0, 24, "months")
    diagnosis(
        c,
        p,
        code=NPC_NONKERATINIZING,
        histology=ICDO_NONKERATINIZING,
        t=3,
        n=1,
        metastases=[],
        stage="III",
        ebv=(2000, 20000),
    )
    chemotherapy(c, f"{p} induction", [GEMCITABINE, CISPLATIN], 3)
    chemoradiotherapy(c, p)
    c.end_condition(f"{p} NPC in remission", "npc")
    follow_up(c, p, 2)
    c.wait_until(f"{p} relapse date", ANCHORS["diagnosis"])
    c.delay(f"{p} relapse delay", 0, 10, "days")
    c.encounter(f"{p} relapse encounter", None)
    c.condition(f"{p} liver metastasis", MET_LIVER, "npc_metastasis_1", f"{p} relapse encounter")
    c.condition(f"{p} bone metastasis", MET_BONE, "npc_metastasis_2", f"{p} relapse encounter")
    c.quantity(f"{p} relapse EBV DNA", EBV_DNA, "{copies}/mL", 3000, 60000)
    c.staging(f"{p} relapse", 3, 1, True, "IVB")
    c.end_encounter(f"{p} relapse encounter end")
    screening(c, p, ecog=1, coagulation=True)
    c.terminal(f"{p} end")


def on_first_line_course(c: Course, p: str, with_pd1: bool) -> None:
    """C: de novo metastatic NPC on first-line gemcitabine-cisplatin (with a PD-1 antibody for some), the
    last cycle days ago: excluded from npc-liver-mets-ldrt (therapy within 28 days; a checkpoint inhibitor)."""
    c.wait_until(f"{p} diagnosis date", (2026, 7, 20))
    c.delay(f"{p} diagnosis delay", 0, 7, "days")
    diagnosis(
        c,
        p,
        code=NPC_NONKERATINIZING,
        histology=ICDO_NONKERATINIZING,
        t=3,
        n=2,
        metastases=[MET_LIVER, MET_BONE],
        stage="IVB",
        ebv=(10000, 120000),
    )
    c.delay(f"{p} to treatment", 14, 21, "days")
    chemotherapy(c, p, [GEMCITABINE, CISPLATIN] + ([PEMBROLIZUMAB] if with_pd1 else []), 6)
    c.terminal(f"{p} end")


def locally_advanced_course(c: Course, p: str, t: int, n: int, stage: str) -> None:
    """D: newly diagnosed locoregionally advanced NPC (M0), untreated, screened for induction trials: not
    metastatic, so not eligible for npc-liver-mets-ldrt; the candidates of the registry's induction trials
    (T and N categories, stage group, plasma EBV DNA, Karnofsky, WBC, ALP)."""
    c.wait_until(f"{p} diagnosis date", ANCHORS["diagnosis"])
    c.delay(f"{p} diagnosis delay", 0, 10, "days")
    high_ebv = n >= 1 and t >= 3
    diagnosis(
        c,
        p,
        code=NPC_NONKERATINIZING,
        histology=ICDO_NONKERATINIZING,
        t=t,
        n=n,
        metastases=[],
        stage=stage,
        ebv=(4000, 40000) if high_ebv else (200, 3500),
    )
    screening(c, p, ecog=0, coagulation=True)
    c.terminal(f"{p} end")


def after_two_lines_course(c: Course, p: str) -> None:
    """E: metastatic NPC progressing after first-line gemcitabine-cisplatin and second-line docetaxel, the
    last dose months ago: the candidates of a trial after two lines including platinum."""
    c.wait_until(f"{p} history date", ANCHORS["history_late"])
    c.delay(f"{p} history delay", 0, 18, "months")
    diagnosis(
        c,
        p,
        code=NPC_UNDIFFERENTIATED,
        histology=ICDO_UNDIFFERENTIATED,
        t=2,
        n=3,
        metastases=[MET_LIVER, MET_LUNG],
        stage="IVB",
        ebv=(20000, 200000),
    )
    c.delay(f"{p} to first line", 14, 21, "days")
    chemotherapy(c, f"{p} first line", [GEMCITABINE, CISPLATIN], 6)
    c.delay(f"{p} to progression", 4, 8, "months")
    chemotherapy(c, f"{p} second line", [DOCETAXEL], 4)
    c.delay(f"{p} to third line", 2, 4, "months")
    chemotherapy(c, f"{p} third line", [CAPECITABINE], 4, labs=False)
    c.wait_until(f"{p} restaging date", ANCHORS["diagnosis"])
    c.encounter(f"{p} progression encounter", "npc")
    c.condition(f"{p} brain metastasis", MET_BRAIN, "npc_metastasis_3", f"{p} progression encounter")
    c.end_encounter(f"{p} progression encounter end")
    screening(c, p, ecog=1, coagulation=True)
    c.terminal(f"{p} end")


def local_recurrence_course(c: Course, p: str) -> None:
    """F: NPC treated with chemoradiotherapy years ago, now recurrent in the nasopharynx (rT3 N0 M0), more than a
    year after radiotherapy: the candidates of a re-irradiation trial; excluded from npc-liver-mets-ldrt."""
    c.wait_until(f"{p} history date", ANCHORS["history_early"])
    c.delay(f"{p} history delay", 0, 24, "months")
    diagnosis(
        c,
        p,
        code=NPC_NONKERATINIZING,
        histology=ICDO_NONKERATINIZING,
        t=2,
        n=1,
        metastases=[],
        stage="II",
        ebv=(500, 8000),
    )
    chemoradiotherapy(c, p)
    c.end_condition(f"{p} NPC in remission", "npc")
    follow_up(c, p, 2)
    c.wait_until(f"{p} recurrence date", ANCHORS["diagnosis"])
    c.delay(f"{p} recurrence delay", 0, 10, "days")
    c.encounter(f"{p} recurrence encounter", None)
    c.procedure(f"{p} recurrence biopsy", BIOPSY, "npc_recurrence", 20, 45, "minutes")
    c.condition(f"{p} local recurrence", NPC_RECURRENCE, "npc_recurrence", f"{p} recurrence encounter")
    c.coded_observation(f"{p} recurrence histology", HISTOLOGY, ICDO_NONKERATINIZING, "laboratory")
    c.quantity(f"{p} recurrence EBV DNA", EBV_DNA, "{copies}/mL", 300, 5000)
    c.staging(f"{p} recurrence", 3, 0, False, "III")
    c.end_encounter(f"{p} recurrence encounter end")
    screening(c, p, ecog=0, coagulation=True)
    c.terminal(f"{p} end")


def fatal_course(c: Course, p: str) -> None:
    """G: metastatic NPC treated with chemotherapy and pembrolizumab, fatal within two years: a dead
    patient who must never be a candidate."""
    c.wait_until(f"{p} history date", ANCHORS["history_early"])
    c.delay(f"{p} history delay", 0, 30, "months")
    diagnosis(
        c,
        p,
        code=NPC_NONKERATINIZING,
        histology=ICDO_NONKERATINIZING,
        t=4,
        n=2,
        metastases=[MET_LIVER, MET_BONE],
        stage="IVB",
        ebv=(30000, 300000),
    )
    c.delay(f"{p} to treatment", 14, 21, "days")
    chemotherapy(c, p, [GEMCITABINE, CISPLATIN, PEMBROLIZUMAB], 6)
    c.add(
        f"{p} death",
        {"type": "Death", "range": {"low": 6, "high": 14, "unit": "months"}, "referenced_by_attribute": "npc"},
        link=False,
    )
    # Death ends the record; the module still needs a way out (Synthea stops processing the dead).
    c.states[f"{p} death"]["direct_transition"] = f"{p} end"
    c.terminal(f"{p} end")


def build() -> dict[str, Any]:
    states: dict[str, Any] = {}
    c = Course(states)
    c.add("Initial", {"type": "Initial"})
    c.wait_until("Risk date", ANCHORS["risk"])
    c.add(
        "Adult",
        {
            "type": "Simple",
            "conditional_transition": [
                {
                    "condition": {
                        "condition_type": "And",
                        "conditions": [
                            {"condition_type": "Age", "operator": ">=", "quantity": 18, "unit": "years"},
                            {"condition_type": "Age", "operator": "<=", "quantity": 62, "unit": "years"},
                        ],
                    },
                    "transition": "Risk",
                },
                {"transition": "Terminal"},
            ],
        },
        link=False,
    )
    c.add(
        "Risk",
        {
            "type": "Simple",
            "remarks": ["distributed_transition[0] is the incidence; the test population overrides it"],
            "distributed_transition": [
                {"distribution": INCIDENCE, "transition": "Course"},
                {"distribution": 1 - INCIDENCE, "transition": "Terminal"},
            ],
        },
        link=False,
    )
    courses: list[tuple[float, str]] = [
        (0.07, "A1"),
        (0.06, "A2"),
        (0.04, "A3"),
        (0.04, "A4"),
        (0.04, "A5"),
        (0.04, "A6"),
        (0.04, "A7"),
        (0.13, "B"),
        (0.05, "C1"),
        (0.05, "C2"),
        (0.07, "D1"),
        (0.05, "D2"),
        (0.04, "D3"),
        (0.04, "D4"),
        (0.03, "D5"),
        (0.09, "E"),
        (0.08, "F"),
        (0.04, "G"),
    ]
    assert abs(sum(p for p, _ in courses) - 1) < 1e-9
    c.branch(
        "Course",
        courses,
        remarks=["The course of the disease; docs/synthea-population.md says what each is for."],
    )
    c.terminal("Terminal")
    variants = {
        "A1": "nonkeratinizing",
        "A2": "undifferentiated",
        "A3": "histology pending",
        "A4": "no coagulation tests",
        "A5": "ECOG 2",
        "A6": "keratinizing",
        "A7": "bone and lung too",
    }
    for key, variant in variants.items():
        c.add(key, {"type": "Simple", "remarks": [f"de novo metastatic, {variant}"]})
        metastatic_course(c, key, variant)
    c.add("B", {"type": "Simple"})
    distant_relapse_course(c, "B")
    c.add("C1", {"type": "Simple"})
    on_first_line_course(c, "C1", with_pd1=False)
    c.add("C2", {"type": "Simple"})
    on_first_line_course(c, "C2", with_pd1=True)
    for key, (t, n, stage) in {
        "D1": (3, 1, "III"),
        "D2": (4, 1, "IVA"),
        "D3": (3, 0, "III"),
        "D4": (2, 2, "III"),
        "D5": (2, 1, "II"),
    }.items():
        c.add(key, {"type": "Simple", "remarks": [f"locoregionally advanced, T{t} N{n} M0, stage {stage}"]})
        locally_advanced_course(c, key, t, n, stage)
    c.add("E", {"type": "Simple"})
    after_two_lines_course(c, "E")
    c.add("F", {"type": "Simple"})
    local_recurrence_course(c, "F")
    c.add("G", {"type": "Simple"})
    fatal_course(c, "G")
    return {
        "name": "Nasopharyngeal Carcinoma",
        "remarks": [
            "Nasopharyngeal carcinoma for trial-cds's test population; written by scripts/synthea/npc_module.py "
            "(edit that, not this file). What each course is for: docs/synthea-population.md.",
            f"Dates are anchored to the population's reference date {'-'.join(map(str, REFERENCE_DATE))}: {ANCHORS}.",
            "Codes not confirmed in a project value set: "
            + "; ".join(f"{k}: {v}" for k, v in CODES_UNVERIFIED.items()),
        ],
        "gmf_version": 2,
        "states": states,
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    text = render()
    if sys.argv[1:] == ["--check"]:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is not what {Path(__file__).name} builds: run it", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
