"""A rule's answer, and the three-valued logic that combines answers."""

from __future__ import annotations

from dataclasses import dataclass, field

from cds.assessment import Fact, Status


@dataclass(frozen=True)
class RuleResult:
    status: Status
    reason: str
    evidence: tuple[str, ...] = ()
    facts: tuple[Fact, ...] = ()
    missing: tuple[str, ...] = ()


@dataclass
class _Merge:
    reasons: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def add(self, r: RuleResult) -> None:
        if r.reason and r.reason not in self.reasons:
            self.reasons.append(r.reason)
        for e in r.evidence:
            if e not in self.evidence:
                self.evidence.append(e)
        for f in r.facts:
            if f not in self.facts:
                self.facts.append(f)
        for m in r.missing:
            if m not in self.missing:
                self.missing.append(m)

    def result(self, status: Status) -> RuleResult:
        return RuleResult(status, "; ".join(self.reasons), tuple(self.evidence), tuple(self.facts), tuple(self.missing))


def _merge(status: Status, parts: list[RuleResult]) -> RuleResult:
    m = _Merge()
    for p in parts:
        m.add(p)
    return m.result(status)


def all_of(parts: list[RuleResult]) -> RuleResult:
    """not_met if any part is not_met; met if all are met; else unknown. Only deciding parts explain."""
    failed = [p for p in parts if p.status is Status.NOT_MET]
    if failed:
        return _merge(Status.NOT_MET, failed)
    unknown = [p for p in parts if p.status is Status.UNKNOWN]
    if unknown:
        return _merge(Status.UNKNOWN, unknown)
    return _merge(Status.MET, parts)


def any_of(parts: list[RuleResult]) -> RuleResult:
    """met if any part is met; not_met if all are not_met; else unknown."""
    met = [p for p in parts if p.status is Status.MET]
    if met:
        return _merge(Status.MET, met)
    unknown = [p for p in parts if p.status is Status.UNKNOWN]
    if unknown:
        return _merge(Status.UNKNOWN, unknown)
    return _merge(Status.NOT_MET, parts)


def negate(part: RuleResult) -> RuleResult:
    flipped = {Status.MET: Status.NOT_MET, Status.NOT_MET: Status.MET}.get(part.status, Status.UNKNOWN)
    return RuleResult(flipped, part.reason, part.evidence, part.facts, part.missing)


def outcome(name: str) -> Status:
    return Status(name)
