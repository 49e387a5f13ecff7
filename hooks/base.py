"""What every hook module is written against: the call it answers (:class:`HookCall`), the answer it gives
(:class:`HookAnswer`), the protocol a hook meets (:class:`HookDefinition`), and the steps hooks share —
reading the patient's data, judging on the event loop or in the thread pool, keeping a record of
the cards issued (:func:`run`).

The HTTP layer (``cds.api.routes``) decodes a call, checks who makes it, hands it to the hook and encodes
what the hook answers; everything in between is the hook's: what it reads, how it evaluates, which cards it
returns. This module knows no hook by name (the registry is ``hooks/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeAlias

import anyio.to_thread
import httpx
from pydantic import BaseModel

from cds.assessment import Assessment
from cds.fhir.prefetch import gather_for_call
from cds.settings import Settings
from cds.store import FeedbackStore

#: The id of the screening service; the services of other hooks add their hook's name.
SERVICE_ID = "trial-eligibility"

# A FHIR resource id (FHIR R4 `id` datatype), used for ids that end up in URLs and prefetch queries.
FHIR_ID_PATTERN = r"^[A-Za-z0-9\-\.]{1,64}$"

#: Up to this many resources, a patient is judged on the event loop (~50 ms of work at most on one core
#: of the benchmark machine, docs/performance.md); above it, in the thread pool.
INLINE_MAX_RESOURCES = 10_000

#: How a trial is evaluated on a record at a moment (``cds.engine.evaluate``, or a test's stand-in).
Evaluator: TypeAlias = Callable[[Any, Any, datetime], Assessment]
#: A card as returned, with the trial and the assessment it is about.
IssuedTriple: TypeAlias = tuple[Any, Assessment, dict[str, Any]]


@dataclass(frozen=True)
class HookCall:
    """One decoded, authenticated call of a CDS service, and what the service has to answer it with."""

    service_id: str
    #: The service's prefetch templates, key → template.
    templates: Mapping[str, str]
    #: The context as the hook's own model validated it, and as sent (for prefetch tokens).
    context: BaseModel
    raw_context: Mapping[str, Any]
    prefetch: Mapping[str, Any] | None
    #: The request's fhirServer (not yet checked against the allow-list) and access token.
    fhir_server: str | None
    access_token: str | None = field(repr=False)
    now: datetime
    #: Where the trial pages are (the cards link to them), without a trailing slash.
    base_url: str
    settings: Settings
    trials: Mapping[str, Any]
    evaluate: Evaluator
    store: FeedbackStore
    #: The FHIR client shared by all requests; None: each fetch opens its own.
    http: httpx.AsyncClient | None = field(default=None, repr=False)


@dataclass(frozen=True)
class HookAnswer:
    cards: list[dict[str, Any]]
    #: Fields for the service's log line (counts and verdicts: no PHI).
    log: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceText:
    """How a hook's service presents itself in discovery."""

    id: str
    title: str
    description: str


