"""Grouping a population by patient on disk: every patient's resources, from every file, in one
partition; no partition holds another's patients; what no rule reads is not spilled; a finished spill is
not done again."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import fhir_builders as fb
import orjson
import pytest
from prescreen_support import write_ndjson
from pytest import MonkeyPatch

from cds.prescreen.spill import (
    RECORD_TYPES,
    SHARED_FILE,
    Chunk,
    Segment,
    declared_type,
    partition_count,
    partition_files,
    partition_of,
    plan_chunks,
    read_partition,
    segment_lines,
    shared_files,
    spill,
    spill_in_order,
)
from cds.record.reading import EARLIER_FHIR_TYPES, RecordReader


def _population(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        pid = f"p-{i}"
        out.append(fb.patient(pid=pid))
        out.append(fb.vital_sign("8867-4", "Heart rate", 60 + i, "/min", "2026-10-01", pid=pid))
        out.append(fb.vital_sign("8310-5", "Body temperature", 37, "Cel", "2026-10-02", pid=pid))
    return out


def _spilled(tmp_path: Path, resources: list[dict[str, Any]], partitions: int) -> Path:
    files = sorted(write_ndjson(tmp_path / "export", resources).glob("*.ndjson"))
    spill(files, tmp_path / "spill", partitions)
    return tmp_path / "spill"


def test_the_spilled_types_are_those_the_record_reads() -> None:
    readers = set(RecordReader(None, {}).readers)
    assert readers | {"Patient"} | EARLIER_FHIR_TYPES == RECORD_TYPES


def test_each_patient_s_resources_from_every_file_are_in_one_partition(tmp_path: Path) -> None:
    folder = _spilled(tmp_path, _population(40), partitions=7)
    seen: dict[str, int] = {}
    for part in partition_files(folder):
        for key, entries, _ in read_partition(part):
            assert key not in seen, "a patient in two partitions"
            seen[key] = len(entries)
    assert seen == {f"p-{i}": 3 for i in range(40)}  # the Patient and both Observations, from two files


def test_a_partition_holds_only_the_patients_its_hash_gives_it(tmp_path: Path) -> None:
    folder = _spilled(tmp_path, _population(40), partitions=7)
    parts = partition_files(folder)
    assert len(parts) > 1
    for part in parts:
        for piece in part.pieces:
            for line in piece.read_bytes().splitlines():
                key = orjson.loads(line.partition(b"\t")[0])[0]
                assert partition_of(key, 7) == part.index


def test_a_partition_lists_its_patients_in_id_order(tmp_path: Path) -> None:
    folder = _spilled(tmp_path, _population(40), partitions=1)
    keys = [key for key, _, _ in read_partition(partition_files(folder)[0])]
    assert keys == sorted(keys)


_CLAIM = {"resourceType": "Claim", "id": "c1", "patient": {"reference": "Patient/p-0"}}


def _spilled_bytes(folder: Path) -> bytes:
    return b"".join(piece.read_bytes() for part in partition_files(folder) for piece in part.pieces)


def test_resources_no_rule_reads_are_counted_not_spilled(tmp_path: Path) -> None:
    export = write_ndjson(tmp_path / "export", _population(1))
    (export / "Mixed.ndjson").write_bytes(orjson.dumps(_CLAIM) + b"\n")
    manifest = spill(sorted(export.glob("*.ndjson")), tmp_path / "spill", 1)
    assert manifest.not_read == {"Claim": 1}
    assert b'"Claim"' not in _spilled_bytes(tmp_path / "spill")


def test_a_file_named_after_a_type_no_rule_reads_is_not_read_past_its_first_line(tmp_path: Path) -> None:
    export = write_ndjson(tmp_path / "export", [*_population(1), _CLAIM])
    claims = export / "Claim.ndjson"
    claims.write_bytes(claims.read_bytes() + b"not JSON: never read\n")
    manifest = spill(sorted(export.glob("*.ndjson")), tmp_path / "spill", 1)
    assert manifest.files_not_read == {"Claim": claims.stat().st_size}
    assert manifest.not_read == {}
    assert manifest.unreadable == 0
    assert manifest.resources_read == 3


def test_a_file_named_after_one_type_that_holds_another_is_read_line_by_line(tmp_path: Path) -> None:
    export = write_ndjson(tmp_path / "export", [])
    patient, heart_rate, _ = _population(1)
    (export / "Claim.2.ndjson").write_bytes(b"\n".join(orjson.dumps(r) for r in (patient, _CLAIM, heart_rate)))
    manifest = spill(sorted(export.glob("*.ndjson")), tmp_path / "spill", 1)
    assert manifest.files_not_read == {}
    assert manifest.not_read == {"Claim": 1}
    assert manifest.resources_spilled == 2


def test_declared_types_are_those_of_export_file_names() -> None:
    assert declared_type(Path("Claim.ndjson")) == "Claim"
    assert declared_type(Path("ExplanationOfBenefit.3.ndjson.gz")) == "ExplanationOfBenefit"
    assert declared_type(Path("export-1.ndjson")) is None
    assert declared_type(Path("claims.ndjson")) is None


def test_a_large_file_is_cut_at_line_ends_into_chunks_that_spill_the_same_as_one_pass(
    tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    from cds.prescreen import spill as spill_module

    files = sorted(write_ndjson(tmp_path / "export", _population(50)).glob("*.ndjson"))
    whole = spill(files, tmp_path / "whole", 4)
    monkeypatch.setattr(spill_module, "CHUNK_BYTES", 1_000)
    chunks = plan_chunks(files)
    assert len(chunks) > 10
    assert any(s.start > 0 for c in chunks for s in c.segments)
    cut = spill(files, tmp_path / "cut", 4)
    assert cut == whole
    for a, b in zip(partition_files(tmp_path / "whole"), partition_files(tmp_path / "cut"), strict=True):
        assert a.index == b.index
        assert list(read_partition(a)) == list(read_partition(b))


def test_each_line_of_a_cut_file_is_in_exactly_one_segment(tmp_path: Path) -> None:
    path = tmp_path / "Observation.ndjson"
    lines = [b'{"n": %d, "pad": "%s"}' % (i, b"x" * (i % 7)) for i in range(200)]
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    size = path.stat().st_size
    for pieces in (2, 3, 17, 64):
        bounds = [size * i // pieces for i in range(pieces + 1)]
        read = [line for a, b in itertools.pairwise(bounds) for line in segment_lines(Segment(path, a, b))]
        assert read == lines


def test_an_interrupted_spill_keeps_its_finished_chunks(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    from cds.prescreen import spill as spill_module

    monkeypatch.setattr(spill_module, "CHUNK_BYTES", 1_000)
    files = sorted(write_ndjson(tmp_path / "export", _population(30)).glob("*.ndjson"))
    ran: list[int] = []

    def stops_after_three(chunks: list[Chunk], folder: Path, partitions: int, bundles: bool) -> Any:
        for chunk, counts in spill_in_order(chunks, folder, partitions, bundles):
            ran.append(chunk.index)
            yield chunk, counts
            if len(ran) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        spill(files, tmp_path / "spill", 3, runner=stops_after_three)
    resumed = spill(files, tmp_path / "spill", 3, runner=stops_after_three)
    assert ran[3] == 3  # the first three were not spilled again
    assert resumed == spill(files, tmp_path / "again", 3)


def test_medications_go_to_the_shared_file_and_are_named_with_the_patient_s_resources(tmp_path: Path) -> None:
    medication = {"resourceType": "Medication", "id": "med-1", "code": fb.codeable([(fb.RXNORM, "2555", "cisplatin")])}
    use = {
        "resourceType": "MedicationStatement",
        "id": "ms-1",
        "status": "active",
        "subject": {"reference": "Patient/p-0"},
        "medicationReference": {"reference": "Medication/med-1"},
    }
    folder = _spilled(tmp_path, [fb.patient(pid="p-0"), medication, use], partitions=1)
    [shared] = shared_files(folder)
    assert shared.name == SHARED_FILE
    assert orjson.loads(shared.read_bytes())["id"] == "med-1"
    [(_, _, named)] = read_partition(partition_files(folder)[0])
    assert named == ["Medication/med-1"]


def test_lines_that_are_not_resources_are_counted_and_left_out(tmp_path: Path) -> None:
    folder = write_ndjson(tmp_path / "export", _population(1))
    (folder / "Broken.ndjson").write_bytes(b'{"resourceType": \n[1, 2]\n')
    manifest = spill(sorted(folder.glob("*.ndjson")), tmp_path / "spill", 1)
    assert manifest.unreadable == 2
    assert manifest.resources_spilled == 3


def test_gzipped_ndjson_is_read_as_ndjson(tmp_path: Path) -> None:
    import gzip

    plain = write_ndjson(tmp_path / "export", _population(3))
    for path in list(plain.glob("*.ndjson")):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    manifest = spill(sorted(plain.glob("*.ndjson.gz")), tmp_path / "spill", 2)
    assert manifest.resources_spilled == 9


def test_a_finished_spill_is_not_done_again(tmp_path: Path) -> None:
    files = sorted(write_ndjson(tmp_path / "export", _population(5)).glob("*.ndjson"))
    first = spill(files, tmp_path / "spill", 3)
    (files[0]).write_bytes(b"")  # were it read again, it would now hold no Observation
    assert spill(files, tmp_path / "spill", 3) == first


def test_partitions_grow_in_number_with_the_input_within_bounds() -> None:
    assert partition_count(0) == 1
    assert partition_count(100_000) == 1
    assert partition_count(10 * 1024 * 1024) == 40
    assert partition_count(100 * 1024 * 1024) == 64
    assert partition_count(1024**3) == 128
    assert partition_count(10 * 1024**3) == 1280
    assert partition_count(10**15) == 8192


def test_the_spill_holds_no_more_than_its_buffer_bound_in_memory(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    from cds.prescreen import spill as spill_module

    monkeypatch.setattr(spill_module, "_FLUSH_BYTES", 1_000)
    monkeypatch.setattr(spill_module, "_FLUSH_ALL_BYTES", 4_000)
    most = 0
    add = spill_module._Writer.add

    def watched(self: Any, key: str, refs: list[str], entry: bytes) -> None:
        nonlocal most
        add(self, key, refs, entry)
        most = max(most, self.buffered)

    monkeypatch.setattr(spill_module._Writer, "add", watched)
    folder = _spilled(tmp_path, _population(60), partitions=5)
    assert 0 < most < 4_000
    assert sum(len(list(read_partition(p))) for p in partition_files(folder)) == 60
