"""A small HTTP/1.1 load generator: asyncio streams, keep-alive, loopback only, bounded and self-stopping.

Each of ``concurrency`` connections sends the same POST body again and again until ``requests`` have
been sent in all or ``max_seconds`` have passed, and records each request's latency (request written →
whole response read). Hand-written HTTP keeps the client's own cost per request far below the
servers', so the figures are the servers'.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    response_bytes: int = 0

    @property
    def count(self) -> int:
        return len(self.latencies_s)

    def percentile(self, p: float) -> float:
        """The p-th percentile (nearest rank), in ms."""
        ordered = sorted(self.latencies_s)
        if not ordered:
            return float("nan")
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1] * 1000

    @property
    def rps(self) -> float:
        return self.count / self.wall_s if self.wall_s else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.count,
            "p50_ms": self.percentile(50),
            "p95_ms": self.percentile(95),
            "p99_ms": self.percentile(99),
            "mean_ms": statistics.fmean(self.latencies_s) * 1000 if self.latencies_s else float("nan"),
            "rps": self.rps,
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        lname = name.strip().lower()
        if lname == "content-length":
            length = int(value.strip())
        elif lname == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if not chunked:
        await reader.readexactly(length)
        return status, length
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        total += size
        if size == 0:
            return status, total


async def run_load(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    requests: int,
    max_seconds: float,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the load generator only talks to loopback")
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode("latin-1")
    result = LoadResult()
    sent = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                t0 = time.perf_counter()
                writer.write(head)
                writer.write(body)
                await writer.drain()
                status, size = await _read_response(reader)
                result.latencies_s.append(time.perf_counter() - t0)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.response_bytes += size
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result


def load(url: str, body: bytes, **kwargs: object) -> LoadResult:
    return asyncio.run(run_load(url, body, **kwargs))  # type: ignore[arg-type]