class HookDefinition(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def context_model(self) -> type[BaseModel]:
        """The hook's context, as its own pydantic model validates it."""
        ...

    def prefetch_templates(self, resource_types: Iterable[str]) -> dict[str, str]: ...

    def service_text(self, trial_count: int, trial_names: str) -> ServiceText:
        """The service's id, title and description, for ``trial_count`` trials named ``trial_names``."""
        ...

    async def answer(self, call: HookCall) -> HookAnswer: ...


def prefetch_key(resource_type: str) -> str:
    """The prefetch key for a resource type: ``Patient`` → ``patient``, ``MedicationRequest`` →
    ``medicationRequest``."""
    return resource_type[:1].lower() + resource_type[1:]


def smart_scopes(resource_types: Iterable[str]) -> list[str]:
    """SMART App Launch v2 patient-level read+search scopes (``patient/Observation.rs``) for the types."""
    return [f"patient/{t}.rs" for t in sorted(set(resource_types))]


def smart_v1_scopes(resource_types: Iterable[str]) -> list[str]:
    """The SMART v1 equivalents (``patient/Observation.read``)."""
    return [f"patient/{t}.read" for t in sorted(set(resource_types))]


def resource_types(trials: Mapping[str, Any]) -> frozenset[str]:
    """Every resource type the trials read, and the Patient."""
    types: set[str] = {"Patient"}
    for trial in trials.values():
        types.update(trial.resource_types())
    return frozenset(types)


#: What a hook decides from the patient's resources: every trial with its assessment, and the cards to
#: return (each with its trial and assessment).
Decision: TypeAlias = tuple[list[tuple[Any, Assessment]], list[IssuedTriple]]


#: A decision with, after the trials' cards, cards about no single trial (the card naming the trials beyond
#: the cap): returned, noted when the record is incomplete, not stored as issued (no trial to count their
#: feedback against). A plain tuple, as :data:`Decision`: made by the hook without calling back here.
Screening: TypeAlias = tuple[list[tuple[Any, Assessment]], list[IssuedTriple], list[dict[str, Any]]]


async def run(
    call: HookCall,
    *,
    user_id: str,
    decide: Callable[[list[Mapping[str, Any]]], Decision | Screening],
    extra_resources: Sequence[Mapping[str, Any]] = (),
) -> HookAnswer:
    """The steps every hook shares, around its own ``decide``:

    1. read the patient's data for the service's templates: prefetched where given, else fetched from the
       call's fhirServer, which must be allow-listed even when nothing is fetched (raises
       :class:`cds.fhir.FhirServerNotAllowed`, :class:`cds.fhir.PrefetchError`,
       :class:`cds.fhir.DataUnavailable`);
    2. ``decide`` on those resources and ``extra_resources`` (what the context carries itself), note an
       incomplete record on each card and store the issued cards (before the answer leaves), on the event
       loop or in one trip to the thread pool.

    For a usual record the trip to the thread pool costs more than it spares: it wakes another thread,
    which may run on the other core, away from the caches holding the resources just decoded (~12 % of a
    1,000-resource answer, docs/performance.md), and under the GIL the pool runs no Python in parallel. So
    it is judged here, where its body was decoded. A large record, or a store across the network, goes to
    the pool, so that the event loop is never held long."""
    gathered = await gather_for_call(
        call.templates,
        context=call.raw_context,
        user_id=user_id,
        prefetch=call.prefetch,
        fhir_server=call.fhir_server,
        access_token=call.access_token,
        settings=call.settings,
        http=call.http,
    )
    # The gathered resources are one per (type, id) already (cds.fhir.prefetch.merge_resources).
    resources = [*gathered.resources, *extra_resources] if extra_resources else gathered.resources

    def work() -> HookAnswer:
        decided = decide(resources)
        if len(decided) == 3:
            results, chosen, overview = decided
        else:
            (results, chosen), overview = decided, []
        cards = [*(c for _, _, c in chosen), *overview]
        _note_incomplete(cards, gathered.key_sources, gathered.problems)
        if chosen:
            call.store.record_issued(
                [(c["uuid"], t.id, a.verdict.value) for t, a, c in chosen],
                service_id=call.service_id,
                issued_at=call.now,
            )
        return HookAnswer(
            cards=cards,
            log={
                "trials": len(results),
                "cards": len(cards),
                "verdicts": {t.id: a.verdict.value for t, a in results},
                "resources": len(resources),
                "fetched_keys": sum(1 for s in gathered.key_sources.values() if s.startswith("fetched")),
                "http_requests": gathered.http_requests,
                "problems": len(gathered.problems),
            },
        )

    if len(resources) <= INLINE_MAX_RESOURCES and call.store.local:
        return work()
    return await anyio.to_thread.run_sync(work)


def _note_incomplete(cards: list[dict[str, Any]], key_sources: dict[str, str], problems: list[str]) -> None:
    """An honest card: when a key's data were read only in part (page loop, page limit, next link to another
    server, a prefetched Bundle with a next link whose other pages could not be read), each card says so, as
    decisions may rest on missing data."""
    partial = sorted(key for key, source in key_sources.items() if source.endswith("-partial"))
    if not partial:
        return
    why = "; ".join(p for p in problems if p.split(":", 1)[0] in partial)
    note = (
        f"\n\n**Incomplete record:** not all of the patient's data could be read ({why}). "
        "Criteria decided from these data may change with the complete record."
    )
    for card in cards:
        card["detail"] = str(card.get("detail", "")).rstrip() + note
