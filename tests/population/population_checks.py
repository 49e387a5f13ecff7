"""Checks over an assessed population (e.g. a Synthea export): pure functions of a record, its trial and
its Assessment, for tests to assert on.

:func:`stale_exclusions`: no criterion that rules the patient out (an exclusion met, an inclusion not met)
may rest on an evidence entry older than its rule's horizon (docs/criteria.md, "Currency"). Written apart
from the engine's own reading of currency, so that it can catch the engine: it walks the criterion's rule
for the leaves that could have used each evidence entry (by value set) and asks of the entry's own dates
only what the trial file says."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cds.assessment import Assessment
from cds.record import PatientRecord
from cds.record.dates import FhirDate, add_months
from cds.record.model import Concept, Condition, MedicationUse
from cds.rules.base import Window
from cds.rules.conditions import ConditionRule
from cds.rules.events import ProcedureRule
from cds.rules.kinds import iter_leaves
from cds.rules.medications import MedicationRule
from cds.trials import Trial
from cds.valuesets import ValueSetLibrary, default_library


@dataclass(frozen=True)
class StaleExclusion:
    """A criterion that rules the patient out on an entry whose own dates are all older than the horizon
    of every rule that asks about the present and could have used it."""

    criterion: str
    resource: str
    latest: date  # the latest date the entry states of itself
    horizon: str  # the most lenient horizon among those rules, as the trial file states it

    def __str__(self) -> str:
        return f"{self.criterion}: {self.resource} (latest date {self.latest}) older than {self.horizon}"


def stale_exclusions(
    record: PatientRecord, trial: Trial, assessment: Assessment, library: ValueSetLibrary | None = None
) -> list[StaleExclusion]:
    """Every criterion of ``assessment`` that rules the patient out on an entry older than its rule's
    horizon; empty when there is none. Entries without any date are not judged (the record states them
    as current); an entry that a rule about a history ever could also have used is not judged either."""
    lib = library or default_library()
    today = assessment.evaluated_at.date()
    conditions = {c.ref: c for c in record.conditions}
    medications = {m.ref: m for m in record.medications}
    found: list[StaleExclusion] = []
    for result in assessment.criteria:
        if not result.rules_out:
            continue
        leaves = list(iter_leaves(trial.criterion(result.id).rule))
        for ref in dict.fromkeys(result.evidence):
            entry: Condition | MedicationUse | None = conditions.get(ref) or medications.get(ref)
            if entry is None:
                continue
            stale = _stale(entry, leaves, trial, lib, today)
            if stale is not None:
                found.append(StaleExclusion(result.id, ref, stale[0], stale[1]))
    return found


def _stale(
    entry: Condition | MedicationUse, leaves: list[object], trial: Trial, lib: ValueSetLibrary, today: date
) -> tuple[date, str] | None:
    latest = _latest(entry)
    if latest is None:
        return None
    horizons: list[Window] = []
    for leaf in leaves:
        reads_now, horizon = _reading(leaf, entry, trial, lib)
        if reads_now is None:
            continue  # the leaf cannot have used this entry
        if not reads_now or horizon is None:
            return None  # a history ever, or a lifelong status, may rest on an old entry
        horizons.append(horizon)
    if not horizons:
        return None
    widest = min(horizons, key=lambda w: _start(w, today))  # the earliest start: the most lenient
    if latest.toordinal() < _start(widest, today):
        return latest, widest.describe()
    return None


def _reading(
    leaf: object, entry: Condition | MedicationUse, trial: Trial, lib: ValueSetLibrary
) -> tuple[bool | None, Window | None]:
    """(None, None) when the leaf cannot have used the entry; (False, None) when it asks about a history
    ever; (True, its horizon, None for lifelong) when it asks about the present."""
    if isinstance(entry, Condition):
        if isinstance(leaf, ProcedureRule) and leaf.before_onset_of:
            return (False, None) if _in(lib, entry.code, leaf.before_onset_of, []) else (None, None)
        if not isinstance(leaf, ConditionRule) or not _in(lib, entry.code, leaf.valuesets, leaf.exclude_valuesets):
            return None, None
        if leaf.status != "active" and leaf.active_within is None:
            return False, None
        bounds = [leaf.lasts_at_most] if leaf.lasts_at_most is not None else []
        horizon = leaf.horizon if leaf.horizon is not None else trial.horizons.condition
        if isinstance(horizon, Window):
            bounds.append(horizon)
        return True, min(bounds, key=_months) if bounds else None
    if not isinstance(leaf, MedicationRule) or not _in(lib, entry.medication, leaf.valuesets, leaf.exclude_valuesets):
        return None, None
    if leaf.window is None:
        return False, None
    horizon = leaf.horizon if leaf.horizon is not None else trial.horizons.medication
    return True, horizon if isinstance(horizon, Window) else None


def _in(lib: ValueSetLibrary, concept: Concept, valuesets: list[str], exclude: list[str]) -> bool:
    """By code or by name (a superset of the engine's matching, which reads names only in some cases)."""
    canonical = lib.aliases.canonical

    def hit(names: list[str]) -> bool:
        for name in names:
            vs = lib[name]
            if any(vs.match_code(canonical(c.system), c.code) for c in concept.codings):
                return True
            if any(vs.match_text(t) for t in concept.texts()):
                return True
        return False

    return hit(valuesets) and not hit(exclude)


def _latest(entry: Condition | MedicationUse) -> date | None:
    if isinstance(entry, Condition):
        dates: list[FhirDate | None] = [entry.onset, entry.recorded, entry.abatement, entry.latest]
    else:
        dates = [entry.start, entry.end, entry.latest]
    days = [d.latest_day() for d in dates if d is not None]
    return max(days) if days else None


def _start(window: Window, today: date) -> int:
    if window.days is not None:
        return today.toordinal() - window.days
    return add_months(today, -(window.months or 0)).toordinal()


def _months(window: Window) -> float:
    return window.days / 30.44 if window.days is not None else float(window.months or 0)
