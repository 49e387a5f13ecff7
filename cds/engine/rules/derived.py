"""The lab rule: a test's measured value (``labs``), else one computed from other results where the record
allows: CKD-EPI 2021 eGFR, corrected calcium, Cockcroft-Gault creatinine clearance."""

from __future__ import annotations

from cds.assessment import Fact, Status
from cds.engine.context import EvalContext, LabTestSpec, WindowSpec
from cds.engine.formatting import day, quantity
from cds.engine.result import RuleResult
from cds.engine.rules.labs import LabCriterion, LabPick, LabValue, compare, missing_result, pick_latest
from cds.units import convert


def ckd_epi_2021(creatinine_mg_dl: float, age: int, sex: str) -> float:
    """CKD-EPI 2021 (race-free) creatinine equation, mL/min/1.73 m² (Inker et al., NEJM 2021)."""
    female = sex == "female"
    kappa = 0.7 if female else 0.9
    alpha = -0.241 if female else -0.302
    ratio = creatinine_mg_dl / kappa
    egfr = 142 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age
    return float(egfr * (1.012 if female else 1.0))


def cockcroft_gault(creatinine_mg_dl: float, age: int, weight_kg: float, sex: str) -> float:
    """Cockcroft-Gault creatinine clearance, mL/min: (140 − age) × weight kg × (0.85 if female) /
    (72 × Scr mg/dL) (Cockcroft & Gault, Nephron 1976; ../shared/references/code-map.md, "Formulas")."""
    clearance = (140 - age) * weight_kg / (72 * creatinine_mg_dl)
    return float(clearance * (0.85 if sex == "female" else 1.0))


#: Calcium is corrected only below this albumin (40 g/L): ../shared/references/code-map.md, "Formulas".
CORRECTION_BELOW_ALBUMIN_G_DL = 4.0


def corrected_calcium_mg_dl(calcium_mg_dl: float, albumin_g_dl: float) -> float:
    """Payne's correction: Ca + 0.8 × (4.0 − albumin g/dL), for albumin below 4.0 g/dL."""
    return calcium_mg_dl + 0.8 * (4.0 - albumin_g_dl)


def evaluate_lab(rule: LabCriterion, ctx: EvalContext) -> RuleResult:
    """A lab rule: the measured value, else one derived from other results where the rule allows. Here,
    not in ``labs``, so that neither module imports the other inside a function (an import per call)."""
    test = ctx.trial.tests[rule.test]
    window = rule.window or ctx.trial.measurement_window
    pick = pick_latest(ctx, test, window)
    if pick.value is not None and rule.derive != "corrected_calcium":
        return compare(rule, ctx, test, pick.value)
    if rule.derive is not None:
        derived = evaluate_derived(rule, ctx, test, window, pick)
        if derived is not None:
            return derived
    return missing_result(rule, test, pick)


def evaluate_derived(
    rule: LabCriterion, ctx: EvalContext, test: LabTestSpec, window: WindowSpec, pick: LabPick
) -> RuleResult | None:
    if rule.derive == "ckd_epi_2021":
        return _egfr(rule, ctx, test, window, pick)
    if rule.derive == "corrected_calcium":
        return _calcium(rule, ctx, test, window, pick)
    if rule.derive == "cockcroft_gault":
        return _creatinine_clearance(rule, ctx, test, window, pick)
    return None


