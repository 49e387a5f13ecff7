"""Lab results from Observation, against a fixed threshold or the result's reference range, of one of the
trial's lab tests (``tests:``, ``cds.rules.base.LabTest``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from cds.engine.context import EvalContext
from cds.engine.formatting import number, quantity
from cds.engine.result import RuleResult
from cds.engine.rules.derived import LabPlan
from cds.rules.base import (
    OUTCOME_TEXT,
    Describer,
    LabTest,
    LeafRule,
    Outcome,
    SettingsKeys,
    Window,
    span_of,
    window_text,
)
from cds.units import conversion_factor

_OP_TEXT = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}


class LabRule(LeafRule):
    type: Literal["lab"]
    test: str
    op: Literal[">=", ">", "<=", "<", "outside_range"]
    value: float | None = None
    unit: str | None = None
    times_uln: float | None = None
    times_lln: float | None = None
    window: Window | None = None
    derive: Literal["ckd_epi_2021", "corrected_calcium", "cockcroft_gault"] | None = None
    derive_from: dict[str, str] = Field(default_factory=dict)
    when_missing: Outcome = "unknown"

    @model_validator(mode="after")
    def _threshold(self) -> LabRule:
        given = [x is not None for x in (self.value, self.times_uln, self.times_lln)]
        if self.op == "outside_range":
            if any(given):
                raise ValueError("op outside_range takes no threshold")
        elif sum(given) != 1:
            raise ValueError("a lab rule gives exactly one of `value`, `times_uln`, `times_lln`")
        return self

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return self.plan().evaluate(ctx)

    def result_key(self, settings: SettingsKeys) -> str:
        # The tests it names (its own, and those a derived value is calculated from), and the trial's
        # measurement window where it has none of its own.
        names = [self.test, *sorted(set(self.derive_from.values()))]
        tests = ",".join(f"{name}={settings.tests.get(name, '')}" for name in names)
        window = settings.measurement_window if self.window is None else ""
        return f"lab:{self.model_dump_json()}|{tests}|{window}"

    def plan(self) -> LabPlan:
        return LabPlan(
            test=self.test,
            op=self.op,
            value=self.value,
            unit=self.unit,
            times_uln=self.times_uln,
            times_lln=self.times_lln,
            window=span_of(self.window),
            derive=self.derive,
            derive_from=self.derive_from,
            when_missing=self.when_missing,
        )

    def resource_types(self) -> tuple[str, ...]:
        return ("Observation",)

    def valueset_names(self) -> list[str]:
        return []  # the test's value sets are the trial's `tests:`, checked with them

    def problems(self, tests: Mapping[str, LabTest]) -> list[str]:
        test = tests.get(self.test)
        if test is None:
            return [f"unknown test {self.test!r}"]
        problems: list[str] = []
        if self.value is not None:
            unit = self.unit or test.unit
            if conversion_factor(unit, test.unit, test.molar_mass_g_per_mol) is None:
                problems.append(f"unit {unit!r} does not convert to {test.unit!r}")
        for role in self.derive_from.values():
            if role not in tests:
                problems.append(f"derive_from names unknown test {role!r}")
        if self.derive == "ckd_epi_2021" and "creatinine" not in self.derive_from:
            problems.append("ckd_epi_2021 needs derive_from.creatinine")
        if self.derive == "corrected_calcium" and "albumin" not in self.derive_from:
            problems.append("corrected_calcium needs derive_from.albumin")
        if self.derive == "cockcroft_gault":
            needed = [r for r in ("creatinine", "weight") if r not in self.derive_from]
            problems += [f"cockcroft_gault needs derive_from.{r}" for r in needed]
            if conversion_factor(test.unit, "mL/min") is None:
                problems.append(f"cockcroft_gault gives mL/min, which does not convert to {test.unit!r}")
            weight = tests.get(self.derive_from.get("weight", ""))
            if weight is not None and conversion_factor(weight.unit, "kg") is None:
                problems.append(f"cockcroft_gault weight test {weight.unit!r} does not convert to kg")
        return problems

    def logic_fields(self) -> dict[str, Any]:
        return {"test": self.test}

    def describe(self, page: Describer) -> str:
        test = page.test(self.test)
        label = test.label
        if self.op == "outside_range":
            text = f"{label} outside its reference range"
        elif self.value is not None:
            text = f"{label} {_OP_TEXT[self.op]} {quantity(self.value, self.unit or test.unit, test.display_unit)}"
        elif self.times_uln is not None:
            text = f"{label} {_OP_TEXT[self.op]} {number(self.times_uln)} × ULN"
        else:
            text = f"{label} {_OP_TEXT[self.op]} {number(self.times_lln or 0)} × LLN"
        window = self.window or page.measurement_window
        text += f"; latest result within {window_text(window)}"
        if self.derive == "ckd_epi_2021":
            text += "; without an eGFR result, calculated from creatinine, age and sex (CKD-EPI 2021)"
        elif self.derive == "corrected_calcium":
            text += "; total calcium corrected for albumin, or ionized calcium"
        elif self.derive == "cockcroft_gault":
            text += (
                "; without a reported creatinine clearance, calculated from creatinine, age, sex and body weight "
                "(Cockcroft-Gault); creatinine or weight missing: to confirm"
            )
        if self.derive == "cockcroft_gault":
            pass  # no result at all is to confirm, said above: the rule's `when_missing` is not read
        elif self.when_missing == "unknown":
            order = f" (order: {test.order})" if test.order else ""
            text += f"; no result: to confirm{order}"
        else:
            text += f"; no result: {OUTCOME_TEXT[self.when_missing]}"
        return text
