"""The pre-screen on Apache Spark (`trial-cds prescreen --engine spark`): the same screening as the local
engine (:func:`cds.prescreen.screening.screen_entries`), with Spark doing the reading, the grouping by
patient and the ranking, so that a population larger than one machine is screened by a cluster.

The population never passes through the driver: the executors read the NDJSON (text lines, from storage
every node reaches: HDFS, S3, a shared file system) or the Bundles themselves. NDJSON is keyed by patient,
shuffled and sorted by Spark SQL in the JVM (:mod:`cds.prescreen.spark_keys`: the key function's reading,
which has the last word on each line in Python), so that each patient's lines reach Python once, together
and in input order; Bundles are keyed in Python and grouped with ``repartitionAndSortWithinPartitions``.
Either way Spark spills to disk: a task's memory does not grow with the population. Each patient is
screened in ``mapPartitions``. The resources outside any patient compartment
that a record reads (the Medications a MedicationRequest names, :mod:`cds.prescreen.shared`) are gathered
first and broadcast: a formulary, not a population.

The trials go to the executors as the text of their files, loaded once per Python worker with the same
validation as on the driver (:func:`cds.portfolio.load_portfolio`): an executor needs trial-cds installed,
not the driver's folder, and nothing of the engine is pickled.

Byte-identical outputs: each patient's resources reach the screening in input order (files by name, then
lines or entries in file order), as the local engine's spill appends them; the rows come back ranked by the
one total order of :mod:`cds.prescreen.ranking`, and :func:`cds.prescreen.outputs.write_outputs` writes them."""

from __future__ import annotations

import gc
import hashlib
import os
import re
import sys
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Any, Literal

import orjson
from pyspark import RDD, Accumulator, Broadcast, StorageLevel
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

import cds
from cds.engine import TrialSpec
from cds.portfolio import load_portfolio
from cds.prescreen.keys import names_anyone, patient_key
from cds.prescreen.outputs import TrialSummary, write_outputs
from cds.prescreen.screening import CandidateRow, screen_entries
from cds.prescreen.shared import SHARED_TYPES, SharedResources, medication_reference
from cds.prescreen.spark_keys import confirmed_entries, key_columns, python_key_udf
from cds.prescreen.spill import RECORD_TYPES
from cds.valuesets import ValueSetLibrary

InputKind = Literal["ndjson", "bundles"]

#: Set in the driver's environment by spark-submit (PySpark's gateway to the JVM it started): the master
#: and the rest of the configuration are spark-submit's.
SUBMITTED = "PYSPARK_GATEWAY_PORT"

#: The files read in an input folder, as the local engine reads them (cds.prescreen.sources): NDJSON as
#: `$export` writes it (gzip too: Spark reads it as text), or one Bundle per file.
NDJSON_PATTERNS = ("*.ndjson", "*.ndjson.gz")
BUNDLE_PATTERNS = ("*.json",)

#: A file named after its resource type, as `$export` names them ("Observation.ndjson",
#: "Observation-2.ndjson", "Observation_003.ndjson.gz"): the leading word is its type.
_TYPED_FILE = re.compile(r"^([A-Z][A-Za-z]+)(?:[._-]|$)")

#: Input read per task of the screening (the shuffle's partitions): some 80 Synthea-shaped patients,
#: sorted in a Python worker's memory (PySpark spills to disk beyond spark.python.worker.memory).
PARTITION_INPUT_BYTES = 64 * 1024 * 1024
#: Screening tasks per core at least: patients differ in size, and a task that ends early leaves its core
#: idle unless another waits.
TASKS_PER_CORE = 4
#: Ranked rows per partition of the final sort, each brought to the driver whole (a row: a few kB).
ROWS_PER_RANKED_PARTITION = 20_000

#: The position of a resource in the input: (file index, Spark split, line or entry within the split).
Position = tuple[int, int, int]
#: What the shuffle carries: ((patient id, position), (Bundle entry as JSON, its medicationReference)).
KeyedEntry = tuple[tuple[str, Position], tuple[bytes, str | None]]