def _egfr(
    rule: LabCriterion, ctx: EvalContext, test: LabTestSpec, window: WindowSpec, pick: LabPick
) -> RuleResult | None:
    creat_test = ctx.trial.tests[rule.derive_from["creatinine"]]
    creat = pick_latest(ctx, creat_test, window)
    if creat.value is None or creat.value.low != creat.value.high:
        return None
    patient = ctx.record.patient
    ages = ctx.age()
    if patient is None or ages is None or ages[0] != ages[1] or patient.gender not in ("male", "female"):
        return RuleResult(
            Status.UNKNOWN,
            f"{pick.why_missing}; eGFR cannot be computed without age and sex",
            (creat.value.obs.ref,),
            missing=(test.label,),
        )
    mg_dl = convert(creat.value.value, creat_test.unit, "mg/dL", creat_test.molar_mass_g_per_mol)
    if mg_dl is None:
        return None
    egfr = ckd_epi_2021(mg_dl, ages[0], patient.gender)
    lab = LabValue(creat.value.obs, egfr, egfr, quantity(egfr, test.unit, test.display_unit))
    note = (
        f" (computed: CKD-EPI 2021 from creatinine {quantity(mg_dl, 'mg/dL')}, age {ages[0]}, "
        f"{patient.gender}; no eGFR reported within {window.describe()})"
    )
    fact = Fact(
        label="Creatinine", value=creat.value.shown, date=day(creat.value.obs.when), resource=creat.value.obs.ref
    )
    return compare(
        rule, ctx, test, lab, label="eGFR", derived_note=note, extra_evidence=(patient.ref,), extra_facts=(fact,)
    )


def _calcium(
    rule: LabCriterion, ctx: EvalContext, test: LabTestSpec, window: WindowSpec, pick: LabPick
) -> RuleResult | None:
    albumin_test = ctx.trial.tests[rule.derive_from["albumin"]]
    if pick.value is None:
        ionized_name = rule.derive_from.get("ionized")
        if ionized_name:
            ionized_test = ctx.trial.tests[ionized_name]
            ionized = pick_latest(ctx, ionized_test, window)
            if ionized.value is not None:
                return compare(rule, ctx, ionized_test, ionized.value)
        return missing_result(rule, test, pick)
    calcium = pick.value
    albumin = pick_latest(ctx, albumin_test, window)
    if albumin.value is None or albumin.value.low != albumin.value.high or calcium.low != calcium.high:
        return RuleResult(
            Status.UNKNOWN,
            f"{test.label} {calcium.shown} on {day(calcium.obs.when)} cannot be corrected: "
            f"{albumin.why_missing or 'albumin is not an exact value'}",
            (calcium.obs.ref,),
            missing=(albumin_test.label,),
        )
    ca_mg_dl = convert(calcium.value, test.unit, "mg/dL", test.molar_mass_g_per_mol)
    alb_g_dl = convert(albumin.value.value, albumin_test.unit, "g/dL", albumin_test.molar_mass_g_per_mol)
    if ca_mg_dl is None or alb_g_dl is None:
        return None
    if alb_g_dl >= CORRECTION_BELOW_ALBUMIN_G_DL - 1e-9:
        # Albumin normal or high: the measured calcium stands (the formula would push a normal calcium
        # below range).
        when = day(albumin.value.obs.when)
        note = f" (measured; not corrected: albumin {albumin.value.shown} on {when} is not below 40 g/L)"
        fact = Fact(
            label=albumin_test.label,
            value=albumin.value.shown,
            date=day(albumin.value.obs.when),
            resource=albumin.value.obs.ref,
        )
        return compare(
            rule, ctx, test, calcium, derived_note=note, extra_evidence=(albumin.value.obs.ref,), extra_facts=(fact,)
        )
    corrected = convert(corrected_calcium_mg_dl(ca_mg_dl, alb_g_dl), "mg/dL", test.unit, test.molar_mass_g_per_mol)
    assert corrected is not None
    lab = LabValue(calcium.obs, corrected, corrected, quantity(corrected, test.unit, test.display_unit))
    note = (
        f" (corrected for albumin {albumin.value.shown} on {day(albumin.value.obs.when)}: "
        f"Ca + 0.8 × (4 − albumin g/dL); measured {calcium.shown})"
    )
    fact = Fact(
        label=albumin_test.label,
        value=albumin.value.shown,
        date=day(albumin.value.obs.when),
        resource=albumin.value.obs.ref,
    )
    return compare(
        rule,
        ctx,
        test,
        lab,
        label=f"Corrected {test.label.lower()}",
        derived_note=note,
        extra_evidence=(albumin.value.obs.ref,),
        extra_facts=(fact,),
    )


