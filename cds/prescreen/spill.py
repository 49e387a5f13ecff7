"""Grouping a population by patient on disk: every resource a record reads goes to one of N partitions
chosen by a stable hash of its patient's id, so that a patient's resources, from whatever file, end in one
partition, and a partition — a few megabytes of patients — is one unit of work. Medications (read by
reference, outside any patient) go to a shared file. Nothing of the population is held in memory but the
write buffers.

Only what a record may read is read: an NDJSON file named after a type no rule reads (Claim,
ExplanationOfBenefit…: most of an export's bytes) is not opened past its first line. The rest is cut into
chunks (files, or byte ranges of a large file split at line ends), each spilled by one worker into its own
pieces of the partitions (``chunk-NNNNN/part-NNNNN.ndjson``); a partition is its pieces in chunk order —
the order of the input — so that the spill is the same whatever the number of workers, and nothing is
merged.

A partition line is ``<header>\\t<entry>``: the header a JSON array ``[patient id, medication references…]``
(JSON text holds no raw tab), the entry a Bundle entry ``{"resource": …}`` (with its ``fullUrl`` for a
Patient of a Bundle, which the record resolves ``urn:uuid:`` references by). The spill is written in a
temporary folder renamed when complete, with its manifest: a re-run finds it and spills nothing again; a
re-run of an interrupted spill keeps its finished chunks."""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson

from cds.prescreen.keys import key_fields, names_anyone, patient_key
from cds.prescreen.outputs import DIR_MODE, FILE_MODE, owner_only_dir
from cds.prescreen.shared import SHARED_TYPES, medication_reference
from cds.prescreen.sources import SourceError, ndjson_lines
from cds.record.reading import EARLIER_FHIR_TYPES

#: The resource types a patient's record reads (cds.record.reading.RecordReader, and the Patient), and
#: those of an earlier FHIR version it notes. Every other type (claims, encounters, reports…) is read by
#: no rule: not spilled (tests/prescreen/test_spill.py holds this list to the record's readers).
RECORD_TYPES = frozenset(
    {
        "Patient",
        "Observation",
        "Condition",
        "MedicationStatement",
        "MedicationRequest",
        "MedicationAdministration",
        "Procedure",
        "Immunization",
        "AllergyIntolerance",
    }
    | EARLIER_FHIR_TYPES
)
#: The input read that a partition should hold (its patients' resources of the types a record reads, a
#: third of their export's bytes): small enough that a worker holds a partition and one decoded patient
#: with room to spare.
PARTITION_INPUT_BYTES = 8 * 1024 * 1024
#: At least this many partitions once the input allows (so that every core has work) …
MIN_PARTITIONS = 64
#: … each of at least this much input.
MIN_PARTITION_INPUT_BYTES = 256 * 1024
MAX_PARTITIONS = 8192
#: Buffered bytes per partition before they are appended to its file, and in all.
_FLUSH_BYTES = 256 * 1024
_FLUSH_ALL_BYTES = 64 * 1024 * 1024
_KEYS_HELD = 100_000
MANIFEST = "manifest.json"
SHARED_FILE = "shared.ndjson"


def partition_count(input_bytes: int) -> int:
    """N partitions for an input of this many bytes: one per PARTITION_INPUT_BYTES, at least
    MIN_PARTITIONS once each would hold MIN_PARTITION_INPUT_BYTES (never more than MAX_PARTITIONS)."""
    by_size = math.ceil(input_bytes / PARTITION_INPUT_BYTES)
    spread = min(MIN_PARTITIONS, math.ceil(input_bytes / MIN_PARTITION_INPUT_BYTES))
    return max(1, min(MAX_PARTITIONS, max(by_size, spread)))


def partition_of(key: str, partitions: int) -> int:
    """The partition of a patient id: a hash stable across runs, processes and machines (CRC-32)."""
    return zlib.crc32(key.encode()) % partitions


def partition_name(index: int) -> str:
    return f"part-{index:05d}"