class SparkInputError(ValueError):
    """Inputs Spark cannot read (the message names the file or folder, never its content)."""


@dataclass(frozen=True)
class TrialSource:
    """The trials as the executors load them: the text of a trials folder's files by relative path, or
    none for the bundled trials every install carries; and which of them to screen, in order. Plain
    values: broadcast as it is."""

    files: Mapping[str, str]
    trial_ids: tuple[str, ...]

    @classmethod
    def of_folder(cls, trials_dir: Path | None, trial_ids: Iterable[str]) -> TrialSource:
        files: dict[str, str] = {}
        if trials_dir is not None:
            for path in sorted(trials_dir.rglob("*")):
                if path.is_file() and path.suffix in (".yaml", ".yml"):
                    files[path.relative_to(trials_dir).as_posix()] = path.read_text(encoding="utf-8")
        return cls(files, tuple(trial_ids))

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for name, text in sorted(self.files.items()):
            h.update(name.encode() + b"\0" + text.encode() + b"\0")
        h.update("\0".join(self.trial_ids).encode())
        return h.hexdigest()


# Per Python worker (Spark reuses a worker from task to task): the trials of a TrialSource, by digest.
_LOADED: dict[str, tuple[list[TrialSpec], ValueSetLibrary]] = {}


def load_trials(source: TrialSource) -> tuple[list[TrialSpec], ValueSetLibrary]:
    """The trials of ``source`` (in the order of ``trial_ids``) and their value sets, loaded once per
    process."""
    digest = source.digest
    loaded = _LOADED.get(digest)
    if loaded is None:
        if source.files:
            with tempfile.TemporaryDirectory(prefix="trial-cds-trials-") as tmp:
                folder = Path(tmp)
                for name, text in source.files.items():
                    target = folder / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text, encoding="utf-8")
                portfolio = load_portfolio(folder)
        else:
            portfolio = load_portfolio(None)
        loaded = ([portfolio.trials[tid] for tid in source.trial_ids], portfolio.library)
        _LOADED[digest] = loaded
        # As the local engine's workers (cds.prescreen.local): the long-lived trials out of the cyclic
        # collector's sight, and fewer young collections while a record's thousands of containers come and go.
        gc.collect()
        gc.freeze()
        gc.set_threshold(*cds.GC_THRESHOLDS)
    return loaded


def spark_session(master: str | None = None, conf: Mapping[str, str] | None = None) -> SparkSession:
    """A Spark session for the pre-screen: ``master`` a cluster URL ("spark://host:7077", "yarn",
    "k8s://…") or "local[N]"; None for the one spark-submit configured, else ``local[*]``. An active
    session (a test's) is reused as it is.

    Spark's own logs are set to WARN: they name no patient (resources travel as task data, never in a log
    line), and the Python workers log nothing of their own."""
    builder = SparkSession.builder.appName("trial-cds prescreen")
    if master is None and SparkSession.getActiveSession() is None and SUBMITTED not in os.environ:
        master = "local[*]"  # run with python, not spark-submit: this machine's cores
    if master:
        builder = builder.master(master)
        if master.startswith("local"):
            # The workers on this machine run this interpreter (this virtualenv), not the first python3 on
            # PATH (PySpark's default); on a cluster, PYSPARK_PYTHON names the executors' own.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # The pre-screen shows its own progress; Spark's stage bars would write over it.
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


@dataclass(frozen=True)
class InputFile:
    #: The file's name as Hadoop's Path writes it (what Spark is given to read).
    uri: str
    size: int
    #: The same as a URI, percent-encoded: the name Spark SQL's ``_metadata.file_path`` gives its lines.
    encoded: str