def _input_fact(label: str, lab: LabValue) -> Fact:
    return Fact(label=label, value=lab.shown, date=day(lab.obs.when), resource=lab.obs.ref)


def _creatinine_clearance(
    rule: LabCriterion, ctx: EvalContext, test: LabTestSpec, window: WindowSpec, pick: LabPick
) -> RuleResult:
    """No creatinine clearance reported: Cockcroft-Gault from the latest creatinine and body weight in the
    window, age and sex. Whatever input is missing leaves it to confirm (never not met: the record's
    silence says nothing of the kidneys)."""
    creat_test = ctx.trial.tests[rule.derive_from["creatinine"]]
    weight_test = ctx.trial.tests[rule.derive_from["weight"]]
    creat = pick_latest(ctx, creat_test, window)
    weight = pick_latest(ctx, weight_test, window)
    patient = ctx.record.patient
    ages = ctx.age()
    lacking: list[str] = []
    why: list[str] = [pick.why_missing]
    evidence: list[str] = []
    facts: list[Fact] = []
    for spec, found in ((creat_test, creat), (weight_test, weight)):
        if found.value is None:
            lacking.append(spec.label + (f" ({spec.order})" if spec.order else ""))
            why.append(found.why_missing)
        elif found.value.low != found.value.high:
            lacking.append(f"{spec.label} as an exact value")
            why.append(f"{spec.label} {found.value.shown} is not an exact value")
        else:
            evidence.append(found.value.obs.ref)
            facts.append(_input_fact(spec.label, found.value))
    if patient is None or ages is None or ages[0] != ages[1]:
        lacking.append("age")
        why.append("age not known to the year")
    if patient is None or patient.gender not in ("male", "female"):
        lacking.append("sex")
        why.append("sex not recorded as male or female")
    if lacking:
        return RuleResult(
            Status.UNKNOWN,
            "; ".join(why) + f"; {test.label} cannot be computed (Cockcroft-Gault)",
            tuple(evidence),
            tuple(facts),
            tuple(lacking),
        )
    assert creat.value is not None and weight.value is not None and patient is not None and ages is not None
    sex = patient.gender or ""
    mg_dl = convert(creat.value.value, creat_test.unit, "mg/dL", creat_test.molar_mass_g_per_mol)
    kg = convert(weight.value.value, weight_test.unit, "kg")
    if mg_dl is None or kg is None or mg_dl <= 0:  # units checked at load; a zero creatinine is an error
        return RuleResult(
            Status.UNKNOWN,
            f"{pick.why_missing}; creatinine {creat.value.shown} cannot be used for Cockcroft-Gault",
            tuple(evidence),
            tuple(facts),
            (test.label,),
        )
    ml_min = cockcroft_gault(mg_dl, ages[0], kg, sex)
    in_unit = convert(ml_min, "mL/min", test.unit)
    assert in_unit is not None  # checked when the trial was loaded
    lab = LabValue(creat.value.obs, in_unit, in_unit, quantity(in_unit, test.unit, test.display_unit))
    female = " × 0.85" if sex == "female" else ""
    note = (
        f" (computed: Cockcroft-Gault (140 − {ages[0]}) × {quantity(kg, 'kg')}{female} / "
        f"(72 × creatinine {quantity(mg_dl, 'mg/dL')}), {sex}; "
        f"no {test.label} reported within {window.describe()})"
    )
    return compare(
        rule,
        ctx,
        test,
        lab,
        label=f"{test.label} (Cockcroft-Gault)",
        derived_note=note,
        extra_evidence=(weight.value.obs.ref, patient.ref),
        extra_facts=tuple(facts),  # the inputs, each with its date and resource
    )


class LabPlan(LabCriterion):
    """A lab rule in a trial's plan (``cds.rules.labs.LabRule.plan``): evaluated by :func:`evaluate_lab`,
    here rather than in ``labs``, which this module imports."""

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_lab(self, ctx)
