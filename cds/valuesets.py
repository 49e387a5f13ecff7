"""Named value sets (``fhir_mappings/valuesets/*.yaml``) and the matching of FHIR codings against them.

A value set is data: a wrong code is fixed in its YAML file, never here. See ``docs/value-sets.md``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAPPINGS_DIR = Path(__file__).resolve().parent.parent / "fhir_mappings"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CVX = "http://hl7.org/fhir/sid/cvx"
NAME_SUFFIX_SYSTEM = "urn:trial-cds:name-suffix"
_CODE_CACHE_MAX = 20_000
# libyaml's safe loader where the platform has it: value sets hold tens of thousands of codes, and the
# pure-Python parser takes seconds over them.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CodeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system: str
    code: str | None = None
    display: str
    match: Literal["exact", "prefix", "range", "regex", "suffix"] = "exact"
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    value: float | int | str | None = None
    verified: bool = True
    note: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> CodeEntry:
        if self.match == "range":
            if not (self.from_ and self.to):
                raise ValueError("a range entry needs `from` and `to`")
        elif not self.code:
            raise ValueError(f"a {self.match} entry needs `code`")
        if self.match == "regex" and self.code:
            re.compile(self.code)
        return self


class NameEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    value: float | int | str | None = None


class DoseException(BaseModel):
    """A drug of the set that is outside its class at or below a dose and schedule: methotrexate up to
    25 mg once weekly is immunosuppression, not anticancer therapy. Each threshold says its source."""

    model_config = ConfigDict(extra="forbid")

    drug: str
    include: list[CodeEntry] = Field(default_factory=list)  # the drug's codes (ingredient, ATC)
    names: list[str] = Field(default_factory=list)  # its names (products are often matched by name)
    max_mg_per_dose: float = Field(gt=0)
    max_doses_per_week: float = Field(gt=0)
    instead: str  # what the drug is at that dose, for the reason ("immunosuppression")
    source: str

    @model_validator(mode="after")
    def _named(self) -> DoseException:
        if not self.include and not self.names:
            raise ValueError(f"dose exception {self.drug!r} needs `include` codes or `names`")
        return self


class ValueSetFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    source: str
    notes: str | None = None
    include: list[CodeEntry] = Field(default_factory=list)
    exclude: list[CodeEntry] = Field(default_factory=list)
    names: list[NameEntry | str] = Field(default_factory=list)
    dose_exceptions: list[DoseException] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> ValueSetFile:
        if not self.include and not self.names:
            raise ValueError("a value set needs `include` codes or `names`")
        return self


def normalise_code(system: str, code: str) -> str:
    code = code.strip()
    if system == ICD10CM:
        return code.replace(".", "").upper()
    if system == CVX and code.isdigit():
        return str(int(code))  # CVX is written "03" and "3"
    return code


@dataclass(frozen=True)
class Match:
    """Why a coding or text matched: shown in the evidence, so a clinician can see how it was read."""

    value: float | int | str | None
    via: str  # "code" or "name"
    label: str


@dataclass(frozen=True)
class DoseRule:
    """A :class:`DoseException` ready for matching: its drug as a value set of its own."""

    drug: str
    drugs: ValueSet
    max_mg_per_dose: float
    max_doses_per_week: float
    instead: str
    source: str


@dataclass
class ValueSet:
    id: str
    title: str
    source: str
    _exact: dict[tuple[str, str], CodeEntry] = field(default_factory=dict)
    _patterns: list[CodeEntry] = field(default_factory=list)
    _exclude_exact: set[tuple[str, str]] = field(default_factory=set)
    _exclude_patterns: list[CodeEntry] = field(default_factory=list)
    # All names in one alternation: one regex scan per text instead of one per name.
    _names_any: re.Pattern[str] | None = None
    _names_by_text: dict[str, NameEntry] = field(default_factory=dict)
    _suffixes: list[tuple[re.Pattern[str], CodeEntry]] = field(default_factory=list)
    _cache: dict[tuple[str, str], Match | None] = field(default_factory=dict)
    entries: list[CodeEntry] = field(default_factory=list)
    dose_rules: list[DoseRule] = field(default_factory=list)

    @classmethod
    def from_file(cls, data: ValueSetFile) -> ValueSet:
        vs = cls(id=data.id, title=data.title, source=data.source, entries=list(data.include))
        for entry in data.include:
            if entry.system == NAME_SUFFIX_SYSTEM:
                assert entry.code is not None
                vs._suffixes.append((re.compile(rf"\b\w+{re.escape(entry.code)}\b", re.I), entry))
            elif entry.match == "exact":
                assert entry.code is not None
                vs._exact[(entry.system, normalise_code(entry.system, entry.code))] = entry
            else:
                vs._patterns.append(entry)
        for entry in data.exclude:
            if entry.match == "exact":
                assert entry.code is not None
                vs._exclude_exact.add((entry.system, normalise_code(entry.system, entry.code)))
            else:
                vs._exclude_patterns.append(entry)
        for name in data.names:
            entry_name = NameEntry(text=name) if isinstance(name, str) else name
            vs._names_by_text.setdefault(entry_name.text.lower(), entry_name)
        if vs._names_by_text:
            longest_first = sorted(vs._names_by_text, key=len, reverse=True)
            alternation = "|".join(re.escape(t) for t in longest_first)
            vs._names_any = re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.I)
        for exc in data.dose_exceptions:
            drugs = cls.from_file(
                ValueSetFile(
                    id=f"{data.id}#{exc.drug}",
                    title=exc.drug,
                    source=exc.source,
                    include=exc.include,
                    names=list(exc.names),
                )
            )
            vs.dose_rules.append(
                DoseRule(exc.drug, drugs, exc.max_mg_per_dose, exc.max_doses_per_week, exc.instead, exc.source)
            )
        return vs

    def match_code(self, system: str, code: str) -> Match | None:
        key = (system, code)
        if key in self._cache:
            return self._cache[key]
        result = self._match_code(system, normalise_code(system, code))
        if len(self._cache) >= _CODE_CACHE_MAX:  # codes come from callers: keep the memo bounded
            self._cache.clear()
        self._cache[key] = result
        return result

    def _match_code(self, system: str, code: str) -> Match | None:
        if (system, code) in self._exclude_exact or any(
            _pattern_matches(e, system, code) for e in self._exclude_patterns
        ):
            return None
        entry = self._exact.get((system, code))
        if entry is None:
            entry = next((e for e in self._patterns if _pattern_matches(e, system, code)), None)
        if entry is None:
            return None
        return Match(value=entry.value, via="code", label=entry.display)

    def match_text(self, text: str) -> Match | None:
        if self._names_any is not None:
            found_name = self._names_any.search(text)
            if found_name:
                name = self._names_by_text[found_name.group(0).lower()]
                return Match(value=name.value, via="name", label=name.text)
        for pattern, entry in self._suffixes:
            found = pattern.search(text)
            if found:
                return Match(value=entry.value, via="name", label=found.group(0).lower())
        return None

    def code_list(self) -> list[CodeEntry]:
        return list(self.entries)


def _pattern_matches(entry: CodeEntry, system: str, code: str) -> bool:
    if entry.system != system:
        return False
    if entry.match == "prefix":
        assert entry.code is not None
        return code.startswith(normalise_code(system, entry.code))
    if entry.match == "range":
        assert entry.from_ is not None and entry.to is not None
        lo, hi = normalise_code(system, entry.from_), normalise_code(system, entry.to)
        head = code[: max(len(lo), len(hi))]
        return lo <= head <= hi
    if entry.match == "regex":
        assert entry.code is not None
        return re.match(entry.code, code) is not None or re.match(entry.code, _dotted(system, code)) is not None
    if entry.match == "suffix":
        assert entry.code is not None
        return code.endswith(entry.code)
    return False


def _dotted(system: str, code: str) -> str:
    """ICD-10-CM as usually written, with its dot after the category, for regex entries written that way."""
    if system == ICD10CM and len(code) > 3:
        return f"{code[:3]}.{code[3:]}"
    return code


_MAX_SEEN_SYSTEMS = 4096


class SystemAliases:
    """Maps the system URIs seen in real data onto the canonical ones the value sets use."""

    def __init__(self, canonical_to_aliases: Mapping[str, Iterable[str]]) -> None:
        self._map: dict[str, str] = {}
        for canonical, aliases in canonical_to_aliases.items():
            self._map[canonical.rstrip("/").lower()] = canonical
            for alias in aliases or ():
                self._map[str(alias).rstrip("/").lower()] = canonical
        self._seen: dict[str, str] = {}

    def canonical(self, system: str) -> str:
        found = self._seen.get(system)
        if found is None:
            found = self._map.get(system.rstrip("/").lower(), system)
            if len(self._seen) < _MAX_SEEN_SYSTEMS:  # bounded: systems come from request data
                self._seen[system] = found
        return found


class ValueSetError(ValueError):
    pass


#: Whether a code (or a diagnosis) matches, by what it was matched against: memo entries of the library.
Verdicts = dict[tuple[object, ...], bool]


class ValueSetLibrary:
    def __init__(self, sets: Mapping[str, ValueSet], aliases: SystemAliases) -> None:
        self._sets = dict(sets)
        self.aliases = aliases
        #: Concept → value-set match results, filled and bounded by cds.engine.context.EvalContext.match.
        self.match_memo: dict[tuple[object, ...], Match | None] = {}
        #: (canonical system, code) → {value-set names: does any of them hold the code}, and
        #: (diagnosis, morphology) → {(value sets, exclusions, names): does it match}, filled and
        #: bounded by cds.engine.context.EvalContext: a value set is matched once per distinct code.
        self.code_verdicts: dict[tuple[str, str], Verdicts] = {}
        self.concept_verdicts: dict[tuple[object, ...], Verdicts] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._sets

    def __getitem__(self, name: str) -> ValueSet:
        try:
            return self._sets[name]
        except KeyError:
            raise ValueSetError(f"unknown value set {name!r}") from None

    def ids(self) -> list[str]:
        return sorted(self._sets)

    def layered(self, local: Mapping[str, ValueSet]) -> ValueSetLibrary:
        """This library with ``local`` sets added, a local set replacing the one of the same name (a new
        library: its match memos start empty, as they depend on the sets)."""
        return ValueSetLibrary({**self._sets, **local}, self.aliases)

    @classmethod
    def load(cls, directory: Path | None = None) -> ValueSetLibrary:
        base = directory or MAPPINGS_DIR
        sets = read_valuesets(base / "valuesets")
        aliases_path = base / "systems.yaml"
        aliases_raw: Any = {}
        if aliases_path.exists():
            aliases_raw = yaml.safe_load(aliases_path.read_text(encoding="utf-8")) or {}
        return cls(sets, SystemAliases(aliases_raw))


def read_valuesets(folder: Path) -> dict[str, ValueSet]:
    """The value sets of ``folder/*.yaml`` by id; ``ValueSetError`` with every problem of every file."""
    sets: dict[str, ValueSet] = {}
    errors: list[str] = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
            data = ValueSetFile.model_validate(raw)
        except Exception as exc:  # every problem in every file, reported together
            errors.append(f"{path.name}: {exc}")
            continue
        if data.id != path.stem:
            errors.append(f"{path.name}: id {data.id!r} differs from the file name")
            continue
        sets[data.id] = ValueSet.from_file(data)
    if errors:
        raise ValueSetError(f"invalid value sets in {folder}:\n" + "\n".join(errors))
    return sets


@lru_cache(maxsize=4)
def default_library(directory: Path | None = None) -> ValueSetLibrary:
    return ValueSetLibrary.load(directory)
