"""Unit conversion with UCUM (ucumvert over pint): no hand table of factors.

Conversion factors are computed once per (from, to, molar mass) and cached, because pint is slow and a
patient has thousands of results in a handful of units."""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

# Spellings seen in lab feeds that are not UCUM, rewritten to the UCUM they mean. This is spelling,
# not conversion: every factor still comes from the UCUM library.
_SPELLINGS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?:x\s*)?10\^(\d+)\s*/\s*", re.I), r"10*\1/"),
    (re.compile(r"^(?:x\s*)?10e(\d+)\s*/\s*", re.I), r"10*\1/"),
    (re.compile(r"^k/(u|µ|μ)l$", re.I), "10*3/uL"),
    (re.compile(r"^thou/(u|µ|μ)l$", re.I), "10*3/uL"),
    (re.compile(r"^m/(u|µ|μ)l$", re.I), "10*6/uL"),
    (re.compile(r"/\s*1\.73\s*\.?\s*m(?:2|²|\^2)$", re.I), "/{1.73_m2}"),
    (re.compile(r"^meq/", re.I), "meq/"),
    (re.compile(r"mcl$", re.I), "uL"),  # "K/mcL", "cells/mcL"
    (re.compile(r"^k/ul$", re.I), "10*3/uL"),
    (re.compile(r"^cells/", re.I), "/"),  # "cells/uL": a count per volume
    (re.compile(r"^(sec|secs|second|seconds)$", re.I), "s"),
    (re.compile(r"^gm/", re.I), "g/"),
    # A viral load counted in copies ("copies/mL", "cp/mL"): UCUM writes the count as an annotation.
    (re.compile(r"^(?:\{?copies\}?|cp|copy)\s*/\s*ml$", re.I), "{copies}/mL"),
]

# Units whose case lab feeds lose ("mg/dl", "u/l", "ml/min"), written as UCUM spells them.
_UCUM_CASE: dict[str, str] = {
    u.lower(): u
    for u in ("mg/dL", "g/dL", "mg/L", "g/L", "mmol/L", "umol/L", "U/L", "U/mL", "meq/L", "mL/min", "ng/mL", "pg/mL")
}

_lock = threading.Lock()
_registry: Any = None


def _ureg() -> Any:
    global _registry
    with _lock:
        if _registry is None:
            from ucumvert import PintUcumRegistry

            _registry = PintUcumRegistry()
        return _registry


@lru_cache(maxsize=1024)
def normalise_unit(unit: str) -> str:
    text = unit.strip().replace("µ", "u").replace("μ", "u")
    for pattern, replacement in _SPELLINGS:
        text = pattern.sub(replacement, text)
    text = text.replace(" ", "")
    # International units and enzyme units are compared as one: labs write U/L and IU/L for the same.
    text = re.sub(r"\[iu\]|\biu\b", "U", text, flags=re.I)
    text = _UCUM_CASE.get(text.lower(), text)
    if text.lower().startswith("ml/min/"):
        text = "mL/min/" + text[len("ml/min/") :]
    return text


def _annotations(unit: str) -> frozenset[str]:
    return frozenset(re.findall(r"\{[^}]*\}", unit))


@lru_cache(maxsize=4096)
def conversion_factor(from_unit: str, to_unit: str, molar_mass_g_per_mol: float | None = None) -> float | None:
    """The factor that turns a value in ``from_unit`` into ``to_unit``, or None where no conversion exists.

    Mass and substance concentrations convert through the analyte's molar mass when one is given."""
    source, target = normalise_unit(from_unit), normalise_unit(to_unit)
    if source == target:
        return 1.0
    # pint drops UCUM annotations ({copies}, {cells}); different annotations are different things.
    if _annotations(source) != _annotations(target) and not (
        _annotations(source) <= {"{1.73_m2}"} and _annotations(target) <= {"{1.73_m2}"}
    ):
        return None
    ureg = _ureg()
    try:
        quantity = ureg.Quantity(1.0, ureg.from_ucum(source))
        goal = ureg.from_ucum(target)
    except Exception:
        return None
    try:
        return float(quantity.to(goal).magnitude)
    except Exception:
        pass
    if molar_mass_g_per_mol:
        molar_mass = ureg.Quantity(molar_mass_g_per_mol, "g/mol")
        for candidate in (quantity / molar_mass, quantity * molar_mass):
            try:
                return float(candidate.to(goal).magnitude)
            except Exception:
                continue
    return None


def convert(value: float, from_unit: str, to_unit: str, molar_mass_g_per_mol: float | None = None) -> float | None:
    factor = conversion_factor(from_unit, to_unit, molar_mass_g_per_mol)
    return None if factor is None else value * factor
