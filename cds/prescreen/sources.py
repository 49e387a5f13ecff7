"""The inputs of a pre-screen: the files of an NDJSON export or of a folder of Bundles, and their
fingerprint (what a finished partition's results are valid for)."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

#: Suffixes of the files read: NDJSON as `$export` writes it (one file per resource type), gzip-compressed
#: or not; Bundles as JSON files.
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")
BUNDLE_SUFFIXES = (".json",)


class SourceError(ValueError):
    """An input that cannot be read at all (the message names the file, never its content)."""


def input_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The files of ``folder`` (not its subfolders) with one of ``suffixes``, in name order."""
    if not folder.is_dir():
        raise SourceError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(suffixes))
    if not files:
        raise SourceError(f"{folder} holds no {' or '.join('*' + s for s in suffixes)} file")
    return files


def fingerprint(files: list[Path]) -> str:
    """A digest of the files' names, sizes and modification times: a changed input is another input."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def total_bytes(files: list[Path]) -> int:
    return sum(p.stat().st_size for p in files)


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped when its name says so."""
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def ndjson_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of an NDJSON file, each with its line number, without its line break."""
    with open_binary(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if line:
                yield number, line
