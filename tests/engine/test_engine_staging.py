"""The staging rule kind (issue 16): the T, N and M categories and the stage group of one staging
assessment, with its edition, read from mCODE-style Observations and Condition.stage as servers send them."""

from pathlib import Path
from typing import Any

import orjson
import pytest
from engine_support import NOW
from fhir_builders import AJCC, ICD10, SNOMED, condition, patient, staging_obs
from pydantic import ValidationError

from cds.assessment import CriterionAssessment
from cds.engine import evaluate
from cds.engine.rules.staging import parse_category
from cds.fhir.decoding import decode_resource
from cds.portfolio import load_trial_file
from cds.record import PatientRecord
from cds.rules.staging import StagingRule

TRIAL = load_trial_file(Path(__file__).parent / "data" / "trials" / "staging-trial.yaml")
DAY = "2026-10-05T10:00:00Z"

# AJCC SNOMED qualifiers (tnm-*-values, stage-group-values)
CT2 = (SNOMED, "1228929004", "American Joint Committee on Cancer cT2 (qualifier value)")
CT3 = (SNOMED, "1228938002", "American Joint Committee on Cancer cT3 (qualifier value)")
CT4A = (SNOMED, "1228945002", "American Joint Committee on Cancer cT4a (qualifier value)")
CN0 = (SNOMED, "1229967007", "American Joint Committee on Cancer cN0 (qualifier value)")
CN1 = (SNOMED, "1229973008", "American Joint Committee on Cancer cN1 (qualifier value)")
CN2 = (SNOMED, "1229978004", "American Joint Committee on Cancer cN2 (qualifier value)")
CM0 = (SNOMED, "1229901006", "American Joint Committee on Cancer cM0 (qualifier value)")
III = (SNOMED, "1222801008", "American Joint Committee on Cancer stage III (qualifier value)")
IVA = (SNOMED, "1222838008", "American Joint Committee on Cancer stage IVA (qualifier value)")
IVB = (SNOMED, "1222841004", "American Joint Committee on Cancer stage IVB (qualifier value)")
NPC = ("C11.9", "Malignant neoplasm of nasopharynx, unspecified")


def assess(criterion_id: str, resources: list[dict[str, Any]]) -> CriterionAssessment:
    record = PatientRecord.from_resources([patient(), *resources])
    return next(c for c in evaluate(TRIAL, record, NOW).criteria if c.id == criterion_id)


def panel(
    t: Any, n: Any, m: Any, group: Any = None, *, date: str = DAY, edition: int | None = 8
) -> list[dict[str, Any]]:
    """A stage-group Observation gathering its T, N and M Observations (hasMember), as mCODE sends them."""
    members = [staging_obs(axis, v, date, edition=edition) for axis, v in (("T", t), ("N", n), ("M", m)) if v]
    head = staging_obs("G", group, date, edition=edition, members=members) if group else None
    return [*members, *([head] if head else [])]


# --- reading categories
@pytest.mark.parametrize(
    ("text", "axis", "written"),
    [
        ("American Joint Committee on Cancer cT3 (qualifier value)", "T", "cT3"),
        ("T3 category (finding)", "T", "T3"),
        ("rT2", "T", "rT2"),
        ("ypT4b", "T", "ypT4b"),
        ("cT3N1M0", "N", "N1"),
        ("Stage IVa", "G", "IVA"),
        ("Clinical stage IV B (finding)", "G", "IVB"),
        ("4A", "G", "IVA"),
        ("Stadium III", "G", "III"),
    ],
)
def test_categories_are_read_as_reports_write_them(text: str, axis: str, written: str) -> None:
    found = parse_category(text, axis)
    assert found is not None and found.written() == written


@pytest.mark.parametrize(("text", "axis"), [("Tissue sample", "T"), ("Nasopharynx", "N"), ("Committee", "M")])
def test_words_are_not_categories(text: str, axis: str) -> None:
    assert parse_category(text, axis) is None


# --- exact categories
def test_a_panel_with_the_categories_asked_is_met_and_names_its_observations() -> None:
    resources = panel(CT3, CN1, CM0, III)
    result = assess("inc_t3n1m0", resources)
    assert result.status == "met"
    assert "cT3 cN1 cM0, stage III (AJCC 8th) on 2026-10-05" in result.reason
    assert set(result.evidence) == {f"Observation/{r['id']}" for r in resources}


