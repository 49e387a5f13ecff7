"""Two builds of trial-cds against each other, in one run: patient-view over HTTP, rounds interleaved.

    make bench-compare BASE=<git revision>     # the production wheel of BASE against this tree's

``benchmarks/compare-builds`` builds both production wheels (scripts/build-wheel, in a temporary checkout
of BASE for the first) and installs each in its own virtualenv; this script then starts ``trial-cds
serve`` from each (one uvicorn worker, ``TRIAL_CDS_AUTH=none``, its own SQLite file), feeds both the same
request bodies (full prefetch, 100 / 1,000 / 5,000 resources, built by ``benchmarks/synth.py``) at
concurrency 1, and alternates: base, new, base, new … so that the machine's drift touches both alike.
It reports, per size, the median over the rounds of each build's p50 and p99 and the ratio new / base
(below 1: the new build is faster). Results also go to ``var/bench/compare-<time>.json``.

Also in the rounds, when asked: the lab-dense patient (``--lab-dense``: 1,000 resources, every added one a
lab result the trial reads, ``synth.lab_dense``); the HealthChain peer (``--peer``: the do-nothing service
of ``run.py``, its virtualenv made by ``benchmarks/setup-healthchain``), reported as new / peer; and the new
build once more on a folder of trials (``--new-trials-dir DIR``, as ``TRIAL_CDS_TRIALS_DIR``), reported as
its p50 / the new build's.

The two builds screen the same trials: ``--base-trials-dir`` and ``--trials-dir`` give each its folder
(``benchmarks/compare-builds`` makes both, each holding one trial, ``BENCH_TRIAL``, as its own revision
wrote it). Without them each build screens its bundled portfolio, which differs once trials are added:
8a92cdd bundles one trial, later revisions seven (five open), and a build screening five trials against
one screening one is no comparison of code.

Run by the interpreter of either build; it only needs the ``trial-cds`` executables named on the command
line, and this folder's ``synth`` and ``loadgen`` (with ``fixtures`` on the path, as the Makefile sets).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path

import run
import synth
from loadgen import load

LAB_DENSE = "1000 lab-dense"
COUNTS = {"100": 300, "1000": 150, "5000": 40, LAB_DENSE: 150}


def one_round(url: str, body: bytes, scenario: str) -> tuple[float, float]:
    load(url, body, concurrency=1, requests=max(5, COUNTS[scenario] // 10), max_seconds=10)  # warm-up
    result = load(url, body, concurrency=1, requests=COUNTS[scenario], max_seconds=30)
    bad = {s: n for s, n in result.statuses.items() if s != 200}
    if bad:
        raise RuntimeError(f"{url}: non-200 answers {bad}")
    return result.percentile(50), result.percentile(99)


def trial_files(folder: Path | None) -> list[str] | str:
    """What a build screened, for the record: the trial files of its folder, or its bundled portfolio."""
    return sorted(p.name for p in folder.glob("*.yaml")) if folder else "bundled"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, type=Path, help="the base build's trial-cds executable")
    parser.add_argument("--new", required=True, type=Path, help="the new build's trial-cds executable")
    parser.add_argument("--base-label", default="base")
    parser.add_argument("--new-label", default="new")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="100,1000,5000", help="patient sizes, comma-separated")
    parser.add_argument("--lab-dense", action="store_true", help="also the 1,000-resource lab-dense patient")
    parser.add_argument("--peer", action="store_true", help="also the HealthChain peer (new / peer)")
    parser.add_argument("--new-trials-dir", type=Path, help="also the new build on this folder of trials")
    parser.add_argument("--base-trials-dir", type=Path, help="the base build's trials (default: its bundled ones)")
    parser.add_argument("--trials-dir", type=Path, help="the new build's trials (default: its bundled ones)")
    args = parser.parse_args()

    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="trial-cds-compare-"))
    shift_days = (date.today() - synth.ANCHOR).days  # the services evaluate on the real date
    bodies = {
        str(size): run.hook_body(synth.patient(int(size), shift_days=shift_days)) for size in args.sizes.split(",")
    }
    if args.lab_dense:
        bodies[LAB_DENSE] = run.hook_body(synth.lab_dense_patient(1000, shift_days=shift_days))
    scenarios = list(bodies)
    servers: dict[str, tuple[list[str], dict[str, str], str]] = {}  # name → command, environment, path
    for name, exe, trials_dir in (("base", args.base, args.base_trials_dir), ("new", args.new, args.trials_dir)):
        trials_env = {"TRIAL_CDS_TRIALS_DIR": str(trials_dir)} if trials_dir else {}
        servers[name] = ([str(exe), "serve"], trials_env, run.SERVICE_PATH)
    if args.new_trials_dir:
        servers["new-folder"] = (
            [str(args.new), "serve"],
            {"TRIAL_CDS_TRIALS_DIR": str(args.new_trials_dir)},
            run.SERVICE_PATH,
        )
    if args.peer:
        subprocess.run([str(run.HERE / "setup-healthchain")], check=True)
        peer = [str(run.HERE / ".venv-healthchain" / "bin" / "python"), "-m", "uvicorn", "peer_healthchain:app"]
        peer += ["--app-dir", str(run.HERE), "--log-level", "warning", "--no-access-log"]
        servers["peer"] = (peer, {}, run.PEER_PATH)
    figures: dict[str, dict[str, list[tuple[float, float]]]] = {n: {s: [] for s in scenarios} for n in servers}
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        for name, (cmd, extra_env, path) in servers.items():
            port = run.free_port()
            folder = workdir / name
            folder.mkdir()
            if name == "peer":
                env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
            else:
                env = {**run.service_env(folder, None), **extra_env}
            stack.enter_context(
                run.process(
                    [*cmd, "--host", "127.0.0.1", "--port", str(port)],
                    env=env,
                    cwd=folder,
                    log_path=folder / "service.log",
                    health=f"http://127.0.0.1:{port}/health",
                )
            )
            urls[name] = f"http://127.0.0.1:{port}{path}"
        for r in range(args.rounds):
            run.log(f"round {r + 1} of {args.rounds}")
            for scenario in scenarios:
                order = list(servers) if r % 2 == 0 else list(servers)[::-1]
                for name in order:
                    figures[name][scenario].append(one_round(urls[name], bodies[scenario], scenario))

    def p50(name: str, scenario: str) -> float:
        return statistics.median(p for p, _ in figures[name][scenario])

    def p99(name: str, scenario: str) -> float:
        return statistics.median(p for _, p in figures[name][scenario])

    rows: dict[str, dict[str, float]] = {}
    for scenario in scenarios:
        rows[scenario] = {
            "base_p50_ms": p50("base", scenario),
            "new_p50_ms": p50("new", scenario),
            "p50_ratio": p50("new", scenario) / p50("base", scenario),
            "base_p99_ms": p99("base", scenario),
            "new_p99_ms": p99("new", scenario),
        }
        if "peer" in servers:
            rows[scenario] |= {
                "peer_p50_ms": p50("peer", scenario),
                "new_per_peer": p50("new", scenario) / p50("peer", scenario),
            }
        if "new-folder" in servers:
            rows[scenario] |= {
                "folder_p50_ms": p50("new-folder", scenario),
                "folder_per_new": p50("new-folder", scenario) / p50("new", scenario),
            }
    print(
        f"\n{args.new_label} against {args.base_label}, patient-view over HTTP, concurrency 1, "
        f"medians of {args.rounds} interleaved rounds:"
    )
    extra = (" peer p50 ms | new / peer |" if "peer" in servers else "") + (
        " folder p50 ms | folder / new |" if "new-folder" in servers else ""
    )
    print("| resources | base p50 ms | new p50 ms | new / base | base p99 ms | new p99 ms |" + extra)
    print("| ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: | ---: |" * (extra.count("|") // 2))
    for scenario, row in rows.items():
        more = ""
        if "peer" in servers:
            more += f" {row['peer_p50_ms']:.2f} | {row['new_per_peer']:.2f} |"
        if "new-folder" in servers:
            more += f" {row['folder_p50_ms']:.2f} | {row['folder_per_new']:.2f} |"
        print(
            f"| {scenario} | {row['base_p50_ms']:.2f} | {row['new_p50_ms']:.2f} | {row['p50_ratio']:.2f} | "
            f"{row['base_p99_ms']:.2f} | {row['new_p99_ms']:.2f} |" + more
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
                "base_trials": trial_files(args.base_trials_dir),
                "new_trials": trial_files(args.trials_dir),
                "new_trials_dir": str(args.new_trials_dir) if args.new_trials_dir else None,
                "sizes": rows,
            },
            indent=2,
        )
    )
    print(f"\n(written to {out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
