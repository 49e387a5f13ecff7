"""Pinned checks on the value-set YAML files (fhir_mappings/valuesets) and the system aliases.

These tests read the YAML with PyYAML only, so they guard the data itself: the file format of
docs/value-sets.md, and the clinically important codes (and the known traps: cisplatin/carboplatin
RxCUIs, 89243-0 Karnofsky vs ECOG, 62238-1 CKD-EPI 2009 vs 2021).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2] / "fhir_mappings"
VS_DIR = ROOT / "valuesets"

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
ICDO = "http://terminology.hl7.org/CodeSystem/icd-o-3"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
CVX = "http://hl7.org/fhir/sid/cvx"

TOP_KEYS = {"id", "title", "source", "notes", "include", "exclude", "names", "dose_exceptions"}
ENTRY_KEYS = {"system", "code", "display", "match", "from", "to", "value", "verified", "note"}
MATCHES = {"exact", "prefix", "range", "regex", "suffix"}

EXPECTED_IDS = [
    "lab-anc",
    "lab-platelets",
    "lab-hemoglobin-mass",
    "lab-hemoglobin-molar",
    "lab-inr",
    "lab-pt",
    "lab-aptt",
    "lab-creatinine",
    "lab-egfr",
    "lab-bilirubin-total",
    "lab-ast",
    "lab-alt",
    "lab-potassium",
    "lab-sodium",
    "lab-calcium-total",
    "lab-calcium-ionized",
    "lab-albumin",
    "lab-hba1c",
    "lab-hbv-dna",
    "lab-hcv-rna",
    "lab-pregnancy-hcg",
    "obs-ecog",
    "ecog-answers",
    "obs-pregnancy-status",
    "answers-pregnant",
    "answers-not-pregnant",
    "obs-breastfeeding",
    "answers-yes",
    "answers-breastfeeding-yes",
    "answers-positive",
    "answers-negative",
    "obs-stage-group",
    "stage-ivb",
    "obs-m-category",
    "m1-values",
    "obs-histology",
    "obs-nyha",
    "nyha-iii-iv",
    "obs-tumor-size",
    "histology-npc-nonkeratinizing",
    "histology-npc-keratinizing",
    "cond-npc",
    "cond-liver-metastasis",
    "cond-distant-metastasis",
    "cond-npc-local-recurrence",
    "cond-major-vessel-invasion",
    "cond-gilbert",
    "cond-adrenal-insufficiency",
    "obs-body-weight",
    "cond-hiv",
    "cond-hbv-chronic",
    "cond-hcv",
    "cond-ild-pneumonitis",
    "cond-lung-uncontrolled",
    "cond-autoimmune",
    "cond-other-malignancy",
    "cond-bcc-skin",
    "cond-malignancy-ambiguous",
    "cond-uncontrolled-diabetes",
    "cond-diabetes",
    "cond-angina",
    "cond-pulmonary-embolism",
    "cond-myocardial-infarction",
    "cond-heart-failure",
    "cond-ventricular-arrhythmia",
    "cond-stroke",
    "cond-bleeding-event",
    "cond-bleeding-disorder",
    "cond-neuropathy",
    "severity-moderate-severe",
    "severity-mild",
    "cond-pregnancy",
    "cond-lactation",
    "cond-transplant-status",
    "cond-substance-use",
    "cond-tuberculosis",
    "med-checkpoint-inhibitors",
    "med-systemic-anticancer",
    "med-corticosteroids-systemic",
    "med-immunosuppressants",
    "med-anti-infectives-systemic",
    "med-hbv-antivirals",
    "proc-radiotherapy",
    "proc-general-anesthesia",
    "proc-major-surgery",
    "proc-surgical",
    "proc-minor",
    "proc-transplant",
    "vax-live",
    "allergy-study-drugs",
    "allergy-monoclonal-antibodies",
]

DRUG_SETS = [
    "med-checkpoint-inhibitors",
    "med-systemic-anticancer",
    "med-corticosteroids-systemic",
    "med-immunosuppressants",
    "med-hbv-antivirals",
    "allergy-study-drugs",
]


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path.name
    return data


ALL = {p.stem: _load(p) for p in sorted(VS_DIR.glob("*.yaml"))}


def vs(vs_id: str) -> dict[str, Any]:
    assert vs_id in ALL, f"value set {vs_id} missing"
    return ALL[vs_id]


def entries(vs_id: str, part: str = "include") -> list[dict[str, Any]]:
    return list(vs(vs_id).get(part) or [])


def codes(vs_id: str, system: str, part: str = "include") -> dict[str, dict[str, Any]]:
    return {str(e["code"]): e for e in entries(vs_id, part) if e["system"] == system and "code" in e}


def name_texts(vs_id: str) -> list[str]:
    return [n if isinstance(n, str) else n["text"] for n in vs(vs_id).get("names") or []]


def name_matches(name: str, text: str) -> bool:
    """Same whole-word rule as the engine: case-insensitive, hyphens count as word characters."""
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.I) is not None


def loinc_check_digit(number: str) -> str:
    odd = number[::-1][0::2][::-1]
    even = number[::-1][1::2][::-1]
    digits = even + (str(int(odd) * 2) if odd else "")
    return str((10 - sum(int(c) for c in digits) % 10) % 10)


# ---------------------------------------------------------------- format


def test_every_expected_value_set_exists() -> None:
    missing = [i for i in EXPECTED_IDS if i not in ALL]
    assert not missing, missing


@pytest.mark.parametrize("vs_id", sorted(ALL))
def test_file_shape(vs_id: str) -> None:
    data = ALL[vs_id]
    assert data.get("id") == vs_id
    assert set(data) <= TOP_KEYS, set(data) - TOP_KEYS
    assert isinstance(data.get("title"), str) and data["title"].strip()
    assert isinstance(data.get("source"), str) and data["source"].strip()
    include = data.get("include", [])
    assert isinstance(include, list), "include must be a list"
    assert include or data.get("names"), "a value set needs include codes or names"
    seen: set[tuple[str, str, str]] = set()
    for part in ("include", "exclude"):
        for entry in data.get(part) or []:
            assert isinstance(entry, dict), entry
            assert set(entry) <= ENTRY_KEYS, set(entry) - ENTRY_KEYS
            assert isinstance(entry.get("system"), str) and entry["system"], entry
            assert isinstance(entry.get("display"), str) and entry["display"].strip(), entry
            match = entry.get("match", "exact")
            assert match in MATCHES, entry
            if match == "range":
                assert isinstance(entry.get("from"), str) and isinstance(entry.get("to"), str), entry
                assert entry["from"] <= entry["to"], entry
                key = (entry["system"], f"{entry['from']}-{entry['to']}", match)
            else:
                assert isinstance(entry.get("code"), str) and entry["code"].strip(), f"code must be a string: {entry}"
                if match == "regex":
                    re.compile(entry["code"])
                key = (entry["system"], entry["code"], match)
            if "verified" in entry:
                assert isinstance(entry["verified"], bool), entry
            assert (part, key) not in seen, f"duplicate entry {key}"
            seen.add((part, key))
    for name in data.get("names") or []:
        if isinstance(name, dict):
            assert set(name) <= {"text", "value"} and isinstance(name.get("text"), str), name
        else:
            assert isinstance(name, str) and name.strip(), name


@pytest.mark.parametrize("vs_id", sorted(ALL))
def test_loinc_codes_have_valid_check_digits(vs_id: str) -> None:
    for part in ("include", "exclude"):
        for entry in ALL[vs_id].get(part) or []:
            if entry["system"] != LOINC:
                continue
            code = entry["code"]
            assert re.fullmatch(r"(LA\d+-\d|\d{1,6}-\d)", code), code
            if not code.startswith("LA"):
                number, check = code.split("-")
                assert loinc_check_digit(number) == check, f"{code} fails the LOINC mod-10 check"


@pytest.mark.parametrize("vs_id", sorted(ALL))
def test_icd10cm_code_shapes(vs_id: str) -> None:
    for part in ("include", "exclude"):
        for entry in ALL[vs_id].get(part) or []:
            if entry["system"] != ICD:
                continue
            for key in ("code", "from", "to"):
                if key in entry and entry.get("match", "exact") != "regex":
                    assert re.fullmatch(r"[A-Z]\d[0-9A-Z](\.?[0-9A-Z]{1,4})?", entry[key]), entry


@pytest.mark.parametrize("vs_id", sorted(ALL))
def test_codes_of_numeric_systems_are_numeric(vs_id: str) -> None:
    for entry in (ALL[vs_id].get("include") or []) + (ALL[vs_id].get("exclude") or []):
        if entry["system"] in (SCT, RX):
            assert entry["code"].isdigit(), entry
        if entry["system"] == CVX:
            assert re.fullmatch(r"\d{2,3}", entry["code"]), entry
        if entry["system"] == ICDO:
            assert re.fullmatch(r"\d{4}/\d", entry["code"]), entry
        if entry["system"] == ATC:
            assert re.fullmatch(r"[A-Z](\d\d([A-Z]([A-Z](\d\d)?)?)?)?", entry["code"]), entry
            if len(entry["code"]) < 7:
                assert entry.get("match") == "prefix", f"ATC class code must be a prefix entry: {entry}"


@pytest.mark.parametrize("vs_id", DRUG_SETS)
def test_every_drug_ingredient_has_a_name(vs_id: str) -> None:
    """Real MedicationStatements often carry SCD codes that only match by ingredient name."""
    names = name_texts(vs_id)
    assert names, "drug value sets need names"
    assert all(n == n.lower() for n in names), "drug names are generic names in lower case"
    for entry in vs(vs_id).get("include") or []:
        ingredient = entry["system"] == RX or (entry["system"] == ATC and len(entry["code"]) == 7)
        if ingredient:
            assert any(name_matches(n, entry["display"]) for n in names), f"no name for {entry}"


# ---------------------------------------------------------------- pinned codes: medications


def test_checkpoint_inhibitors_pinned() -> None:
    rx = codes("med-checkpoint-inhibitors", RX)
    assert rx["1547545"]["display"] == "pembrolizumab"
    assert rx["1597876"]["display"] == "nivolumab"
    assert rx["1792776"]["display"] == "atezolizumab"
    atc = codes("med-checkpoint-inhibitors", ATC)
    assert atc["L01FF"].get("match") == "prefix"
    for code in ("L01FX04", "L01FX20", "L01FF02", "L01FF01"):
        assert code in atc
    names = set(name_texts("med-checkpoint-inhibitors"))
    for name in (
        "toripalimab",
        "camrelizumab",
        "sintilimab",
        "penpulimab",
        "tislelizumab",
        "serplulimab",
        "retifanlimab",
        "cemiplimab",
        "dostarlimab",
        "ipilimumab",
        "tremelimumab",
        "durvalumab",
    ):
        assert name in names


def test_cisplatin_carboplatin_not_swapped() -> None:
    for vs_id in ALL:
        for entry in (ALL[vs_id].get("include") or []) + (ALL[vs_id].get("exclude") or []):
            if entry["system"] != RX:
                continue
            if entry["code"] == "2555":
                assert entry["display"] == "cisplatin", (vs_id, entry)
            if entry["code"] == "40048":
                assert entry["display"] == "carboplatin", (vs_id, entry)
            if entry["display"] == "cisplatin":
                assert entry["code"] == "2555", (vs_id, entry)
            if entry["display"] == "carboplatin":
                assert entry["code"] == "40048", (vs_id, entry)
    anticancer = codes("med-systemic-anticancer", RX)
    assert anticancer["2555"]["display"] == "cisplatin" and anticancer["40048"]["display"] == "carboplatin"
    assert anticancer["12574"]["display"] == "gemcitabine"
    study = codes("allergy-study-drugs", RX)
    assert set(study) == {"12574", "2555"}
    assert "40048" not in study


def test_anticancer_classes() -> None:
    atc = codes("med-systemic-anticancer", ATC)
    assert atc["L01"]["match"] == "prefix" and atc["L02"]["match"] == "prefix"
    assert "leucovorin" not in name_texts("med-systemic-anticancer")


def test_corticosteroids_have_prednisone_equivalents() -> None:
    expected = {
        "hydrocortisone": 20,
        "cortisone": 25,
        "prednisone": 5,
        "prednisolone": 5,
        "methylprednisolone": 4,
        "triamcinolone": 4,
        "dexamethasone": 0.75,
        "betamethasone": 0.6,
    }
    data = vs("med-corticosteroids-systemic")
    for entry in data.get("include") or []:
        assert isinstance(entry.get("value"), (int, float)) and not isinstance(entry["value"], bool), entry
        assert entry["value"] > 0
        if entry["display"] in expected:
            assert entry["value"] == pytest.approx(expected[entry["display"]]), entry
    for name in data["names"]:
        assert isinstance(name, dict) and isinstance(name["value"], (int, float)), name
        if name["text"] in expected:
            assert name["value"] == pytest.approx(expected[name["text"]])
    rx = codes("med-corticosteroids-systemic", RX)
    assert {k: v["display"] for k, v in rx.items()} == {
        "3264": "dexamethasone",
        "8640": "prednisone",
        "8638": "prednisolone",
        "6902": "methylprednisolone",
        "5492": "hydrocortisone",
        "1514": "betamethasone",
        "10759": "triamcinolone",
        "2878": "cortisone",
    }
    atc = codes("med-corticosteroids-systemic", ATC)
    assert atc["H02AB02"]["display"] == "dexamethasone" and atc["H02AB02"]["value"] == pytest.approx(0.75)
    assert atc["H02AB07"]["display"] == "prednisone" and atc["H02AB09"]["value"] == 20
    assert all(len(c) == 7 for c in atc), "individual ATC codes only, each with its own value"


def test_immunosuppressants_pinned() -> None:
    rx = codes("med-immunosuppressants", RX)
    for code, name in {
        "42316": "tacrolimus",
        "3008": "cyclosporine",
        "1256": "azathioprine",
        "7145": "mycophenolic acid",
        "35302": "sirolimus",
    }.items():
        assert rx[code]["display"] == name
    assert codes("med-immunosuppressants", ATC)["L04"]["match"] == "prefix"


def test_hbv_nucleosides_excluded_from_anti_infectives() -> None:
    hbv = set(codes("med-hbv-antivirals", ATC))
    assert {"J05AF05", "J05AF07", "J05AF08", "J05AF10", "J05AF11", "J05AF13"} <= hbv
    excluded = set(codes("med-anti-infectives-systemic", ATC, "exclude"))
    assert hbv <= excluded
    inc = codes("med-anti-infectives-systemic", ATC)
    assert {"J01", "J02", "J04", "J05"} <= set(inc)
    anti_names = set(name_texts("med-anti-infectives-systemic"))
    assert not anti_names & {"entecavir", "tenofovir", "lamivudine", "adefovir", "telbivudine"}


def test_monoclonal_suffix_entry() -> None:
    (entry,) = entries("allergy-monoclonal-antibodies")
    assert entry == {
        "system": "urn:trial-cds:name-suffix",
        "code": "mab",
        "display": "any substance whose name ends in -mab",
        "match": "suffix",
    }
    assert "penpulimab" in name_texts("allergy-study-drugs")


# ---------------------------------------------------------------- pinned codes: labs and observations


def test_ecog_is_89247_1_never_karnofsky() -> None:
    assert set(codes("obs-ecog", LOINC)) == {"89247-1"}
    assert set(codes("obs-karnofsky", LOINC)) == {"89243-0"}
    for vs_id, data in ALL.items():
        for entry in data.get("include") or []:
            if vs_id != "obs-karnofsky":
                assert entry.get("code") != "89243-0", f"89243-0 is Karnofsky, found in {vs_id}"


def test_staging_systems_carry_their_edition() -> None:
    editions = {c: e["value"] for c, e in codes("staging-systems", SCT).items()}
    assert editions == {"444256004": 6, "443830009": 7, "897275008": 8}


def test_staging_observation_codes_are_the_mcode_loinc_classes() -> None:
    assert set(codes("obs-t-category", LOINC)) == {"21905-5", "21899-0"}
    assert set(codes("obs-n-category", LOINC)) == {"21906-3", "21900-6"}


@pytest.mark.parametrize(
    ("vs_id", "code", "value"),
    [
        ("tnm-t-values", "1228938002", "cT3"),
        ("tnm-t-values", "1228945002", "cT4a"),
        ("tnm-n-values", "1229973008", "cN1"),
        ("tnm-m-values", "1229901006", "cM0"),
        ("tnm-m-values", "1229903009", "cM1"),
        ("stage-group-values", "1222838008", "IVA"),
        ("stage-group-values", "1222841004", "IVB"),
    ],
)
def test_ajcc_qualifiers_carry_their_category(vs_id: str, code: str, value: str) -> None:
    assert codes(vs_id, SCT)[code]["value"] == value
    answers = {c: e["value"] for c, e in codes("ecog-answers", LOINC).items()}
    assert answers == {"LA9622-7": 0, "LA9623-5": 1, "LA9624-3": 2, "LA9625-0": 3, "LA9626-8": 4, "LA9627-6": 5}


def test_egfr_formulas_named_correctly() -> None:
    egfr = codes("lab-egfr", LOINC)
    assert "CKD-EPI 2021" in egfr["98979-8"]["display"]
    assert "Creatinine-based" in egfr["98979-8"]["display"]
    assert "CKD-EPI 2021" in egfr["98980-6"]["display"] and "Cystatin" in egfr["98980-6"]["display"]
    assert "2021" not in egfr["62238-1"]["display"], "62238-1 is CKD-EPI 2009"
    assert "2009" in str(egfr["62238-1"]["value"])
    assert "MDRD" in egfr["33914-3"]["display"]
    assert "2164-2" not in egfr, "creatinine clearance is not an eGFR"


@pytest.mark.parametrize(
    ("vs_id", "expected"),
    [
        ("lab-anc", {"751-8", "26499-4", "753-4"}),
        ("lab-platelets", {"777-3", "26515-7", "778-1"}),
        ("lab-hemoglobin-molar", {"59260-0"}),
        ("lab-inr", {"6301-6", "34714-6", "38875-1", "46418-0"}),
        ("lab-pt", {"5902-2"}),
        ("lab-aptt", {"3173-2", "14979-9"}),
        ("lab-potassium", {"2823-3", "6298-4"}),
        ("lab-sodium", {"2951-2", "2947-0"}),
        ("lab-hba1c", {"4548-4", "17856-6"}),
        ("lab-hbv-dna", {"42595-9", "29615-2"}),
        ("lab-hcv-rna", {"11259-9", "11011-4"}),
        ("obs-pregnancy-status", {"82810-3"}),
        ("obs-breastfeeding", {"63895-7"}),
        ("obs-histology", {"59847-4"}),
        ("obs-nyha", {"88020-3"}),
        ("obs-tumor-size", {"21889-1"}),
    ],
)
def test_exact_loinc_lists(vs_id: str, expected: set[str]) -> None:
    assert set(codes(vs_id, LOINC)) == expected


@pytest.mark.parametrize(
    ("vs_id", "required"),
    [
        ("lab-hemoglobin-mass", {"718-7"}),
        ("lab-creatinine", {"2160-0", "14682-9", "38483-4"}),
        ("lab-bilirubin-total", {"1975-2", "14631-6", "42719-5"}),
        ("lab-ast", {"1920-8", "30239-8", "88112-8"}),
        ("lab-alt", {"1742-6", "1744-2", "76625-3"}),
        ("lab-calcium-total", {"17861-6", "49765-1"}),
        ("lab-calcium-ionized", {"1995-0"}),
        ("lab-albumin", {"1751-7", "61151-7", "61152-5"}),
        ("lab-pregnancy-hcg", {"2106-3", "2118-8"}),
        ("obs-body-weight", {"29463-7"}),  # Cockcroft-Gault reads weight in kg
    ],
)
def test_required_loinc_codes(vs_id: str, required: set[str]) -> None:
    assert required <= set(codes(vs_id, LOINC))


def test_lab_units_do_not_mix() -> None:
    assert "59260-0" not in codes("lab-hemoglobin-mass", LOINC)
    assert "59261-8" not in codes("lab-hba1c", LOINC)


def test_answer_sets() -> None:
    assert {"LA15173-0", "77386006"} <= set(codes("answers-pregnant", LOINC)) | set(codes("answers-pregnant", SCT))
    assert {"LA26683-5", "60001007"} <= set(codes("answers-not-pregnant", LOINC)) | set(
        codes("answers-not-pregnant", SCT)
    )
    pos = set(codes("answers-positive", SCT)) | set(codes("answers-positive", LOINC))
    neg = set(codes("answers-negative", SCT)) | set(codes("answers-negative", LOINC))
    assert {"10828004", "260373001", "11214006", "LA6576-8", "LA11882-0"} <= pos
    assert {"260385009", "260415000", "131194007", "LA6577-6", "LA11883-8"} <= neg
    assert not pos & neg
    assert "LA33-6" in codes("answers-yes", LOINC)
    assert "169750002" in codes("answers-breastfeeding-yes", SCT)


def test_staging_codes() -> None:
    stage_obs = set(codes("obs-stage-group", SCT)) | set(codes("obs-stage-group", LOINC))
    assert {"399537006", "399588009", "21908-9", "21902-2"} <= stage_obs
    m_obs = set(codes("obs-m-category", SCT)) | set(codes("obs-m-category", LOINC))
    assert {"21907-1", "399387003", "371497001"} <= m_obs
    assert "399390009" not in m_obs, "399390009 is the TNM stage grouping observable, not pM"
    m1 = codes("m1-values", SCT)
    assert m1["1229903009"]["display"].endswith("cM1 (qualifier value)")
    assert m1["1229916009"]["display"].endswith("pM1 (qualifier value)")
    assert {"M1", "cM1", "pM1"} <= set(name_texts("m1-values"))
    assert "1222841004" in codes("stage-ivb", SCT)
    assert {"IVB", "4B"} <= set(name_texts("stage-ivb"))
    nyha = codes("nyha-iii-iv", SCT)
    assert set(nyha) == {"420913000", "422293003"}


# ---------------------------------------------------------------- pinned codes: histology and conditions


def test_histology_sets_are_disjoint_and_pinned() -> None:
    nk = codes("histology-npc-nonkeratinizing", ICDO)
    k = codes("histology-npc-keratinizing", ICDO)
    assert set(nk) == {"8072/3", "8073/3", "8020/3", "8082/3"}
    assert set(k) == {"8071/3", "8083/3"}
    all_nk = {e["code"] for e in entries("histology-npc-nonkeratinizing")}
    all_k = {e["code"] for e in entries("histology-npc-keratinizing")}
    assert not all_nk & all_k
    for name in name_texts("histology-npc-keratinizing"):
        for text in (
            "Non-keratinizing carcinoma of nasopharynx",
            "Nonkeratinizing carcinoma, WHO type II",
            "undifferentiated non-keratinising carcinoma (WHO type III)",
        ):
            assert not name_matches(name, text), (name, text)


def test_npc_condition() -> None:
    npc = entries("cond-npc")
    assert {"system": ICD, "code": "C11", "display": "Malignant neoplasm of nasopharynx", "match": "prefix"} in npc
    sct = codes("cond-npc", SCT)
    # 126680004 "Neoplasm of nasopharynx" (benign included) is listed on purpose: code-map.md gives it for
    # NPC, and inc_histology still requires a nonkeratinizing carcinoma histology.
    assert "126680004" in sct
    assert {"187692001", "449248000", "707705008"} <= set(sct)


def test_metastasis_sets() -> None:
    liver = set(codes("cond-liver-metastasis", ICD)) | set(codes("cond-liver-metastasis", SCT))
    assert {"C78.7", "94381002"} <= liver
    dm_inc = codes("cond-distant-metastasis", ICD)
    assert {"C78", "C79", "C7B"} <= set(dm_inc) and all(dm_inc[c]["match"] == "prefix" for c in ("C78", "C79", "C7B"))
    assert "C77" not in dm_inc and "C77" in codes("cond-distant-metastasis", ICD, "exclude")


def test_other_malignancy_ranges_and_exclusions() -> None:
    inc = entries("cond-other-malignancy")
    ranges = {(e["from"], e["to"]) for e in inc if e.get("match") == "range"}
    assert {("C00", "C96"), ("D00", "D09")} <= ranges
    assert codes("cond-other-malignancy", ICD)["Z85"]["match"] == "prefix"
    exc = codes("cond-other-malignancy", ICD, "exclude")
    assert {"C11", "C77", "C78", "C79", "C7B", "D06", "Z85.81"} <= set(exc)
    assert "Z85.828" in codes("cond-malignancy-ambiguous", ICD)
    (bcc,) = [e for e in entries("cond-bcc-skin") if e["system"] == ICD]
    pattern = re.compile(bcc["code"])
    for code in ("C44.01", "C44.111", "C44.1122", "C44.311", "C44.41", "C44.519", "C44.91", "C4491"):
        assert pattern.match(code), code
    for code in ("C44.02", "C44.121", "C44.90", "C44.99", "C43.9", "C44.39"):
        assert not pattern.match(code), code


@pytest.mark.parametrize(
    ("vs_id", "required"),
    [
        ("cond-gilbert", {"E80.4"}),
        ("cond-adrenal-insufficiency", {"E27.1", "E27.2", "E27.40", "E27.49", "E23.0"}),
        ("cond-hiv", {"B20", "Z21"}),
        ("cond-hbv-chronic", {"B18.0", "B18.1", "Z22.51"}),
        ("cond-hcv", {"B18.2", "B17.1"}),
        ("cond-ild-pneumonitis", {"J84", "J70.0", "J70.1", "J70.2", "J70.3", "J70.4"}),
        ("cond-uncontrolled-diabetes", {"E10.65", "E11.65", "E13.65"}),
        ("cond-diabetes", {"E10", "E11", "E13"}),
        ("cond-angina", {"I20"}),
        ("cond-pulmonary-embolism", {"I26"}),
        ("cond-myocardial-infarction", {"I21", "I22"}),
        ("cond-heart-failure", {"I50"}),
        ("cond-ventricular-arrhythmia", {"I47.2", "I49.01", "I49.02"}),
        ("cond-stroke", {"I60", "I61", "I63"}),
        ("cond-bleeding-event", {"K92.0", "K92.1", "K92.2", "R04.2"}),
        ("cond-bleeding-disorder", {"D65", "D66", "D67", "D69.3"}),
        ("cond-neuropathy", {"G60", "G61", "G62", "G63"}),
        ("cond-pregnancy", {"Z33.1", "Z34"}),
        ("cond-lactation", {"Z39.1"}),
        (
            "cond-transplant-status",
            {"Z94.0", "Z94.1", "Z94.2", "Z94.3", "Z94.4", "Z94.81", "Z94.82", "Z94.83", "Z94.84"},
        ),
        (
            "cond-autoimmune",
            {"M05", "M06", "M32", "M33", "M34", "M35.0", "L40", "K50", "K51", "E05.0", "E06.3", "G35", "G70.0"},
        ),
    ],
)
def test_required_icd10cm_codes(vs_id: str, required: set[str]) -> None:
    assert required <= set(codes(vs_id, ICD))


def test_condition_exclusions() -> None:
    assert "R04.0" in codes("cond-bleeding-event", ICD, "exclude"), "epistaxis is excepted"
    assert "R04.0" not in codes("cond-bleeding-event", ICD)
    assert "I25.2" in codes("cond-myocardial-infarction", ICD, "exclude")
    assert "I25.2" not in codes("cond-myocardial-infarction", ICD)
    assert {"D68.5", "D68.6"} <= set(codes("cond-bleeding-disorder", ICD, "exclude"))
    assert "F17" in codes("cond-substance-use", ICD, "exclude")
    assert "205237003" not in codes("cond-ild-pneumonitis", SCT), "SNOMED 'Pneumonitis' is defined as infectious"
    assert {"6736007", "24484000"} <= set(codes("severity-moderate-severe", SCT))
    assert set(codes("severity-mild", SCT)) == {"255604002"}
    tb = entries("cond-tuberculosis")
    assert any(e.get("from") == "A15" and e.get("to") == "A19" for e in tb)
    assert "56717001" in codes("cond-tuberculosis", SCT)


# ---------------------------------------------------------------- procedures and vaccines


def test_procedures_pinned() -> None:
    assert {"108290001", "1217123003", "33195004"} <= set(codes("proc-radiotherapy", SCT))
    assert "50697003" in codes("proc-general-anesthesia", SCT)
    assert set(codes("proc-surgical", SCT)) == {"387713003"}
    major = codes("proc-major-surgery", SCT)
    assert {"86481000", "71273005", "25353009", "45685007"} <= set(major)
    assert not set(major) & set(codes("proc-minor", SCT))
    assert {"70536003", "18027006", "32413006", "88039007"} <= set(codes("proc-transplant", SCT))


def test_live_vaccines() -> None:
    live = codes("vax-live", CVX)
    for code in (
        "03",
        "94",
        "05",
        "06",
        "07",
        "21",
        "121",
        "37",
        "183",
        "184",
        "111",
        "149",
        "25",
        "19",
        "174",
        "116",
        "119",
        "122",
        "143",
        "75",
    ):
        assert code in live, code
    for code in ("187", "188", "206", "10", "140", "141", "150", "101", "08"):
        assert code not in live, f"CVX {code} is not a live vaccine"


# ---------------------------------------------------------------- system aliases


def test_system_aliases() -> None:
    raw = _load(ROOT / "systems.yaml")
    owner: dict[str, str] = {}
    for canonical, aliases in raw.items():
        for alias in [canonical, *(aliases or [])]:
            key = str(alias).rstrip("/").lower()
            assert owner.get(key, canonical) == canonical, f"{alias} maps to two systems"
            owner[key] = canonical
    assert owner["http://hl7.org/fhir/sid/icd-10"] == ICD
    assert owner["urn:oid:2.16.840.1.113883.6.90"] == ICD
    assert owner["urn:oid:2.16.840.1.113883.6.88"] == RX
    assert owner["urn:oid:2.16.840.1.113883.6.96"] == SCT
    assert owner["urn:oid:2.16.840.1.113883.6.1"] == LOINC
    assert owner["urn:oid:2.16.840.1.113883.12.292"] == CVX
    assert owner["http://www.whocc.no/atc"] == ATC
    assert owner["urn:oid:2.16.840.1.113883.6.73"] == ATC
    assert owner["urn:oid:2.16.840.1.113883.6.43.1"] == ICDO
    used = {e["system"] for data in ALL.values() for e in (data.get("include") or [])} - {"urn:trial-cds:name-suffix"}
    canonical_known = set(raw) | {"http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"}
    assert used <= canonical_known, used - canonical_known


# ---------------------------------------------------------------- SNOMED CT coverage (eCQM VSAC expansions)


def _sct_display_texts(vs_id: str) -> dict[str, str]:
    return {c: e["display"] for c, e in codes(vs_id, SCT).items()}


def test_other_malignancy_snomed_pinned() -> None:
    sct = set(codes("cond-other-malignancy", SCT))
    for code in (
        "254837009",  # Malignant neoplasm of breast (Synthea)
        "254637007",  # Non-small cell lung cancer (Synthea)
        "254632001",  # Small cell carcinoma of lung (Synthea)
        "424132000",  # Non-small cell carcinoma of lung, TNM stage 1 (Synthea)
        "67841000119103",  # Primary small cell malignant neoplasm of lung, TNM stage 4 (Synthea)
        "363406005",  # Malignant neoplasm of colon (Synthea)
        "93761005",  # Primary malignant neoplasm of colon (Synthea)
        "109838007",  # Overlapping malignant neoplasm of colon (Synthea)
        "91861009",  # Acute myeloid leukemia (Synthea)
        "399068003",  # Malignant tumor of prostate
        "399326009",  # Malignant neoplasm of urinary bladder
        "363418001",  # Malignant tumor of pancreas
        "93655004",  # Malignant melanoma of skin
        "363478007",  # Malignant tumor of thyroid gland
        "429699009",  # History of malignant neoplasm of colon
    ):
        assert code in sct, code


def test_other_malignancy_snomed_leaves_out_npc_spread_and_generic() -> None:
    other = _sct_display_texts("cond-other-malignancy")
    npc = set(codes("cond-npc", SCT))
    assert not npc & set(other), "nasopharyngeal carcinoma concepts must not count as another malignancy"
    for code in ("187694000", "93662008", "187697007", "254484001", "722530005"):  # adenoid, recess, choanae
        assert code in npc and code not in other, code
    assert not set(other) & set(codes("cond-distant-metastasis", SCT))
    assert not set(other) & set(codes("cond-liver-metastasis", SCT))
    assert not set(other) & set(codes("cond-bcc-skin", SCT)), "BCC of skin is handled by cond-bcc-skin"
    assert not set(other) & set(codes("cond-malignancy-ambiguous", SCT))
    for code, text in other.items():
        assert not re.search(r"naso|pharyngeal tonsil|adenoid \(|in situ of (uterine )?cervix", text, re.I), (
            code,
            text,
        )
        assert "(morphologic abnormality)" not in text, (code, text)
        assert not re.search(r"[Ss]econdary|[Mm]etastatic .* to |[Mm]etastasis to|uncertain behavio", text), (
            code,
            text,
        )
        if re.search(r"metasta", text, re.I):
            assert re.search(r"metastasis from|metastatic to|with widespread metastatic", text, re.I), (code, text)
    # generic concepts that may be the NPC itself -> ambiguous (unknown), never "other malignancy"
    amb = set(codes("cond-malignancy-ambiguous", SCT))
    for code in ("363346000", "372087000", "402815007", "716659002", "363507003", "255052006"):
        assert code in amb and code not in other, code


def test_bcc_skin_snomed() -> None:
    bcc = _sct_display_texts("cond-bcc-skin")
    assert {"254701007", "402819001", "403914000", "402536001"} <= set(bcc)
    assert "717731002" not in bcc, "BCC of vulva is not skin BCC"
    assert "717731002" in codes("cond-other-malignancy", SCT)


@pytest.mark.parametrize(
    ("vs_id", "required"),
    [
        ("cond-diabetes", {"44054006", "46635009", "73211009", "368581000119106", "1551000119108"}),
        ("cond-uncontrolled-diabetes", {"443694000", "444073006", "420422005", "368051000119109"}),
        ("cond-hiv", {"86406008", "62479008", "165816005"}),
        ("cond-hbv-chronic", {"61977001", "186639003"}),
        ("cond-hcv", {"128302006", "50711007", "235866006"}),
        ("cond-autoimmune", {"69896004", "55464009", "34000006", "64766004", "24700007", "46635009", "396331005"}),
        ("cond-myocardial-infarction", {"22298006", "401303003", "401314000", "57054005"}),
        ("cond-angina", {"194828000", "4557003", "233819005"}),
        ("cond-heart-failure", {"84114007", "88805009", "42343007"}),
        ("cond-stroke", {"230690007", "422504002", "432504007"}),
        ("cond-pulmonary-embolism", {"59282003", "233935004"}),
        ("cond-pregnancy", {"77386006", "72892002"}),
        ("cond-transplant-status", {"161665007"}),
        ("cond-tuberculosis", {"56717001", "154283005"}),
        ("proc-radiotherapy", {"33195004", "152198000"}),
        ("proc-transplant", {"70536003", "175901007"}),
    ],
)
def test_required_snomed_codes(vs_id: str, required: set[str]) -> None:
    assert required <= set(codes(vs_id, SCT)), required - set(codes(vs_id, SCT))


def test_snomed_traps() -> None:
    assert "399211009" not in codes("cond-myocardial-infarction", SCT), "history of MI is not an acute MI"
    for code, text in _sct_display_texts("cond-myocardial-infarction").items():
        assert not re.search(r"\bold\b|healed|history", text, re.I), (code, text)
    for code, text in _sct_display_texts("cond-pregnancy").items():
        assert not re.search(r"not pregnant|^(ectopic|tubal|miscarriage|abortion|spontaneous abortion)", text, re.I), (
            code,
            text,
        )
    for code, text in _sct_display_texts("cond-bleeding-event").items():
        assert not re.search(r"epistaxis|nose ?bleed", text, re.I), (code, text)
    for code, text in _sct_display_texts("cond-substance-use").items():
        assert not re.search(r"nicotine|tobacco", text, re.I), (code, text)
    for code, text in _sct_display_texts("cond-tuberculosis").items():
        assert not re.search(r"latent", text, re.I), (code, text)
    assert "175899003" not in codes("proc-transplant", SCT), "kidney autotransplantation is not an organ transplant"
    major = set(codes("proc-major-surgery", SCT))
    assert not major & set(codes("proc-minor", SCT))
    assert not major & set(codes("proc-surgical", SCT))
