"""Values as clinicians write them: "2.1 × 10⁹/L", "1.1 mg/dL", "28 Oct 2026".

The engine writes days in ISO form ("2026-10-28", :func:`day`): its reasons and facts are data, read by
programs too. Whatever people read — cards, order cards, pages, the command line's text — passes them
through :func:`cds.cards.clinical_dates` (or ``clinical_day`` for a day alone): one format for people
everywhere."""

from __future__ import annotations

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
