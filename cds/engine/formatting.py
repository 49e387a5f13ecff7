"""Values as clinicians write them: "2.1 × 10⁹/L", "1.1 mg/dL", "28 Oct 2026".

The engine writes days in ISO form ("2026-10-28", :func:`day`): its reasons and facts are data, read by
programs too. Whatever people read — cards, order cards, pages, the command line's text — passes them
through :func:`clinical_dates` (or :func:`clinical_day` for a day alone): one format for people
everywhere."""

from __future__ import annotations

import re
from datetime import date

from cds.record.dates import FhirDate

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def number(value: float) -> str:
    whole = int(value)  # raises on inf and nan, as before
    size = abs(value)
    if value == whole and size < 1e6:
        return str(whole)
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".")


def unit(ucum: str) -> str:
    """A UCUM unit as printed on a lab report."""
    text = ucum
    if text.startswith("10*"):
        exponent, _, rest = text[3:].partition("/")
        text = f"× 10{exponent.translate(_SUPERSCRIPT)}/{rest}" if rest else f"× 10{exponent.translate(_SUPERSCRIPT)}"
    if "u" in text or "{" in text or "[" in text:  # else none of the replacements applies
        text = text.replace("umol", "µmol").replace("uL", "µL").replace("{1.73_m2}", "1.73 m²").replace("[IU]", "IU")
    return text


def quantity(value: float, ucum: str, display_unit: str | None = None) -> str:
    shown = display_unit if display_unit is not None else unit(ucum)
    sep = "" if shown in ("%", "") else " "
    return f"{number(value)}{sep}{shown}"


def day(value: FhirDate | date | None) -> str:
    if value is None:
        return "undated"
    if isinstance(value, FhirDate):
        return (
            value.text[:10]
            if value.precision == "day"
            else value.text[:7]
            if value.precision == "month"
            else value.text[:4]
        )
    return value.isoformat()


def age_days(when: FhirDate, today: date) -> str:
    days = (today - when.day).days
    if days < 60:
        return f"{days} days ago"
    if days < 730:
        return f"{days // 30} months ago"
    return f"{days // 365} years ago"


_ISO_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _day_text(year: str, month: str, day_of_month: str, written: str) -> str:
    """An ISO day's parts as "28 Oct 2026"; ``written`` as it was where the month is not one."""
    number = int(month)
    return f"{int(day_of_month)} {_MONTHS[number - 1]} {year}" if 1 <= number <= 12 else written


def _clinical_day(m: re.Match[str]) -> str:
    return _day_text(m.group(1), m.group(2), m.group(3), m.group(0))


def clinical_dates(text: str) -> str:
    """ISO days as clinicians write them, unambiguous in any locale: 2026-10-28 → 28 Oct 2026."""
    return _ISO_DAY.sub(_clinical_day, text) if "-" in text else text


def clinical_day(value: str | date) -> str:
    """:func:`clinical_dates` of a day alone (a ``date``, or "2026-10-28" as the engine writes a Fact's
    date), without the regular expression where it is a whole ISO day."""
    if isinstance(value, date):
        value = value.isoformat()
    if (
        len(value) == 10
        and value[4] == "-"
        and value[7] == "-"
        and value[:4].isdecimal()  # what \d matches
        and value[5:7].isdecimal()
        and value[8:].isdecimal()
    ):
        return _day_text(value[:4], value[5:7], value[8:], value)
    return clinical_dates(value)
