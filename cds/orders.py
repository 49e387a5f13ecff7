"""Order-time look-ahead: what a draft order would do to a patient's trial eligibility. Pure (no I/O).

Each draft order becomes the resource it would leave in the record once carried out on the evaluation
date — a hypothetical resource, plain FHIR R4 JSON:

- a MedicationRequest for a drug → an active MedicationRequest authored now (the record reads an active
  request as ongoing from ``authoredOn``; ``dosageInstruction`` gives dose, route and timing);
- a MedicationRequest for a vaccine (coded with CVX) → a completed Immunization given now;
- a ServiceRequest → a completed Procedure performed now.

The engine evaluates every trial on the record as it is and on the record plus that one resource; a
criterion that does not rule the patient out now but would afterwards (an exclusion becoming met, an
inclusion becoming not met) is what the order would cost the patient. Nothing here names a drug or a
criterion: which orders matter follows from the trial files and their value sets, and how long the patient
would stay ineligible from the windows declared in the criterion's rule tree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_never

from cds.assessment import Assessment, CriterionAssessment, Status, Verdict
from cds.fhir.decoding import UnreadableField
from cds.record import PatientRecord, parse
from cds.rules.base import LeafRule, Window
from cds.rules.kinds import AllRule, AnyRule, LeafRules, NotRule, Rule
from cds.trials import Criterion, Trial

CVX_SYSTEM = "http://hl7.org/fhir/sid/cvx"
HYPOTHETICAL_ID_PREFIX = "hypothetical-"

# Orders that will not be carried out, whatever else they say.
_NOT_TO_BE_DONE = frozenset({"entered-in-error", "cancelled", "revoked", "stopped", "completed"})

Evaluator = Callable[[Any, Any, datetime], Assessment]


# ---------------------------------------------------------------------------------------------------
# Draft order → hypothetical resource.


def _medication_index(resources: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {
        key: r
        for r in resources
        if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)
        for key in (f"Medication/{r['id']}", r["id"])
    }


def _medication_code(order: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]]) -> Any:
    """The order's medication as a raw CodeableConcept: medicationCodeableConcept, else the code of the
    Medication that medicationReference names (contained, or among ``medications``)."""
    direct = order.get("medicationCodeableConcept")
    if isinstance(direct, Mapping):
        return direct
    target = parse.referenced_medication(order, medications)
    if target is None:
        return None
    try:
        return target.get("code")
    except UnreadableField:  # a Medication of the record whose code cannot be read: as if uncoded
        return None


def is_vaccine(code: Any) -> bool:
    concept = parse.concept(code)
    return concept is not None and any(c.system == CVX_SYSTEM for c in concept.codings)


def order_label(order: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """What the order is for, as a clinician would name it (the concept's text, else a display)."""
    rtype = order.get("resourceType")
    concept = None
    if rtype == "MedicationRequest":
        try:
            concept = parse.medication_concept(order, medications or {})
        except UnreadableField:
            concept = None
    elif isinstance(order.get("code"), Mapping):
        concept = parse.concept(order.get("code"))
    label = " ".join(concept.label().split()) if concept is not None else ""
    return label if label and label != "?" else f"This {rtype or 'order'}"


def order_reference(order: Mapping[str, Any]) -> str | None:
    rid = order.get("id")
    return f"{order.get('resourceType')}/{rid}" if isinstance(rid, str) and rid else None


def hypothetical_resource(
    order: Mapping[str, Any],
    *,
    patient_id: str,
    now: datetime,
    number: int,
    medications: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The resource ``order`` would leave in the record if carried out at ``now``; None for an order this
    service cannot read (another resource type, no code, ``doNotPerform``, a status saying it will not
    be done)."""
    if order.get("doNotPerform") is True:
        return None
    status = order.get("status")
    if isinstance(status, str) and status.lower() in _NOT_TO_BE_DONE:
        return None
    rid = f"{HYPOTHETICAL_ID_PREFIX}{number}"
    subject = {"reference": f"Patient/{patient_id}"}
    when = now.isoformat()
    rtype = order.get("resourceType")
    if rtype == "MedicationRequest":
        code = _medication_code(order, medications or {})
        if is_vaccine(code):
            return {
                "resourceType": "Immunization",
                "id": rid,
                "status": "completed",
                "vaccineCode": code,
                "patient": subject,
                "occurrenceDateTime": when,
            }
        if parse.medication_concept(order, medications or {}) is None:
            return None
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": rid,
            "status": "active",
            "intent": "order",
            "subject": subject,
            "authoredOn": when,
        }
        # The order's reasons too: a rule's `except_for` reads them (hydrocortisone ordered for Addison's).
        for key in (
            "contained",
            "medicationCodeableConcept",
            "medicationReference",
            "dosageInstruction",
            "reasonCode",
            "reasonReference",
            "reason",
        ):
            if key in order:
                resource[key] = order[key]
        return resource
    if rtype == "ServiceRequest":
        if parse.concept(order.get("code")) is None:
            return None
        procedure: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": rid,
            "status": "completed",
            "code": order["code"],
            "subject": subject,
            "performedDateTime": when,
        }
        categories = parse.arr(order.get("category"))
        if categories and isinstance(categories[0], Mapping):
            procedure["category"] = categories[0]  # ServiceRequest.category is 0..*, Procedure.category 0..1
        return procedure
    return None


# ---------------------------------------------------------------------------------------------------
# How long a criterion the order would meet keeps the patient out.


@dataclass(frozen=True)
class Duration:
    """How long the patient would stay ineligible: the criterion's look-back window (None: for good),
    counted from the last dose for a medication, from the event for a vaccine or procedure."""

    window: Window | None
    from_last_dose: bool = False

    @property
    def permanent(self) -> bool:
        return self.window is None

    @property
    def days(self) -> float:
        if self.window is None:
            return math.inf
        if self.window.days is not None:
            return float(self.window.days)
        return (self.window.months or 0) * 30.44

    def text(self) -> str:
        """``permanently``, ``for 28 days``, ``until 2 weeks after the last dose``."""
        if self.window is None:
            return "permanently"
        span = self.window.describe()
        return f"until {span} after the last dose" if self.from_last_dose else f"for {span}"

    def as_json(self) -> dict[str, Any]:
        if self.window is None:
            return {"permanent": True}
        return {
            "window": self.window.model_dump(exclude_none=True),
            "countsFrom": "last-dose" if self.from_last_dose else "order-date",
        }


def _signed_leaves(rule: Rule, positive: bool = True) -> Iterator[tuple[LeafRules, bool]]:
    """Each leaf with whether it counts towards the criterion being met (False under an odd number of
    ``not``)."""
    if isinstance(rule, AllRule):
        for r in rule.all:
            yield from _signed_leaves(r, positive)
    elif isinstance(rule, AnyRule):
        for r in rule.any:
            yield from _signed_leaves(r, positive)
    elif isinstance(rule, NotRule):
        yield from _signed_leaves(rule.not_, not positive)
    elif isinstance(rule, LeafRule):
        yield rule, positive
    else:
        assert_never(rule)


def duration_for(criterion: Criterion, resource_type: str) -> Duration:
    """The longest window among the criterion's leaves that read this kind of resource and push towards
    ruling the patient out (met for an exclusion, not met for an inclusion); a leaf without a window
    looks back for ever, so the patient would be out permanently."""
    toward = criterion.kind == "exclusion"
    reading = [(leaf, sign) for leaf, sign in _signed_leaves(criterion.rule) if resource_type in leaf.orders_read]
    leaves = [leaf for leaf, _ in reading]
    signed = [leaf for leaf, sign in reading if sign == toward]
    chosen = signed or leaves
    from_last_dose = resource_type == "MedicationRequest"
    windows = [leaf.order_window() for leaf in chosen]
    if not chosen or any(window is None for window in windows):
        return Duration(None, from_last_dose)
    durations = [Duration(window, from_last_dose) for window in windows]
    return max(durations, key=lambda d: d.days)


# ---------------------------------------------------------------------------------------------------
# Before and after.


@dataclass(frozen=True)
class CriterionChange:
    criterion: CriterionAssessment  # as it would be once the order is carried out
    before: Status
    duration: Duration

    @property
    def label(self) -> str:
        """A short name from the criterion id: ``exc_prior_checkpoint_inhibitor`` → "prior checkpoint
        inhibitor"."""
        name = self.criterion.id
        for prefix in ("exc_", "inc_"):
            name = name.removeprefix(prefix)
        return name.replace("_", " ")


@dataclass(frozen=True)
class OrderImpact:
    """One draft order that would rule the patient out of one trial."""

    order: Mapping[str, Any]
    order_ref: str | None
    order_label: str
    trial: Trial
    baseline: Assessment
    after: Assessment
    changes: tuple[CriterionChange, ...]  # longest-lasting first


def closing_changes(
    trial: Trial, before: Assessment, after: Assessment, resource_type: str
) -> tuple[CriterionChange, ...]:
    """The criteria that do not rule the patient out in ``before`` but do in ``after``."""
    previous = {c.id: c for c in before.criteria}
    changes: list[CriterionChange] = []
    for c in after.criteria:
        old = previous.get(c.id)
        if old is None or old.rules_out or not c.rules_out:
            continue
        changes.append(CriterionChange(c, old.status, duration_for(trial.criterion(c.id), resource_type)))
    order = {c.id: i for i, c in enumerate(trial.criteria)}
    return tuple(sorted(changes, key=lambda ch: (-ch.duration.days, order.get(ch.criterion.id, 0))))


def order_impacts(
    trials: Iterable[Trial],
    resources: Sequence[Mapping[str, Any]],
    orders: Sequence[Mapping[str, Any]],
    *,
    patient_id: str,
    now: datetime,
    evaluate: Evaluator,
) -> tuple[list[tuple[Trial, Assessment]], list[OrderImpact]]:
    """Every trial evaluated on the record as it is, and each (order, trial) where carrying the order out
    would rule out a patient who is not ruled out now."""
    record = PatientRecord.from_resources(resources, patient_id=patient_id)
    baseline = [(trial, evaluate(trial, record, now)) for trial in trials]
    candidates = [(t, a) for t, a in baseline if a.verdict is not Verdict.NOT_ELIGIBLE]
    impacts: list[OrderImpact] = []
    if not candidates:
        return baseline, impacts
    medications = _medication_index(resources)
    for number, order in enumerate(orders, 1):
        hypothetical = hypothetical_resource(
            order, patient_id=patient_id, now=now, number=number, medications=medications
        )
        if hypothetical is None:
            continue
        changed = PatientRecord.from_resources([*resources, hypothetical], patient_id=patient_id)
        for trial, before in candidates:
            after = evaluate(trial, changed, now)
            changes = closing_changes(trial, before, after, hypothetical["resourceType"])
            if changes:
                impacts.append(
                    OrderImpact(
                        order=order,
                        order_ref=order_reference(order),
                        order_label=order_label(order, medications),
                        trial=trial,
                        baseline=before,
                        after=after,
                        changes=changes,
                    )
                )
    return baseline, impacts