@dataclass
class SpillManifest:
    """What the spill holds, without PHI: counts and resource types only."""

    partitions: int
    resources_read: int = 0
    #: Resources written to a partition.
    resources_spilled: int = 0
    shared: int = 0
    #: Resources of types no rule reads, by type.
    not_read: dict[str, int] = field(default_factory=dict)
    #: Resources of a type the record reads that name no patient it can tell, by type.
    no_patient: dict[str, int] = field(default_factory=dict)
    #: Lines or files that are not JSON, or not a resource (an NDJSON line) or a Bundle (a file).
    unreadable: int = 0
    #: NDJSON files not read, named after a type no rule reads (:func:`unread_type`): their bytes by type.
    files_not_read: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> SpillManifest:
        return cls(**orjson.loads((folder / MANIFEST).read_bytes()))


class _Writer:
    """Appends lines to the partition files and the shared file through bounded buffers."""

    def __init__(self, folder: Path, partitions: int) -> None:
        self.folder = folder
        self.partitions = partitions
        self.buffers: dict[int, list[bytes]] = {}
        self.sizes: Counter[int] = Counter()
        self.buffered = 0
        self.shared: list[bytes] = []
        self.keys: dict[str, tuple[int, bytes]] = {}

    def add(self, key: str, medication_refs: list[str], entry: bytes) -> None:
        known = self.keys.get(key)
        if known is None:
            # A patient's many resources in a chunk: its partition and header computed once (for at
            # most _KEYS_HELD patients at a time: memory does not grow with the population).
            if len(self.keys) >= _KEYS_HELD:
                self.keys.clear()
            known = self.keys[key] = (partition_of(key, self.partitions), orjson.dumps([key]) + b"\t")
        index, header = known
        if medication_refs:
            header = orjson.dumps([key, *medication_refs]) + b"\t"
        line = header + entry + b"\n"
        self.buffers.setdefault(index, []).append(line)
        self.sizes[index] += len(line)
        self.buffered += len(line)
        if self.sizes[index] >= _FLUSH_BYTES:
            self._flush(index)
        if self.buffered >= _FLUSH_ALL_BYTES:
            self.flush()

    def add_shared(self, resource: bytes) -> None:
        self.shared.append(resource + b"\n")

    def _flush(self, index: int) -> None:
        lines = self.buffers.pop(index, None)
        if lines:
            _append(self.folder / f"{partition_name(index)}.ndjson", lines)
            self.buffered -= self.sizes.pop(index)

    def flush(self) -> None:
        for index in list(self.buffers):
            self._flush(index)
        if self.shared:
            _append(self.folder / SHARED_FILE, self.shared)
            self.shared = []


