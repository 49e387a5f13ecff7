"""Radiotherapy courses: how many, when, what dose, how long before a later diagnosis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from cds.engine.context import EvalContext
from cds.engine.result import RuleResult
from cds.engine.rules.radiotherapy import dose_bounds_text, evaluate_radiotherapy
from cds.rules.base import Describer, LabTest, LeafRule, StrictModel, Window
from cds.units import conversion_factor


class DoseRange(StrictModel):
    """Bounds on a course's total dose delivered, in `unit` (cGy and Gy convert)."""

    gt: float | None = None
    min: float | None = None
    lt: float | None = None
    max: float | None = None
    unit: str = "Gy"

    @model_validator(mode="after")
    def _some(self) -> DoseRange:
        if self.gt is None and self.min is None and self.lt is None and self.max is None:
            raise ValueError("a dose range gives at least one of `gt`, `min`, `lt`, `max`")
        return self


class CourseCount(StrictModel):
    """How many courses satisfying the rule's conditions are asked for."""

    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> CourseCount:
        if self.max is not None and self.max < self.min:
            raise ValueError("`courses.max` is below `courses.min`")
        return self


class RadiotherapyRule(LeafRule):
    """Radiotherapy Procedures grouped into courses; met when the number of courses that satisfy every
    condition given (window, dose, before the onset of a diagnosis, ended long enough before it) is within
    `courses`."""

    type: Literal["radiotherapy"]
    label: str
    valuesets: list[str] = Field(default_factory=lambda: ["proc-radiotherapy"], min_length=1)
    exclude_valuesets: list[str] = Field(default_factory=list)
    course_summaries: list[str] = Field(default_factory=lambda: ["proc-radiotherapy-course-summary"])
    course_gap_days: int = Field(default=30, ge=1)
    window: Window | None = None
    dose: DoseRange | None = None
    before_onset_of: list[str] = Field(default_factory=list)
    onset_clinical_status: list[str] = Field(default_factory=list)
    ended_more_than_months_before_onset: int | None = Field(default=None, ge=0)
    courses: CourseCount = CourseCount()

    orders_read: ClassVar[frozenset[str]] = frozenset({"Procedure"})

    @model_validator(mode="after")
    def _interval_needs_onset(self) -> RadiotherapyRule:
        if self.ended_more_than_months_before_onset is not None and not self.before_onset_of:
            raise ValueError("`ended_more_than_months_before_onset` needs `before_onset_of`")
        if self.onset_clinical_status and not self.before_onset_of:
            raise ValueError("`onset_clinical_status` needs `before_onset_of`")
        return self

    def evaluate(self, ctx: EvalContext) -> RuleResult:
        return evaluate_radiotherapy(self, ctx)

    def problems(self, tests: Mapping[str, LabTest]) -> list[str]:
        if self.dose is not None and conversion_factor("cGy", self.dose.unit) is None:
            return [f"dose.unit: {self.dose.unit!r} is not a UCUM unit of absorbed dose (write Gy or cGy)"]
        return []

    def resource_types(self) -> tuple[str, ...]:
        return ("Procedure", "Condition") if self.before_onset_of else ("Procedure",)

    def valueset_names(self) -> list[str]:
        return self.valuesets + self.exclude_valuesets + self.course_summaries + self.before_onset_of

    def order_window(self) -> Window | None:
        return self.window

    def describe(self, page: Describer) -> str:
        want = self.courses
        if want.max is None:
            count = f"at least {want.min} course" + ("s" if want.min != 1 else "")
        elif want.max == want.min:
            count = f"exactly {want.min} course" + ("s" if want.min != 1 else "")
        else:
            count = f"{want.min} to {want.max} courses"
        text = f"Radiotherapy: {self.label}, {count} ({page.titles(self.valuesets)}"
        text += f"; entries more than {self.course_gap_days} days apart are separate courses)"
        if self.exclude_valuesets:
            text += f"; not counting {page.titles(self.exclude_valuesets)}"
        if self.window is not None:
            text += f"; given within {self.window.describe()}"
        if self.dose is not None:
            text += f"; total dose delivered {dose_bounds_text(self.dose)} (not recorded: to confirm)"
        if self.before_onset_of:
            text += f"; started before the onset of {page.titles(self.before_onset_of)}"
            if self.onset_clinical_status:
                text += f" (recorded as {' or '.join(self.onset_clinical_status)})"
        if self.ended_more_than_months_before_onset is not None:
            text += f", ended more than {self.ended_more_than_months_before_onset} months before it"
        return text