def input_files(spark: SparkSession, sources: Sequence[str | Path], kind: InputKind) -> list[InputFile]:
    """The input files of ``sources`` (folders, or files), in name order within each source, as Spark
    names them ("file:/…", "hdfs://…", "s3a://…"): listed through Hadoop's file system, which is what the
    executors read, not the driver's disk."""
    patterns = NDJSON_PATTERNS if kind == "ndjson" else BUNDLE_PATTERNS
    jvm: Any = spark.sparkContext._jvm
    conf: Any = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_path = jvm.org.apache.hadoop.fs.Path
    files: list[InputFile] = []
    for source in sources:
        root = hadoop_path(_uri(source))
        fs = root.getFileSystem(conf)
        if not fs.exists(root):
            raise SparkInputError(f"{source}: no such file or folder")
        status = fs.getFileStatus(root)
        if status.isFile():
            files.append(_input_file(status))
            continue
        found: dict[str, InputFile] = {}
        for pattern in patterns:
            for status in fs.globStatus(hadoop_path(root, pattern)) or []:
                if status.isFile():
                    found[str(status.getPath().getName())] = _input_file(status)
        if not found:
            raise SparkInputError(f"{source} holds no {' or '.join(patterns)} file")
        files.extend(found[name] for name in sorted(found))
    return files


def _input_file(status: Any) -> InputFile:
    path = status.getPath()
    return InputFile(str(path.toString()), int(status.getLen()), str(path.toUri().toString()))


def _uri(source: str | Path) -> str:
    text = str(source)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return text
    return Path(text).resolve().as_uri()


def prescreen_spark(
    spark: SparkSession,
    sources: Sequence[str | Path],
    out_dir: Path,
    *,
    kind: InputKind,
    trials: Mapping[str, TrialSpec],
    trials_dir: Path | None,
    now: datetime,
    partitions: int | None = None,
) -> list[TrialSummary]:
    """`trial-cds prescreen --engine spark`: screen on Spark, write the outputs on the driver as the local
    engine writes them (the ranked rows streamed trial by trial, never all held)."""
    trial_ids = tuple(sorted(trials))
    rows = run_spark(
        spark, sources, kind=kind, trials=TrialSource.of_folder(trials_dir, trial_ids), now=now, partitions=partitions
    )
    streams = TrialStreams(rows)
    summaries = write_outputs(
        {tid: streams.rows_of(tid) for tid in trial_ids}, out_dir, trials=trials, evaluated_at=now
    )
    streams.finish()
    return summaries


class TrialStreams:
    """One ranked stream of every trial's rows (trial by trial) read as one stream per trial, the trials in
    order of their ids, as :func:`write_outputs` reads them."""

    def __init__(self, rows: Iterator[CandidateRow]) -> None:
        self._rows = rows
        self._pending: CandidateRow | None = None

    def rows_of(self, trial_id: str) -> Iterator[CandidateRow]:
        while True:
            row = self._pending if self._pending is not None else next(self._rows, None)
            self._pending = None
            if row is None:
                return
            if row.trial_id != trial_id:
                if row.trial_id < trial_id:
                    raise RuntimeError(f"rows of trial {row.trial_id!r} after those of {trial_id!r}: not read in order")
                self._pending = row
                return
            yield row

    def finish(self) -> None:
        """Check that every row was read (a trial read out of order would leave some)."""
        left = self._pending if self._pending is not None else next(self._rows, None)
        if left is not None:
            raise RuntimeError(f"rows of trial {left.trial_id!r} were not written")


