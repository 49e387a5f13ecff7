"""Two builds of trial-cds against each other, in one run: patient-view over HTTP, rounds interleaved.

    make bench-compare BASE=<git revision>     # the production wheel of BASE against this tree's

``benchmarks/compare-builds`` builds both production wheels (scripts/build-wheel, in a temporary checkout
of BASE for the first) and installs each in its own virtualenv; this script then starts ``trial-cds
serve`` from each (one uvicorn worker, ``TRIAL_CDS_AUTH=none``, its own SQLite file), feeds both the same
request bodies (full prefetch, 100 / 1,000 / 5,000 resources, built by ``benchmarks/synth.py``) at
concurrency 1, and alternates: base, new, base, new … so that the machine's drift touches both alike.
It reports, per size, the median over the rounds of each build's p50 and p99 and the ratio new / base
(below 1: the new build is faster). Results also go to ``var/bench/compare-<time>.json``.

Run by the interpreter of either build; it only needs the ``trial-cds`` executables named on the command
line, and this folder's ``synth`` and ``loadgen`` (with ``fixtures`` on the path, as the Makefile sets).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path

import run
import synth
from loadgen import load

SIZES = (100, 1000, 5000)
COUNTS = {100: 300, 1000: 150, 5000: 40}


def one_round(url: str, body: bytes, size: int) -> tuple[float, float]:
    load(url, body, concurrency=1, requests=max(5, COUNTS[size] // 10), max_seconds=10)  # warm-up
    result = load(url, body, concurrency=1, requests=COUNTS[size], max_seconds=30)
    bad = {s: n for s, n in result.statuses.items() if s != 200}
    if bad:
        raise RuntimeError(f"{url}: non-200 answers {bad}")
    return result.percentile(50), result.percentile(99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, type=Path, help="the base build's trial-cds executable")
    parser.add_argument("--new", required=True, type=Path, help="the new build's trial-cds executable")
    parser.add_argument("--base-label", default="base")
    parser.add_argument("--new-label", default="new")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="trial-cds-compare-"))
    shift_days = (date.today() - synth.ANCHOR).days  # the services evaluate on the real date
    bodies = {size: run.hook_body(synth.shift(synth.patient(size), shift_days)) for size in SIZES}
    builds = {"base": args.base, "new": args.new}
    figures: dict[str, dict[int, list[tuple[float, float]]]] = {name: {s: [] for s in SIZES} for name in builds}
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        for name, exe in builds.items():
            port = run.free_port()
            folder = workdir / name
            folder.mkdir()
            stack.enter_context(
                run.process(
                    [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=run.service_env(folder, None),
                    cwd=folder,
                    log_path=folder / "service.log",
                    health=f"http://127.0.0.1:{port}/health",
                )
            )
            urls[name] = f"http://127.0.0.1:{port}{run.SERVICE_PATH}"
        for r in range(args.rounds):
            run.log(f"round {r + 1} of {args.rounds}")
            for size in SIZES:
                order = ("base", "new") if r % 2 == 0 else ("new", "base")
                for name in order:
                    figures[name][size].append(one_round(urls[name], bodies[size], size))

    rows = {}
    for size in SIZES:
        base_p50 = statistics.median(p50 for p50, _ in figures["base"][size])
        new_p50 = statistics.median(p50 for p50, _ in figures["new"][size])
        base_p99 = statistics.median(p99 for _, p99 in figures["base"][size])
        new_p99 = statistics.median(p99 for _, p99 in figures["new"][size])
        rows[size] = {
            "base_p50_ms": base_p50,
            "new_p50_ms": new_p50,
            "p50_ratio": new_p50 / base_p50,
            "base_p99_ms": base_p99,
            "new_p99_ms": new_p99,
        }
    print(
        f"\n{args.new_label} against {args.base_label}, patient-view over HTTP, concurrency 1, "
        f"medians of {args.rounds} interleaved rounds:"
    )
    print("| resources | base p50 ms | new p50 ms | new / base | base p99 ms | new p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, row in rows.items():
        print(
            f"| {size:,} | {row['base_p50_ms']:.2f} | {row['new_p50_ms']:.2f} | {row['p50_ratio']:.2f} | "
            f"{row['base_p99_ms']:.2f} | {row['new_p99_ms']:.2f} |"
        )
    out = run.ROOT / "var" / "bench" / f"compare-{started.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(timespec="seconds"),
                "base": args.base_label,
                "new": args.new_label,
                "rounds": args.rounds,
                "sizes": {str(k): v for k, v in rows.items()},
            },
            indent=2,
        )
    )
    print(f"\n(written to {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