def test_another_n_category_is_not_met_and_says_which() -> None:
    result = assess("inc_t3n1m0", panel(CT3, CN2, CM0, IVA))
    assert result.status == "not_met"
    assert "cN2, the trial asks N1" in result.reason


def test_a_missing_axis_is_unknown_and_named() -> None:
    result = assess("inc_t3n1m0", panel(CT3, None, CM0, III))
    assert result.status == "unknown"
    assert "N category not recorded" in result.reason
    assert "N category" in result.missing


def test_no_staging_at_all_is_unknown() -> None:
    result = assess("inc_t3n1m0", [])
    assert result.status == "unknown"
    assert result.reason == "no TNM staging (AJCC 8th) in the record"


def test_text_codes_are_read_where_no_standard_code_is_given() -> None:
    resources = [staging_obs("T", "cT3", DAY), staging_obs("N", (AJCC, "cN1", None), DAY), staging_obs("M", "M0", DAY)]
    assert assess("inc_t3n1m0", resources).status == "met"


def test_categories_of_one_day_without_a_panel_are_one_assessment() -> None:
    resources = [staging_obs("T", CT3, DAY), staging_obs("N", CN1, DAY), staging_obs("M", CM0, DAY)]
    assert assess("inc_t3n1m0", resources).status == "met"


def test_the_latest_assessment_decides_and_older_categories_do_not_fill_it() -> None:
    older = panel(CT3, CN1, CM0, III, date="2026-06-01T10:00:00Z")
    newer = panel(CT4A, None, CM0, date="2026-10-05T10:00:00Z")
    result = assess("inc_t3n1m0", [*older, *newer])
    assert result.status == "not_met"  # T4a, not T3; the older N1 is not borrowed
    assert "cT4a, the trial asks T3" in result.reason
    assert "N category not recorded" in result.reason


def test_a_preliminary_staging_does_not_count() -> None:
    resources = [staging_obs(axis, v, DAY, status="preliminary") for axis, v in (("T", CT3), ("N", CN1), ("M", CM0))]
    assert assess("inc_t3n1m0", resources).status == "unknown"


# --- editions
def test_another_edition_recorded_is_unknown_to_restage() -> None:
    result = assess("inc_t3n1m0", panel(CT3, CN1, CM0, III, edition=7))
    assert result.status == "unknown"
    assert "staged under AJCC 7th" in result.reason and "restage or confirm" in result.reason


def test_no_edition_recorded_decides_and_says_so() -> None:
    result = assess("inc_t3n1m0", panel(CT3, CN1, CM0, III, edition=None))
    assert result.status == "met"
    assert "edition not recorded, read as AJCC 8th" in result.reason


def test_the_panel_method_gives_its_members_their_edition() -> None:
    members = [staging_obs(axis, v, DAY, edition=None) for axis, v in (("T", CT3), ("N", CN1), ("M", CM0))]
    head = staging_obs("G", III, DAY, edition=7, members=members)
    assert "staged under AJCC 7th" in assess("inc_t3n1m0", [*members, head]).reason


# --- stage ranges and exceptions
def test_a_stage_in_the_range_is_met() -> None:
    assert assess("inc_stage_range", panel(CT3, CN1, CM0, III)).status == "met"


def test_stage_iva_written_iva_in_words_is_met() -> None:
    assert assess("inc_stage_range", panel(CT4A, CN0, CM0, "Stage IVa")).status == "met"


def test_a_stage_outside_the_range_is_not_met() -> None:
    result = assess("inc_stage_range", panel(CT2, CN1, "cM1", IVB))
    assert result.status == "not_met"
    assert "IVB, the trial asks stage III or IVA" in result.reason


def test_the_excepted_combination_is_not_met() -> None:
    result = assess("inc_stage_range", panel(CT3, CN0, CM0, III))
    assert result.status == "not_met"
    assert "T3 N0 M0 is excepted" in result.reason


def test_an_exception_that_cannot_be_ruled_out_is_unknown() -> None:
    result = assess("inc_stage_range", panel(CT3, None, CM0, III))
    assert result.status == "unknown"
    assert "cannot rule out the excepted T3 N0 M0: N category not recorded" in result.reason


def test_a_stage_group_not_recorded_is_unknown_even_with_tnm() -> None:
    result = assess("inc_stage_range", panel(CT3, CN1, CM0))
    assert result.status == "unknown"
    assert "stage group not recorded" in result.reason


