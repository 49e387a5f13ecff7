"""What every rule evaluator needs: the record, the evaluation date, the trial and the value sets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

from cds.engine.result import RuleResult
from cds.record import PatientRecord
from cds.record.dates import FhirDate, add_months, age_in_years
from cds.record.model import Concept, Condition, Observation
from cds.valuesets import Match, ValueSetLibrary, Verdicts

NameUse = Literal["always", "uncoded", "never"]
STANDARD_SYSTEMS = frozenset(
    {
        "http://snomed.info/sct",
        "http://loinc.org",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://terminology.hl7.org/CodeSystem/icd-o-3",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://www.whocc.no/atc",
        "http://hl7.org/fhir/sid/cvx",
    }
)


#: Entries of the value-set match memo shared across evaluations (ValueSetLibrary.match_memo).
MATCH_MEMO_LIMIT = 50_000
#: Distinct codes (and diagnoses) whose value-set verdicts are kept across evaluations.
VERDICT_MEMO_LIMIT = 50_000

Diagnosis = tuple[Concept, tuple[Concept, ...]]  # a Condition's (code, morphology)


def newest_first_key(o: Observation) -> tuple[int, str]:
    """The order of results, sorted in reverse: by day, then by the full timestamp as written."""
    return (o.when.day.toordinal() if o.when else 0, o.sort_key)


# What the engine reads of the trial file is declared here as protocols: the trial's models (cds.rules,
# cds.trials) import the engine, never the other way round, and mypy checks that each model fits.


class WindowSpec(Protocol):
    """A look-back window from the evaluation date (a trial file's ``cds.rules.base.Window``): exactly one
    of ``days`` and ``months``; both ends included."""

    @property
    def days(self) -> int | None: ...

    @property
    def months(self) -> int | None: ...

    def describe(self) -> str: ...


class RangeSpec(Protocol):
    """A lab test's default reference range (``cds.rules.base.RangeBound``), with per-sex overrides keyed
    "low" / "high"."""

    @property
    def low(self) -> float | None: ...

    @property
    def high(self) -> float | None: ...

    @property
    def male(self) -> dict[str, float] | None: ...

    @property
    def female(self) -> dict[str, float] | None: ...


class CodedCriterion(Protocol):
    """What every rule that looks for coded entries of the record names: its label (how reasons and facts
    call what it looks for) and the value sets of the codes that count."""

    @property
    def label(self) -> str: ...

    @property
    def valuesets(self) -> list[str]: ...


class ExcludingCriterion(CodedCriterion, Protocol):
    """A coded rule that also names value sets of codes that never count (``exclude_valuesets``)."""

    @property
    def exclude_valuesets(self) -> list[str]: ...


class LabTestSpec(Protocol):
    """One of the trial's lab tests (``tests:``, ``cds.rules.base.LabTest``) that lab rules name."""

    @property
    def label(self) -> str: ...

    @property
    def valuesets(self) -> list[str]: ...

    @property
    def unit(self) -> str: ...

    @property
    def display_unit(self) -> str | None: ...

    @property
    def molar_mass_g_per_mol(self) -> float | None: ...

    @property
    def default_range(self) -> RangeSpec | None: ...

    @property
    def order(self) -> str | None: ...

    @property
    def dimensionless(self) -> bool: ...


class HorizonsSpec(Protocol):
    """How long an "active" status is believed without a newer date of the entry's own, per rule kind
    (``cds.rules.base.Horizons``; docs/criteria.md, "Currency")."""

    @property
    def condition(self) -> WindowSpec: ...

    @property
    def medication(self) -> WindowSpec: ...


class TrialSettings(Protocol):
    """What rules read of the trial (a ``cds.trials.Trial``) besides their own parameters."""

    @property
    def tests(self) -> Mapping[str, LabTestSpec]: ...

    @property
    def measurement_window(self) -> WindowSpec: ...

    @property
    def horizons(self) -> HorizonsSpec: ...


class RecordIndex:
    """What the rules derive from a record and the value sets alone, whatever the trial and the date: the
    record's results by code, its diagnoses, and the matches per value-set tuple. Built once per record
    and library (:meth:`of`), so that every trial evaluated on the record in a call shares it: many trials
    read the same lists, and the index is the fixed part of a trial's cost."""

    def __init__(self, record: PatientRecord, library: ValueSetLibrary) -> None:
        # The lists the index is built from, not the record: the record holds its index, and a reference
        # back would make a cycle that only the garbage collector frees (a record per request).
        self.observations = record.observations
        self.conditions = record.conditions
        self.library = library
        # Matches per value-set tuple: many criteria (of one trial and of the others) read the same lists.
        self.condition_matches: dict[tuple[tuple[str, ...], tuple[str, ...], str], list[Condition]] = {}
        self.observation_matches: dict[tuple[str, ...], list[Observation]] = {}
        self._observations_by_code: dict[tuple[str, str], list[Observation]] | None = None
        self._conditions_by_concept: dict[tuple[Concept, tuple[Concept, ...]], list[int]] | None = None
        self._observation_groups: list[tuple[Verdicts, tuple[str, str], list[Observation]]] | None = None
        self._condition_groups: list[tuple[Verdicts, Diagnosis, list[int]]] | None = None

    @staticmethod
    def of(record: PatientRecord, library: ValueSetLibrary) -> RecordIndex:
        """The record's index for this library: kept on the record (a record is read, never changed, once
        built), so that evaluations of several trials on one record build it once."""
        held = record.engine_index
        if (
            isinstance(held, RecordIndex)
            and held.observations is record.observations  # not a copy made with other lists
            and held.conditions is record.conditions
            and held.library is library
        ):
            return held
        index = RecordIndex(record, library)
        record.engine_index = index
        return index

    def observation_groups(self) -> list[tuple[Verdicts, tuple[str, str], list[Observation]]]:
        """:meth:`observations_by_code` as (verdicts, code, Observations): ``verdicts`` says, per tuple of
        value-set names, whether any of them holds the code. It is shared by every evaluation on this
        library (a pure function of the code and the library), so a value set is matched against a code
        once per process, not once per request."""
        if self._observation_groups is None:
            shared = self.library.code_verdicts
            if len(shared) >= VERDICT_MEMO_LIMIT:  # bounded: codes come from request data
                shared.clear()
            self._observation_groups = [
                (shared.setdefault(code, {}), code, observations)
                for code, observations in self.observations_by_code().items()
            ]
        return self._observation_groups

    def condition_groups(self) -> list[tuple[Verdicts, Diagnosis, list[int]]]:
        """:meth:`conditions_by_concept` as (verdicts, (code, morphology), positions): ``verdicts`` says,
        per (value sets, exclusions, use of names), whether the diagnosis matches; shared by every
        evaluation on this library, as :meth:`observation_groups`."""
        if self._condition_groups is None:
            shared = self.library.concept_verdicts
            if len(shared) >= VERDICT_MEMO_LIMIT:  # bounded: diagnoses come from request data
                shared.clear()
            self._condition_groups = [
                (shared.setdefault(diagnosis, {}), diagnosis, positions)
                for diagnosis, positions in self.conditions_by_concept().items()
            ]
        return self._condition_groups

    def conditions_by_concept(self) -> dict[tuple[Concept, tuple[Concept, ...]], list[int]]:
        """The positions of the record's Conditions by (code, morphology), in record order: a value set is
        then matched once per distinct diagnosis, not once per Condition."""
        if self._conditions_by_concept is None:
            index: dict[tuple[Concept, tuple[Concept, ...]], list[int]] = {}
            for i, c in enumerate(self.conditions):
                index.setdefault((c.code, c.morphology), []).append(i)
            self._conditions_by_concept = index
        return self._conditions_by_concept

    def observations_by_code(self) -> dict[tuple[str, str], list[Observation]]:
        """The record's Observations indexed by (canonical system, code), newest first (ties in record
        order): a value set is then matched once per distinct code, not once per result, and a test's
        results need no sorting per criterion (oncology records hold thousands of results)."""
        if self._observations_by_code is None:
            observations = self.observations
            # Each result's sort key once, read by position: a code under several concepts is sorted again
            # below, and a long record's results sort in C without calling back per comparison.
            keys = [newest_first_key(o) for o in observations]
            by_key = keys.__getitem__
            # By concept first (a long record repeats a few concepts, shared objects), then by coding.
            by_concept: dict[Concept, list[int]] = {}
            for i, o in enumerate(observations):
                same = by_concept.get(o.code)
                if same is None:
                    by_concept[o.code] = [i]
                else:
                    same.append(i)
            positions_by_code: dict[tuple[str, str], list[int]] = {}
            merged: set[tuple[str, str]] = set()
            canonical = self.library.aliases.canonical
            for concept, positions in by_concept.items():
                positions.sort(key=by_key, reverse=True)  # stable: ties stay in record order
                for c in concept.codings:
                    key = (canonical(c.system), c.code)
                    found = positions_by_code.get(key)
                    if found is None:
                        positions_by_code[key] = list(positions)
                    else:
                        found.extend(positions)
                        merged.add(key)
            for key in merged:  # a code under several concepts: as if indexed one by one in record order, sorted
                positions = positions_by_code[key]
                positions.sort()
                positions.sort(key=by_key, reverse=True)
            self._observations_by_code = {
                key: [observations[i] for i in positions] for key, positions in positions_by_code.items()
            }
        return self._observations_by_code


class SharedResults:
    """The rules' results on one record at one moment with one library (``PatientRecord.engine_results``).
    The record is named by its id(), not held: a reference back would make a cycle that only the garbage
    collector frees (a record per request)."""

    def __init__(self, record_id: int, now: datetime, library: ValueSetLibrary) -> None:
        self.record_id = record_id
        self.now = now
        self.library = library
        self.results: dict[str, RuleResult] = {}


@dataclass
class EvalContext:
    record: PatientRecord
    now: datetime
    trial: TrialSettings
    library: ValueSetLibrary
    #: What the rules derive from the record alone, shared by every trial evaluated on it (RecordIndex.of).
    index: RecordIndex | None = None
    condition_matches: dict[tuple[tuple[str, ...], tuple[str, ...], str], list[Condition]] = field(init=False)
    observation_matches: dict[tuple[str, ...], list[Observation]] = field(init=False)
    # The evaluation date, read by most rules: computed once, not by every `now.date()`.
    today: date = field(init=False)
    #: Results of rules on this record at this moment, by what decides them (cds.engine.plan.SharedPlan):
    #: every trial evaluated on the record in a call reads and adds to the same.
    shared_results: dict[str, RuleResult] = field(init=False)
    _today_ordinal: int = field(init=False)

    def __post_init__(self) -> None:
        self.today = self.now.date()
        self._today_ordinal = self.today.toordinal()
        if self.index is None:
            self.index = RecordIndex.of(self.record, self.library)
        self.condition_matches = self.index.condition_matches
        self.observation_matches = self.index.observation_matches
        held = self.record.engine_results
        if not (
            isinstance(held, SharedResults)
            and held.record_id == id(self.record)
            and held.now == self.now
            and held.library is self.library
        ):
            held = SharedResults(id(self.record), self.now, self.library)
            self.record.engine_results = held
        self.shared_results = held.results

    def observation_groups(self) -> list[tuple[Verdicts, tuple[str, str], list[Observation]]]:
        assert self.index is not None
        return self.index.observation_groups()

    def condition_groups(self) -> list[tuple[Verdicts, Diagnosis, list[int]]]:
        assert self.index is not None
        return self.index.condition_groups()

    def conditions_by_concept(self) -> dict[tuple[Concept, tuple[Concept, ...]], list[int]]:
        assert self.index is not None
        return self.index.conditions_by_concept()

    def observations_by_code(self) -> dict[tuple[str, str], list[Observation]]:
        assert self.index is not None
        return self.index.observations_by_code()

    def window_start(self, window: WindowSpec) -> date:
        if window.days is not None:
            return date.fromordinal(self._today_ordinal - window.days)
        assert window.months is not None
        return add_months(self.today, -window.months)

    def in_window(self, when: FhirDate | None, window: WindowSpec | None) -> bool | None:
        """True/False, or None where the date is missing. A date after `now` is never inside."""
        if window is None:
            return when is None or when.day <= self.today
        if when is None:
            return None
        return self.window_start(window) <= when.day <= self.today

    def match(
        self,
        concept: Concept | None,
        valuesets: Iterable[str],
        *,
        names: NameUse = "always",
        exclude: Iterable[str] = (),
    ) -> Match | None:
        """The first value-set match of a concept's codings, then (last resort) of its text.

        ``names``: "always" falls back to names when no code matched (drugs: products carry SCD codes
        that only their ingredient name ties to a value set); "uncoded" only when the concept has no
        coding in a standard terminology (diagnoses and procedures: a standard code is trusted, and a
        word in its display such as "before radiotherapy" must not decide); "never"."""
        if concept is None:
            return None
        key = (concept, tuple(valuesets), names, tuple(exclude))
        # Shared by every evaluation on this library (a pure function of the key and the library):
        # patients share their codes, so most requests find every answer here, with one lookup (the key
        # hashes a Concept, through a Python-level __hash__).
        shared = self.library.match_memo
        try:
            return shared[key]
        except KeyError:
            pass
        found = self._match(concept, key[1], names, key[3])
        if len(shared) >= MATCH_MEMO_LIMIT:  # bounded: concepts come from request data
            shared.clear()
        shared[key] = found
        return found

    def _match(
        self, concept: Concept, valuesets: tuple[str, ...], names: NameUse, exclude: tuple[str, ...]
    ) -> Match | None:
        canonical = self.library.aliases.canonical
        excluded = [self.library[v] for v in exclude]
        for vs_name in valuesets:
            vs = self.library[vs_name]
            for coding in concept.codings:
                system = canonical(coding.system)
                found = vs.match_code(system, coding.code)
                if found and not any(x.match_code(system, coding.code) for x in excluded):
                    return found
        if names == "uncoded" and any(canonical(c.system) in STANDARD_SYSTEMS for c in concept.codings):
            return None
        if names != "never":
            for text in concept.texts():
                if any(x.match_text(text) for x in excluded):
                    continue
                for vs_name in valuesets:
                    found = self.library[vs_name].match_text(text)
                    if found:
                        return found
        return None

    def age(self) -> tuple[int, int] | None:
        """The patient's age in whole years on the evaluation date: (youngest, oldest) possible."""
        p = self.record.patient
        if p is None or p.birth_date is None:
            return None
        earliest, latest = p.birth_date.day, p.birth_date.latest_day()
        return age_in_years(latest, self.today), age_in_years(earliest, self.today)
