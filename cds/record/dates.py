"""FHIR date, dateTime and instant values, read leniently: a malformed value is no value, never a crash."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final, cast

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_NOT_SEEN: Final = object()


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


_DATE_MEMO_MAX: Final = 8192
_date_memo: Final[dict[str, FhirDate | None]] = {}


def parse_fhir_date(value: object) -> FhirDate | None:
    """Remembered: the results of one blood draw share their timestamp, and FhirDate is immutable. A
    plain dict, emptied when full (the values come from request data), rather than ``lru_cache``: a
    look-up in compiled code, not a call through the cache's wrapper, once per result."""
    if not isinstance(value, str):
        return None
    memo = _date_memo
    found = memo.get(value, _NOT_SEEN)
    if found is not _NOT_SEEN:
        return cast(FhirDate | None, found)
    parsed = _parse_fhir_date(value)
    if len(memo) >= _DATE_MEMO_MAX:
        memo.clear()
    memo[value] = parsed
    return parsed


def _parse_fhir_date(value: str) -> FhirDate | None:
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

