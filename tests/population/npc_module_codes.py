"""The codes of the nasopharyngeal carcinoma module (scripts/synthea/npc_module.py) and the value sets that
must read each of them, for the tests of the module and of the population it makes.

Every code the module writes is either in READ_BY, with the value sets npc-liver-mets-ldrt reads it through
(and must match), or in NOT_READ, with why the bundled trial has no use for it. A code added to the module
without a line here fails tests/population/test_npc_module.py."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "scripts" / "synthea" / "npc_module.py"
MODULE = ROOT / "scripts" / "synthea" / "modules" / "nasopharyngeal_carcinoma.json"
FLEXPORTER = ROOT / "scripts" / "synthea" / "flexporter.yaml"
POPULATION_SCRIPT = ROOT / "scripts" / "synthea-population"

# Synthea's names of code systems (ExportHelper.getSystemURI); any other system is written as given.
SYNTHEA_SYSTEMS = {
    "SNOMED-CT": "http://snomed.info/sct",
    "LOINC": "http://loinc.org",
    "RxNorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "ICD10-CM": "http://hl7.org/fhir/sid/icd-10-cm",
}


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("npc_module", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


b = load_builder()


def key(code: dict[str, str]) -> tuple[str, str]:
    """(system URI, code) as Synthea exports it."""
    return SYNTHEA_SYSTEMS.get(code["system"], code["system"]), code["code"]


READ_BY: dict[tuple[str, str], list[str]] = {
    # Diagnoses: NPC (inc_histology), its histology where the code carries it, the recurrence marker
    # (exc_local_recurrence), the metastases (inc_stage_ivb, inc_liver_metastasis).
    key(b.NPC_NONKERATINIZING): ["cond-npc", "histology-npc-nonkeratinizing"],
    key(b.NPC_UNDIFFERENTIATED): ["cond-npc", "histology-npc-nonkeratinizing"],
    key(b.NPC_KERATINIZING): ["cond-npc", "histology-npc-keratinizing"],
    key(b.NPC_ICD10): ["cond-npc"],
    key(b.NPC_RECURRENCE): ["cond-npc", "cond-npc-local-recurrence"],
    key(b.MET_LIVER): ["cond-distant-metastasis", "cond-liver-metastasis"],
    key(b.MET_BONE): ["cond-distant-metastasis"],
    key(b.MET_LUNG): ["cond-distant-metastasis"],
    key(b.MET_BRAIN): ["cond-distant-metastasis"],
    # Observations and their coded values.
    key(b.HISTOLOGY): ["obs-histology"],
    key(b.ICDO_NONKERATINIZING): ["histology-npc-nonkeratinizing"],
    key(b.ICDO_UNDIFFERENTIATED): ["histology-npc-nonkeratinizing"],
    key(b.ICDO_KERATINIZING): ["histology-npc-keratinizing"],
    key(b.M_CATEGORY): ["obs-m-category"],
    key(b.M1): ["m1-values"],
    key(b.STAGE_GROUP): ["obs-stage-group"],
    key(b.STAGE["IVB"]): ["stage-ivb"],
    key(b.ECOG): ["obs-ecog"],
    **{key(answer): ["ecog-answers"] for answer in b.ECOG_ANSWERS.values()},
    key(b.HCG): ["lab-pregnancy-hcg"],
    key(b.NEGATIVE): ["answers-negative"],
    key(b.ANC[0]): ["lab-anc"],
    key(b.HEMOGLOBIN[0]): ["lab-hemoglobin-mass"],
    key(b.PLATELETS[0]): ["lab-platelets"],
    key(b.CREATININE[0]): ["lab-creatinine"],
    key(b.BILIRUBIN[0]): ["lab-bilirubin-total"],
    key(b.AST[0]): ["lab-ast"],
    key(b.ALT[0]): ["lab-alt"],
    key(b.POTASSIUM[0]): ["lab-potassium"],
    key(b.SODIUM[0]): ["lab-sodium"],
    key(b.CALCIUM[0]): ["lab-calcium-total"],
    key(b.ALBUMIN[0]): ["lab-albumin"],
    key(b.INR[0]): ["lab-inr"],
    key(b.PT[0]): ["lab-pt"],
    key(b.APTT[0]): ["lab-aptt"],
    # Procedures: radiotherapy (inc_liver_metastasis, exc_local_recurrence); the biopsy is minor surgery.
    key(b.RADIOTHERAPY): ["proc-radiotherapy"],
    key(b.BIOPSY): ["proc-minor"],
    # Medicines (exc_recent_anticancer_therapy, exc_prior_checkpoint_inhibitor).
    key(b.CISPLATIN): ["med-systemic-anticancer"],
    key(b.GEMCITABINE): ["med-systemic-anticancer"],
    key(b.DOCETAXEL): ["med-systemic-anticancer"],
    key(b.CAPECITABINE): ["med-systemic-anticancer"],
    key(b.PEMBROLIZUMAB): ["med-systemic-anticancer", "med-checkpoint-inhibitors"],
    key(b.NIVOLUMAB): ["med-systemic-anticancer", "med-checkpoint-inhibitors"],
}

NOT_READ: dict[tuple[str, str], str] = {
    key(b.ENCOUNTER_PROBLEM): "an encounter type",
    key(b.T_CATEGORY): "T category: for the registry's locally advanced trials",
    key(b.N_CATEGORY): "N category: for the registry's locally advanced trials",
    **{key(v): "T category value" for v in b.T.values()},
    **{key(v): "N category value" for v in b.N.values()},
    key(b.M0): "M0: read as 'not M1' (other: not_met)",
    **{key(v): "a stage group other than IVB" for k, v in b.STAGE.items() if k != "IVB"},
    key(b.KARNOFSKY): "Karnofsky: for the registry trials",
    key(b.EBV_DNA): "plasma EBV DNA: for the registry trials",
    key(b.WBC[0]): "WBC: for the registry trials",
    key(b.ALP[0]): "ALP: for the registry trials",
}

# Codes that would wrongly rule an NPC patient out, or leave them to confirm, if the module wrote them.
MUST_NOT_MATCH = ["cond-other-malignancy", "cond-malignancy-ambiguous", "proc-major-surgery", "proc-surgical"]


def module_codes(module: dict[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
    """Every code a state of the module writes: (state name, code), values of Observations included."""
    for name, state in module["states"].items():
        for code in state.get("codes", []):
            yield name, code
        if "value_code" in state:
            yield name, state["value_code"]


def flexporter_icd10_codes() -> list[str]:
    """The ICD-10-CM codes the Flexporter adds to the module's Conditions."""
    return re.findall(r"\['(C\d\d(?:\.\d+)?)',", FLEXPORTER.read_text())


def read_module() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MODULE.read_text())
    return data