def test_t4_covers_t4a_but_a_less_detailed_category_cannot_say() -> None:
    assert assess("inc_npc_t4", panel(CT4A, CN0, CM0)).status == "met"
    assert assess("inc_t4a", panel(CT4A, CN0, CM0)).status == "met"
    assert assess("inc_t4a", panel("cT4b", CN0, CM0)).status == "not_met"
    less_detailed = assess("inc_t4a", panel("cT4", CN0, CM0))
    assert less_detailed.status == "unknown"
    assert "cT4 does not say whether T4a" in less_detailed.reason


def test_tx_cannot_be_assessed_and_is_unknown() -> None:
    assert assess("inc_t3n1m0", panel("cTX", CN1, CM0)).status == "unknown"


# --- recurrence staging
def test_recurrence_staging_is_read_only_when_asked() -> None:
    initial = panel(CT3, CN1, CM0, III, date="2019-03-01T10:00:00Z", edition=7)
    recurrence = panel("rT3", "rN0", "M0", date="2026-10-05T10:00:00Z", edition=7)
    assert assess("inc_recurrence", [*initial, *recurrence]).status == "met"
    # the initial-staging rules ignore the recurrence staging and read the initial one (7th: restage)
    assert "staged under AJCC 7th" in assess("inc_t3n1m0", [*initial, *recurrence]).reason


def test_recurrence_asked_and_only_the_initial_staging_recorded_is_unknown() -> None:
    result = assess("inc_recurrence", panel(CT3, CN1, CM0, III, edition=7))
    assert result.status == "unknown"
    assert "no recurrence (r) staging in the record" in result.reason


# --- Condition.stage
def test_condition_stage_summary_decides_when_no_observation_is_recorded() -> None:
    npc = condition(*NPC, system=ICD10, onset="2026-09-20")
    npc["stage"] = [
        {
            "summary": {
                "coding": [{"system": SNOMED, "code": IVA[1], "display": IVA[2]}],
                "text": "cT4aN0M0, stage IVA",
            },
            "type": {"coding": [{"system": SNOMED, "code": "897275008"}]},
        }
    ]
    result = assess("inc_stage_range", [npc])
    assert result.status == "met"
    assert result.evidence == [f"Condition/{npc['id']}"]
    assert "(AJCC 8th)" in result.reason


def test_condition_stage_joins_the_observations_it_cites() -> None:
    members = panel(CT3, CN0, CM0)
    npc = condition(*NPC, system=ICD10, onset="2026-09-20")
    npc["stage"] = [
        {"summary": {"text": "Stage III"}, "assessment": [{"reference": f"Observation/{members[0]['id']}"}]}
    ]
    result = assess("inc_stage_range", [*members, npc])
    assert result.status == "not_met"  # stage III from the Condition, T3N0M0 from its Observations: excepted
    assert f"Condition/{npc['id']}" in result.evidence


# --- which cancer
def test_with_cancer_given_the_staging_of_another_cancer_is_ignored() -> None:
    npc = condition(*NPC, system=ICD10, onset="2026-09-20")
    breast = condition("C50.911", "Malignant neoplasm of unspecified site of right female breast", system=ICD10)
    other = [staging_obs("T", CT4A, DAY, focus=breast)]
    own = [staging_obs("T", CT2, "2026-09-25T10:00:00Z", focus=npc)]
    result = assess("inc_npc_t4", [npc, breast, *other, *own])
    assert result.status == "not_met"
    assert "cT2" in result.reason


# --- lean decoding reads the same links
def test_lean_decoded_resources_read_method_members_and_focus() -> None:
    resources = panel(CT3, CN1, CM0, III, edition=7)
    lean = [decode_resource(orjson.dumps(r)) for r in resources]
    assert all(r is not None for r in lean)
    record = PatientRecord.from_resources([patient(), *lean])
    result = next(c for c in evaluate(TRIAL, record, NOW).criteria if c.id == "inc_t3n1m0")
    assert "staged under AJCC 7th" in result.reason


# --- the trial file
def test_a_category_that_is_not_one_is_refused_when_the_file_loads() -> None:
    with pytest.raises(ValidationError, match="not a T category"):
        StagingRule.model_validate({"type": "staging", "label": "x", "t": ["3"]})


def test_a_rule_names_at_least_one_axis() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        StagingRule.model_validate({"type": "staging", "label": "x", "edition": 8})