def run_spark(
    spark: SparkSession,
    sources: Sequence[str | Path],
    *,
    kind: InputKind,
    trials: TrialSource,
    now: datetime,
    partitions: int | None = None,
) -> Iterator[CandidateRow]:
    """Every patient of ``sources`` against the trials. Screens the population before it returns (a bad
    input is an error before any output is written), then streams the rows to the driver one ranked
    partition at a time: trial by trial, by :attr:`CandidateRow.rank_key`. Read the rows to the end (or
    close the iterator): that frees what the executors keep of them.

    ``partitions``: how many groups of patients are screened as tasks (default: one per
    PARTITION_INPUT_BYTES of input, at least TASKS_PER_CORE per core)."""
    sc = spark.sparkContext
    listed = input_files(spark, sources, kind)
    files = [f.uri for f in listed]
    read = [f for f in listed if kind == "bundles" or _may_hold(f.uri, RECORD_TYPES)]
    by_size = -(-sum(f.size for f in read) // PARTITION_INPUT_BYTES)
    count = partitions or max(TASKS_PER_CORE * sc.defaultParallelism, by_size)
    if not read:
        return iter(())
    shared = sc.broadcast(gather_shared(spark, listed, kind))
    source = sc.broadcast(trials)
    screen = partial(_screen_lines, shared, source, now)
    python_keys = False
    while True:
        rows: RDD[CandidateRow]
        undecided = sc.accumulator(0)
        if kind == "ndjson":
            grouped = grouped_lines(spark, read, count, python_keys=python_keys)
            rows = grouped.rdd.mapPartitions(partial(screen, undecided))
        else:
            entries = keyed_entries(spark, files, kind).repartitionAndSortWithinPartitions(
                numPartitions=count, partitionFunc=_patient_partition, keyfunc=_AS_SORT_KEY
            )
            rows = entries.mapPartitions(partial(_screen_partition, shared, source, now))
        # Kept (memory, else the executors' disks) once screened, so that the sort's sample of the rows and
        # the sort itself read them rather than screen the population again.
        rows.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            screened = rows.count()
        except BaseException:
            _release(rows, shared, source)
            raise
        if kind == "bundles" or python_keys or not undecided.value:
            break
        rows.unpersist()  # some lines' patients are the key function's to say: grouped again (rare)
        python_keys = True
    # As many ranked partitions as the driver fetches comfortably, one job each (toLocalIterator).
    if screened <= ROWS_PER_RANKED_PARTITION:
        # As many rows as one ranked partition: fetched and sorted here, without Spark's sort (its sample
        # of the rows and its shuffle are two more jobs).
        ranked_here = sorted(rows.collect(), key=_rank_key)
        _release(rows, shared, source)
        return iter(ranked_here)
    ranked = rows.sortBy(_RANK_KEY, numPartitions=-(-screened // ROWS_PER_RANKED_PARTITION))
    return _streamed(ranked, rows, shared, source)


def _streamed(
    ranked: RDD[CandidateRow], rows: RDD[CandidateRow], *broadcasts: Broadcast[Any]
) -> Iterator[CandidateRow]:
    try:
        yield from ranked.toLocalIterator(prefetchPartitions=True)
    finally:
        _release(rows, *broadcasts)


def _release(rows: RDD[CandidateRow], *broadcasts: Broadcast[Any]) -> None:
    rows.unpersist()
    for b in broadcasts:
        b.unpersist()


def _identity(key: tuple[str, Position]) -> tuple[str, Position]:
    return key


def _rank_key(row: CandidateRow) -> tuple[str, int, int, int, str]:
    return row.rank_key


# PySpark types a sort key by a protocol whose __lt__ a tuple's does not match: the key functions typed Any.
_AS_SORT_KEY: Any = _identity
_RANK_KEY: Any = _rank_key


def _patient_partition(key: tuple[str, Position]) -> int:
    # Every Python worker hashes alike (str's hash() is salted per process); the local spill's hash too.
    return zlib.crc32(key[0].encode())


# -- reading and keying: what cds.prescreen.spill does for the local engine, on the executors ---------------


def ndjson_lines(spark: SparkSession, files: Sequence[InputFile]) -> DataFrame:
    """Every line of the NDJSON files, read by the JVM (``value``), with its position in the input:
    ``file`` (its index in ``files``), ``block`` (where the split that holds it starts in the file) and
    ``row`` (increasing through a split), so that (file, block, row) is the input order."""
    index = F.create_map(*[F.lit(x) for i, f in enumerate(files) for x in (f.encoded, i)])
    file_index = F.try_element_at(index, F.col("_metadata.file_path"))
    unlisted = F.raise_error(F.lit("Spark read a file that was not listed as an input")).cast("int")
    return spark.read.text([f.uri for f in files]).select(
        "value",
        F.coalesce(file_index, unlisted).alias("file"),
        F.col("_metadata.file_block_start").alias("block"),
        F.monotonically_increasing_id().alias("row"),
    )


def grouped_lines(
    spark: SparkSession, files: Sequence[InputFile], partitions: int, *, python_keys: bool = False
) -> DataFrame:
    """(``key``, ``value``): every line of the files that a record reads, keyed by its patient, in
    ``partitions`` partitions by key, sorted by key and then input order, all of it in the JVM
    (:mod:`cds.prescreen.spark_keys`). A line whose key the JVM cannot decide has a null key (sorted
    first): the screening counts them, and a run that meets any groups again with ``python_keys``, where
    the key function decides those lines (every line passes through Python then: slower, never wrong)."""
    keyed = key_columns(ndjson_lines(spark, files), "value", ("value", "file", "block", "row"))
    keyed = keyed.filter(F.col("candidate").isNotNull() | F.col("undecided"))
    key = F.when(~F.col("undecided"), F.col("candidate"))
    if python_keys:
        # (The argument is null but for undecided lines: Spark evaluates a Python function on every row.)
        key = F.when(F.col("undecided"), python_key_udf(F.when(F.col("undecided"), F.col("value")))).otherwise(key)
    keyed = keyed.select(key.alias("key"), "value", "file", "block", "row")
    if python_keys:
        keyed = keyed.filter(F.col("key").isNotNull())
    return (
        keyed.repartition(partitions, "key").sortWithinPartitions("key", "file", "block", "row").select("key", "value")
    )


def keyed_entries(spark: SparkSession, files: Sequence[str], kind: InputKind) -> RDD[KeyedEntry]:
    """Every resource of the Bundles a record reads, keyed by (patient id, position in the input), with its
    Bundle entry as JSON text and the Medication it names."""
    sc = spark.sparkContext
    order = sc.broadcast({uri: index for index, uri in enumerate(files)})
    return sc.binaryFiles(",".join(files)).flatMap(partial(_bundle_file_entries, order))


def _bundle_file_entries(order: Broadcast[dict[str, int]], pair: tuple[str, bytes]) -> Iterator[KeyedEntry]:
    return _bundle_entries(order.value[pair[0]], pair[1])


def _bundle_entries(file_index: int, content: bytes) -> Iterator[KeyedEntry]:
    try:
        bundle = orjson.loads(content)
    except orjson.JSONDecodeError:
        return
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return
    entries = [e for e in bundle.get("entry") or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    # A Bundle's references may name its Patient by fullUrl ("urn:uuid:…"): resolved within the Bundle, and
    # the Patient's entry keeps its fullUrl so that the patient's regrouped Bundle resolves them alike.
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
    for n, e in enumerate(entries):
        r = e["resource"]
        rtype = r.get("resourceType")
        if rtype not in RECORD_TYPES:
            continue
        url = e.get("fullUrl")
        kept = {"fullUrl": url, "resource": r} if rtype == "Patient" and isinstance(url, str) else {"resource": r}
        entry = orjson.dumps(kept)
        value = (entry, medication_reference(r))
        key = patient_key(r, full_urls)
        if key is not None:
            yield (key, (file_index, 0, n)), value
        elif patients and not names_anyone(r):
            # As `trial-cds screen` reads a Bundle: a resource that names nobody is each of its Patients'.
            for pid in patients:
                yield (pid, (file_index, 0, n)), value


# -- screening ------------------------------------------------------------------------------------------


def _screen_partition(
    shared: Broadcast[SharedResources],
    source: Broadcast[TrialSource],
    now: datetime,
    entries: Iterable[KeyedEntry],
) -> Iterator[CandidateRow]:
    trials, library = load_trials(source.value)
    medications = shared.value
    # Sorted by (patient, position): each patient's entries arrive together, in input order.
    for _patient, group in groupby(entries, key=_patient_of):
        patient_entries: list[bytes] = []
        references: list[str] = []
        for _key, (entry, reference) in group:
            patient_entries.append(entry)
            if reference:
                references.append(reference)
        yield from screen_entries(patient_entries, references, medications, trials, library, now)


def _screen_lines(
    shared: Broadcast[SharedResources],
    source: Broadcast[TrialSource],
    now: datetime,
    undecided: Accumulator[int],
    lines: Iterable[Row],
) -> Iterator[CandidateRow]:
    trials, library = load_trials(source.value)
    medications = shared.value
    # Sorted by key, then input order: each patient's lines arrive together, in input order.
    for key, group in groupby(lines, key=_key_of):
        if key is None:  # lines the JVM could not key: the run groups again (grouped_lines)
            undecided.add(sum(1 for _ in group))
            continue
        patient_entries: list[bytes] = []
        references: list[str] = []
        for entry, reference in confirmed_entries(key, (row[1] for row in group)):
            patient_entries.append(entry)
            if reference:
                references.append(reference)
        if patient_entries:
            yield from screen_entries(patient_entries, references, medications, trials, library, now)


def _key_of(row: Row) -> str | None:
    key = row[0]
    return None if key is None else str(key)


def _patient_of(item: KeyedEntry) -> str:
    return item[0][0]


# -- shared resources -----------------------------------------------------------------------------------


def gather_shared(spark: SparkSession, files: Sequence[InputFile], kind: InputKind) -> SharedResources:
    """The population's shared resources (Medications), in input order (the first of an id wins, as in the
    local engine). NDJSON files named after another resource type (`$export` writes one file per type)
    are not read for them; in the others, the JVM picks the lines that name a shared type, which are read
    here (a formulary: what a patient's requests name, not a population)."""
    sc = spark.sparkContext
    if kind == "ndjson":
        candidates = [f for f in files if _may_hold(f.uri, SHARED_TYPES)]
        if not candidates:
            return SharedResources()
        lines = ndjson_lines(spark, candidates)
        named = F.lit(False)
        for marker in _SHARED_MARKERS:
            named = named | F.col("value").contains(marker)
        picked = lines.filter(named).select("file", "block", "row", "value").collect()
        found = [
            ((int(r["file"]), int(r["block"]), int(r["row"])), resource)
            for r in picked
            if _is_shared(resource := _json_or_none(r["value"]))
        ]
    else:
        order = sc.broadcast({f.uri: index for index, f in enumerate(files)})
        found = sc.binaryFiles(",".join(f.uri for f in files)).flatMap(partial(_bundle_file_shared, order)).collect()
    return SharedResources.from_resources(resource for _, resource in sorted(found, key=_position_of))


def _json_or_none(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _position_of(item: tuple[Position, dict[str, Any]]) -> Position:
    return item[0]


def _may_hold(uri: str, types: frozenset[str]) -> bool:
    """Whether the file may hold resources of ``types``: one named after another type does not (`$export`
    writes one file per type); one named otherwise may."""
    typed = _TYPED_FILE.match(uri.rsplit("/", 1)[-1])
    return typed is None or typed.group(1) in types


_SHARED_MARKERS = tuple(f'"{t}"' for t in sorted(SHARED_TYPES))


def _bundle_file_shared(
    order: Broadcast[dict[str, int]], pair: tuple[str, bytes]
) -> list[tuple[Position, dict[str, Any]]]:
    return _bundle_shared(order.value[pair[0]], pair[1])


def _is_shared(resource: Any) -> bool:
    return isinstance(resource, dict) and resource.get("resourceType") in SHARED_TYPES and patient_key(resource) is None


def _bundle_shared(file_index: int, content: bytes) -> list[tuple[Position, dict[str, Any]]]:
    if not any(marker.encode() in content for marker in _SHARED_MARKERS):
        return []
    try:
        bundle = orjson.loads(content)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return []
    entries = [e for e in bundle.get("entry") or () if isinstance(e, dict)]
    return [((file_index, 0, n), e["resource"]) for n, e in enumerate(entries) if _is_shared(e.get("resource"))]
