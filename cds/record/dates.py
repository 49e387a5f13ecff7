"""FHIR date, dateTime and instant values, read leniently: a malformed value is no value, never a crash."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


@dataclass(frozen=True, slots=True)
class FhirDate:
    """A point in time as written. ``day`` is the calendar date as the source wrote it (what a clinician
    reads); ``precision`` says whether the month or day were given."""

    day: date
    precision: str  # "year" | "month" | "day"
    text: str

    def latest_day(self) -> date:
        """The last calendar day the value could mean (for a partial date)."""
        if self.precision == "day":
            return self.day
        if self.precision == "month":
            return add_months(self.day, 1) - timedelta(days=1)
        return date(self.day.year, 12, 31)


def parse_fhir_date(value: object) -> FhirDate | None:
    if not isinstance(value, str):
        return None
    return _parse_fhir_date(value)


@lru_cache(maxsize=8192)
def _parse_fhir_date(value: str) -> FhirDate | None:
    """Cached: the results of one blood draw share their timestamp, and FhirDate is immutable."""
    found = _DATE.match(value.strip())
    if not found:
        return None
    year, month, day = found.groups()
    try:
        if day:
            return FhirDate(date(int(year), int(month), int(day)), "day", value)
        if month:
            return FhirDate(date(int(year), int(month), 1), "month", value)
        return FhirDate(date(int(year), 1, 1), "year", value)
    except ValueError:
        return None


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise ValueError("unreachable")


def age_in_years(birth: date, on: date) -> int:
    years = on.year - birth.year
    if (on.month, on.day) < (birth.month, birth.day):
        years -= 1
    return years