def _append(path: Path, lines: list[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    with open(fd, "ab") as handle:
        handle.writelines(lines)


class _Spiller:
    def __init__(self, folder: Path, partitions: int) -> None:
        self.writer = _Writer(folder, partitions)
        self.manifest = SpillManifest(partitions)
        self.not_read: Counter[str] = Counter()
        self.no_patient: Counter[str] = Counter()

    def resource_line(self, line: bytes) -> None:
        """One NDJSON line: a resource, its JSON text spilled as it is."""
        self.manifest.resources_read += 1
        try:
            rtype, subset = key_fields(line)
            if rtype not in RECORD_TYPES and rtype not in SHARED_TYPES:
                if isinstance(rtype, str):
                    self.not_read[rtype] += 1
                    return
                raise ValueError("no resourceType")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            self.manifest.unreadable += 1
            return
        self._route(subset, rtype, b'{"resource":' + line + b"}", line, (), None)

    def bundle_file(self, raw: bytes) -> None:
        """One Bundle: each resource to its patient's partition, the patient's fullUrl kept with it."""
        try:
            bundle = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.manifest.unreadable += 1
            return
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            self.manifest.unreadable += 1
            return
        entries = [e for e in bundle.get("entry") or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        full_urls: dict[str, str] = {}
        patients: list[str] = []
        for e in entries:
            r = e["resource"]
            rid = r.get("id")
            if r.get("resourceType") == "Patient" and isinstance(rid, str) and rid:
                patients.append(rid)
                url = e.get("fullUrl")
                if isinstance(url, str) and url:
                    full_urls[url] = rid
        for e in entries:
            r = e["resource"]
            self.manifest.resources_read += 1
            rtype = r.get("resourceType")
            if rtype not in RECORD_TYPES and rtype not in SHARED_TYPES:
                if isinstance(rtype, str):
                    self.not_read[rtype] += 1
                else:
                    self.manifest.unreadable += 1
                continue
            url = e.get("fullUrl")
            entry = {"fullUrl": url, "resource": r} if rtype == "Patient" and isinstance(url, str) else {"resource": r}
            self._route(r, rtype, orjson.dumps(entry), None, patients, full_urls)

    def _route(
        self,
        resource: Mapping[str, Any],
        rtype: str,
        entry: bytes,
        raw: bytes | None,
        bundle_patients: list[str] | tuple[()],
        full_urls: Mapping[str, str] | None,
    ) -> None:
        key = patient_key(resource, full_urls)
        medication = medication_reference(resource)
        refs = [medication] if medication else []
        if key is not None:
            self.writer.add(key, refs, entry)
            self.manifest.resources_spilled += 1
        elif rtype in SHARED_TYPES:
            self.writer.add_shared(raw if raw is not None else orjson.dumps(resource))
            self.manifest.shared += 1
        elif bundle_patients and not names_anyone(resource):
            # As `trial-cds screen` reads a Bundle: a resource that names nobody is each of its Patients'.
            for pid in bundle_patients:
                self.writer.add(pid, refs, entry)
            self.manifest.resources_spilled += 1
        else:
            self.no_patient[rtype] += 1

    def finish(self) -> SpillManifest:
        self.writer.flush()
        self.manifest.not_read = dict(sorted(self.not_read.items()))
        self.manifest.no_patient = dict(sorted(self.no_patient.items()))
        return self.manifest


Progress = Callable[[int], None]
#: Runs ``spill_chunk`` on each of the chunks and yields each's counts as it ends, in any order (the
#: local engine's process pool; by default one after the other in this process).
ChunkRunner = Callable[[list["Chunk"], Path, int, bool], Iterator[tuple["Chunk", "ChunkCounts"]]]

#: Input read per chunk of the spill (a chunk is spilled by one worker into its own pieces of the
#: partitions) …
CHUNK_BYTES = 32 * 1024 * 1024
#: … and at most this many chunks (larger ones beyond): a partition is one piece per chunk, files kept few.
MAX_CHUNKS = 64
PLAN = "plan.json"
_TYPED_FILE = re.compile(r"^([A-Z][A-Za-z]+)(?:\.[0-9]+)?\.ndjson(?:\.gz)?$")


def declared_type(path: Path) -> str | None:
    """The resource type an NDJSON file's name declares, as `$export` names its files (``Type.ndjson``,
    ``Type.N.ndjson``, gzipped or not); None for a file named otherwise."""
    named = _TYPED_FILE.match(path.name)
    return named.group(1) if named else None


def unread_type(path: Path) -> str | None:
    """The type of a file no record reads a line of: named after a type neither the record nor the shared
    resources read, its first resource of that type. A file named otherwise, or whose first line is of
    another type (a mixed file), is read line by line."""
    named = declared_type(path)
    if named is None or named in RECORD_TYPES or named in SHARED_TYPES:
        return None
    try:
        for _, line in ndjson_lines(path):
            try:
                rtype, _ = key_fields(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return None
            return named if rtype == named else None
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    return named  # no resource at all: nothing to read either


@dataclass(frozen=True)
class Segment:
    """A file, or the lines of a plain NDJSON file that start within [start, end) of its bytes."""

    path: Path
    start: int = 0
    end: int | None = None


@dataclass(frozen=True)
class Chunk:
    """Input spilled by one worker into its own pieces of the partitions, ``chunk-NNNNN/part-….ndjson``:
    a partition is its pieces in chunk order, which is the order of the input (files in order, a file's
    lines in order), so that the spill is the same whatever the number of workers."""

    index: int
    segments: tuple[Segment, ...]
    size: int

    @property
    def name(self) -> str:
        return f"chunk-{self.index:05d}"


def plan_chunks(files: list[Path], *, bundles: bool = False) -> list[Chunk]:
    """The chunks of ``files`` (in order): a plain NDJSON file larger than a chunk split at byte offsets
    (each piece's lines are those that start in it), smaller files and those read whole (gzip, Bundles)
    grouped. Depends on the files alone: a re-run plans the same chunks and keeps those finished."""
    sizes = [p.stat().st_size for p in files]
    target = max(CHUNK_BYTES, math.ceil(sum(sizes) / MAX_CHUNKS))
    chunks: list[Chunk] = []
    segments: list[Segment] = []
    held = 0

    def close() -> None:
        nonlocal segments, held
        if segments:
            chunks.append(Chunk(len(chunks), tuple(segments), held))
            segments, held = [], 0

    for path, size in zip(files, sizes, strict=True):
        if bundles or path.name.endswith(".gz") or size <= target:
            if held and held + size > target:
                close()
            segments.append(Segment(path))
            held += size
            continue
        close()
        pieces = math.ceil(size / target)
        bounds = [size * i // pieces for i in range(pieces + 1)]
        for start, end in itertools.pairwise(bounds):
            chunks.append(Chunk(len(chunks), (Segment(path, start, end),), end - start))
    close()
    return chunks


def segment_lines(segment: Segment) -> Iterator[bytes]:
    """The non-blank lines of a segment, without their line breaks."""
    if segment.end is None:
        for _, line in ndjson_lines(segment.path):
            yield line
        return
    with segment.path.open("rb") as handle:
        position = segment.start
        if position:
            handle.seek(position - 1)
            position += len(handle.readline()) - 1  # the rest of the line begun before the segment
        for line in handle:
            if position >= segment.end:
                break
            position += len(line)
            line = line.strip()
            if line:
                yield line


@dataclass
class ChunkCounts:
    resources_read: int = 0
    resources_spilled: int = 0
    shared: int = 0
    unreadable: int = 0
    not_read: dict[str, int] = field(default_factory=dict)
    no_patient: dict[str, int] = field(default_factory=dict)


def spill_chunk(chunk: Chunk, folder: Path, partitions: int, bundles: bool) -> ChunkCounts:
    """Spill one chunk into ``folder/chunk-NNNNN`` (written beside it, then renamed: whole or absent)."""
    target = folder / chunk.name
    tmp = folder / f"{chunk.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    owner_only_dir(tmp)
    spiller = _Spiller(tmp, partitions)
    for segment in chunk.segments:
        try:
            if bundles:
                spiller.bundle_file(segment.path.read_bytes())
            else:
                for line in segment_lines(segment):
                    spiller.resource_line(line)
        except OSError as exc:
            raise SourceError(f"{segment.path}: cannot be read ({exc.strerror or exc})") from exc
    manifest = spiller.finish()
    counts = ChunkCounts(
        manifest.resources_read,
        manifest.resources_spilled,
        manifest.shared,
        manifest.unreadable,
        manifest.not_read,
        manifest.no_patient,
    )
    _write_json(tmp / MANIFEST, asdict(counts))
    os.replace(tmp, target)
    return counts


def spill_in_order(
    chunks: list[Chunk], folder: Path, partitions: int, bundles: bool
) -> Iterator[tuple[Chunk, ChunkCounts]]:
    """The default :data:`ChunkRunner`: each chunk in turn, in this process."""
    for chunk in chunks:
        yield chunk, spill_chunk(chunk, folder, partitions, bundles)


def spill(
    files: list[Path],
    folder: Path,
    partitions: int | None = None,
    *,
    bundles: bool = False,
    progress: Progress | None = None,
    runner: ChunkRunner = spill_in_order,
) -> SpillManifest:
    """Spill ``files`` (NDJSON, or Bundles when ``bundles``) into ``folder``'s partitions; a complete spill
    already there (its manifest) is kept as it is, and the finished chunks of an interrupted one. NDJSON
    files that no record reads a line of (:func:`unread_type`) are not read. ``partitions``: by default
    :func:`partition_count` of the input read. ``progress`` is called with the bytes of each chunk spilled
    (and at once with those of the files not read); ``runner`` spills the chunks."""
    if (folder / MANIFEST).is_file():
        return SpillManifest.read(folder)
    files_not_read: Counter[str] = Counter()
    read: list[Path] = []
    for path in files:
        rtype = None if bundles else unread_type(path)
        if rtype is None:
            read.append(path)
        else:
            files_not_read[rtype] += path.stat().st_size
            if progress is not None:
                progress(path.stat().st_size)
    chunks = plan_chunks(read, bundles=bundles)
    count = partitions or partition_count(sum(c.size for c in chunks))
    plan = orjson.dumps(
        {
            "partitions": count,
            "bundles": bundles,
            "chunks": [[[str(s.path), s.start, s.end] for s in c.segments] for c in chunks],
        }
    )
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists() and not ((tmp / PLAN).is_file() and (tmp / PLAN).read_bytes() == plan):
        shutil.rmtree(tmp)  # an interrupted spill of other inputs, or from before plans
    if not tmp.exists():
        owner_only_dir(tmp)
        _write_json_bytes(tmp / PLAN, plan)
    totals = SpillManifest(count, files_not_read=dict(sorted(files_not_read.items())))
    counted: dict[int, ChunkCounts] = {}
    todo = []
    for chunk in chunks:
        if (tmp / chunk.name / MANIFEST).is_file():  # finished by the interrupted run
            counted[chunk.index] = ChunkCounts(**orjson.loads((tmp / chunk.name / MANIFEST).read_bytes()))
            if progress is not None:
                progress(chunk.size)
        else:
            todo.append(chunk)
    for chunk, counts in runner(todo, tmp, count, bundles):
        counted[chunk.index] = counts
        if progress is not None:
            progress(chunk.size)
    not_read: Counter[str] = Counter()
    no_patient: Counter[str] = Counter()
    for index in sorted(counted):
        counts = counted[index]
        totals.resources_read += counts.resources_read
        totals.resources_spilled += counts.resources_spilled
        totals.shared += counts.shared
        totals.unreadable += counts.unreadable
        not_read.update(counts.not_read)
        no_patient.update(counts.no_patient)
    totals.not_read = dict(sorted(not_read.items()))
    totals.no_patient = dict(sorted(no_patient.items()))
    _write_json(tmp / MANIFEST, asdict(totals))
    os.replace(tmp, folder)
    folder.chmod(DIR_MODE)
    return totals


def _write_json_bytes(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with open(fd, "wb") as handle:
        handle.write(data)


def _write_json(path: Path, data: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with open(fd, "wb") as handle:
        handle.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))


@dataclass(frozen=True)
class Partition:
    """A partition of a spill: its pieces, one per chunk that holds any of its patients, in chunk order."""

    index: int
    pieces: tuple[Path, ...]

    @property
    def name(self) -> str:
        return partition_name(self.index)


def partition_files(folder: Path) -> list[Partition]:
    """The partitions of a spill, in index order (an empty partition has no piece, and is not listed)."""
    pieces: dict[int, list[Path]] = {}
    for chunk in _chunk_folders(folder):
        for path in sorted(chunk.glob("part-*.ndjson")):
            pieces.setdefault(int(path.stem.rsplit("-", 1)[1]), []).append(path)
    return [Partition(index, tuple(pieces[index])) for index in sorted(pieces)]


def shared_files(folder: Path) -> list[Path]:
    """The pieces of a spill's shared file, in chunk order (the first of two Medications with one id wins,
    as it does read in input order)."""
    return [path for chunk in _chunk_folders(folder) if (path := chunk / SHARED_FILE).is_file()]


def _chunk_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("chunk-*") if p.is_dir() and not p.name.endswith(".tmp"))


def read_partition(partition: Partition) -> Iterator[tuple[str, list[bytes], list[str]]]:
    """A partition's patients, in order of their ids: each id with its Bundle entries (JSON text) and the
    Medications they name. The whole partition is in memory, no other."""
    entries: dict[str, list[bytes]] = {}
    medications: dict[str, list[str]] = {}
    for piece in partition.pieces:
        with piece.open("rb") as handle:
            for line in handle:
                header, _, entry = line.rstrip(b"\n").partition(b"\t")
                key, *refs = orjson.loads(header)
                entries.setdefault(key, []).append(entry)
                if refs:
                    medications.setdefault(key, []).extend(refs)
    for key in sorted(entries):
        yield key, entries.pop(key), medications.get(key, [])
