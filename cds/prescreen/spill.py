"""Grouping a population by patient on disk: every resource a record reads goes to one of N partition
files chosen by a stable hash of its patient's id, so that a patient's resources, from whatever file, end
in one partition, and a partition — a few megabytes of patients — is one unit of work. Medications (read
by reference, outside any patient) go to a shared file. Nothing of the population is held in memory but
the write buffers.

A partition line is ``<header>\\t<entry>``: the header a JSON array ``[patient id, medication references…]``
(JSON text holds no raw tab), the entry a Bundle entry ``{"resource": …}`` (with its ``fullUrl`` for a
Patient of a Bundle, which the record resolves ``urn:uuid:`` references by). The spill is written in a
temporary folder renamed when complete, with its manifest: a re-run finds it and spills nothing again."""

from __future__ import annotations

import math
import os
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
#: The raw input a partition should hold (its patients' resources of every type): small enough that a
#: worker holds a partition and one decoded patient with room to spare.
PARTITION_INPUT_BYTES = 32 * 1024 * 1024
#: At least this many partitions once the input allows (so that every core has work) …
MIN_PARTITIONS = 64
#: … each of at least this much input.
MIN_PARTITION_INPUT_BYTES = 256 * 1024
MAX_PARTITIONS = 8192
#: Buffered bytes per partition before they are appended to its file, and in all.
_FLUSH_BYTES = 256 * 1024
_FLUSH_ALL_BYTES = 64 * 1024 * 1024
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

    def add(self, key: str, medication_refs: list[str], entry: bytes) -> None:
        index = partition_of(key, self.partitions)
        line = orjson.dumps([key, *medication_refs]) + b"\t" + entry + b"\n"
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


def spill(
    files: list[Path],
    folder: Path,
    partitions: int,
    *,
    bundles: bool = False,
    progress: Progress | None = None,
) -> SpillManifest:
    """Spill ``files`` (NDJSON, or Bundles when ``bundles``) into ``folder``'s partitions; a complete spill
    already there (its manifest) is kept as it is. ``progress`` is called with the bytes of each file read."""
    if (folder / MANIFEST).is_file():
        return SpillManifest.read(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # an interrupted spill: its partitions are incomplete
    owner_only_dir(tmp)
    spiller = _Spiller(tmp, partitions)
    for path in files:
        try:
            if bundles:
                spiller.bundle_file(path.read_bytes())
            else:
                for _, line in ndjson_lines(path):
                    spiller.resource_line(line)
        except OSError as exc:
            raise SourceError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        if progress is not None:
            progress(path.stat().st_size)
    manifest = spiller.finish()
    _write_json(tmp / MANIFEST, asdict(manifest))
    os.replace(tmp, folder)
    folder.chmod(DIR_MODE)
    return manifest


def _write_json(path: Path, data: Any) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with open(fd, "wb") as handle:
        handle.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))


def partition_files(folder: Path) -> list[Path]:
    """The partition files of a spill, in index order (an empty partition has no file)."""
    return sorted(folder.glob("part-*.ndjson"))


def read_partition(path: Path) -> Iterator[tuple[str, list[bytes], list[str]]]:
    """A partition's patients, in order of their ids: each id with its Bundle entries (JSON text) and the
    Medications they name. The whole partition is in memory, no other."""
    entries: dict[str, list[bytes]] = {}
    medications: dict[str, list[str]] = {}
    with path.open("rb") as handle:
        for line in handle:
            header, _, entry = line.rstrip(b"\n").partition(b"\t")
            key, *refs = orjson.loads(header)
            entries.setdefault(key, []).append(entry)
            if refs:
                medications.setdefault(key, []).extend(refs)
    for key in sorted(entries):
        yield key, entries.pop(key), medications.get(key, [])
