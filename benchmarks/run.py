"""trial-cds benchmark suite: one command, every figure with its ratio to references measured in the same run.

    make bench                  # the production build (compiled wheel), about 5 minutes on 2 cores
    make bench ARGS=--quick     # one repeat, fewer requests: a smoke run (~1 minute)

`make bench` builds the production wheel (scripts/build-wheel), installs it in benchmarks/.venv-service
(benchmarks/setup-service) and runs this script with that interpreter: the service, `trial-cds screen`
and the in-process engine figures are then those of the build hospitals run. Run with another
interpreter (``PYTHONPATH=fixtures .venv/bin/python benchmarks/run.py``) it measures the build installed
there (the editable, pure-Python one in .venv); the report names the build.

What it measures (docs/performance.md explains each figure and the targets):

* the floor: orjson parse + serialise of the same request body, in process;
* the engine offline (record extraction + evaluation), per patient of 100 / 1,000 / 5,000 resources;
* a lab-dense patient of 1,000 resources (``synth.lab_dense``: every added resource a lab result the trial
  reads, spread over two years) over HTTP at concurrency 1, against the peer too;
* ``trial-cds screen`` throughput on 300-resource patients (one process, so per core);
* patient-view over HTTP with full prefetch, against ``trial-cds serve`` (uvicorn, one worker, its own
  process, TRIAL_CDS_AUTH=none) and against the peer (a do-nothing HealthChain CDS Hooks service in its own
  virtualenv and process), at concurrency 1 and 8: p50 / p95 / p99 and requests/s;
* the no-prefetch path against SEKMET (scripts/fhir-servers start-sekmet): wall time against the slowest
  query of the same request, and HTTP requests made against the minimum (one per key and page);
* the service's memory (RSS from /proc): peak, and growth over 10,000 requests.

Every HTTP figure is the median over ``--repeat`` runs, service and peer interleaved. Results also go to
``var/bench/results-<time>.json``. Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

# `synth` and `loadgen` sit beside this script (its folder is first on the path); `fhir_builders` comes from
# fixtures/ (PYTHONPATH=fixtures, as `make bench` sets it). Never the repository root: `cds` must be the build
# installed in the interpreter running this script (`make bench`: the production wheel in
# benchmarks/.venv-service), not the source tree.
import httpx
import orjson
import synth
from loadgen import LoadResult, load

import cds

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: The service's command, from the same installation as the interpreter running the benchmark.
TRIAL_CDS = str(Path(sys.executable).with_name("trial-cds"))
SIZES = (100, 1000, 5000)
LAB_DENSE_SIZE = 1000  # the lab-dense patient (synth.lab_dense), measured over HTTP at concurrency 1
SCREEN_SIZE = 300
SERVICE_PATH = "/cds-services/trial-eligibility"
PEER_PATH = "/cds/cds-services/trial-eligibility"
PAGE_SIZE = 200  # the service's default TRIAL_CDS_PAGE_SIZE
SOAK_REQUESTS = 10_000
NOW = datetime(synth.ANCHOR.year, synth.ANCHOR.month, synth.ANCHOR.day, 12, tzinfo=UTC)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")


def rss_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


# --------------------------------------------------------------------------------------------------
# Request bodies


def templates() -> dict[str, str]:
    from cds.api.services import trial_eligibility_services
    from cds.portfolio import load_trials
    from hooks import HOOKS

    return trial_eligibility_services(HOOKS, load_trials())["trial-eligibility"].templates


def hook_body(bundle: dict[str, Any], *, prefetch: bool = True, fhir_server: str | None = None) -> bytes:
    """A patient-view request: every prefetch key filled as a FHIR server would (searchset Bundles)."""
    from cds.demo import searchset

    types = synth.by_type(bundle)
    patient = types["Patient"][0]
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.UUID(int=len(bundle["entry"]))),
        "context": {"userId": "Practitioner/bench-clinician", "patientId": patient["id"]},
    }
    if prefetch:
        filled: dict[str, Any] = {}
        for key in templates():
            rtype = key[:1].upper() + key[1:]
            found = types.get(rtype, [])
            filled[key] = patient if rtype == "Patient" else (searchset(found) if found else None)
        body["prefetch"] = filled
    if fhir_server:
        body["fhirServer"] = fhir_server
    return orjson.dumps(body)


def floor_ms(body: bytes, repeats: int) -> float:
    """orjson parse + serialise of ``body``, the cyclic garbage collector off: the bare cost of touching
    the request once (with it on, the figure would depend on how much this process holds)."""
    times = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            orjson.dumps(orjson.loads(body))
            times.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    return median(times) * 1000


# --------------------------------------------------------------------------------------------------
# Servers


@contextmanager
def process(cmd: list[str], *, env: dict[str, str], cwd: Path, log_path: Path, health: str) -> Iterator[int]:
    with log_path.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited ({proc.returncode}); see {log_path}")
            try:
                if httpx.get(health, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{health} did not answer within 60 s; see {log_path}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def service_env(workdir: Path, allow: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAL_CDS_")}
    env.update(
        {
            "TRIAL_CDS_AUTH": "none",
            "TRIAL_CDS_DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "TRIAL_CDS_LOG_LEVEL": "INFO",
        }
    )
    if allow:
        env["TRIAL_CDS_FHIR_ALLOWLIST"] = allow
    return env


# --------------------------------------------------------------------------------------------------
# Phases


def offline_engine(bundles: dict[int, dict[str, Any]], repeats: int) -> dict[int, float]:
    from cds.portfolio import load_trials

    trials = load_trials()
    out: dict[int, float] = {}
    # The cyclic collector as the service and `trial-cds screen` set it (everything held so far frozen,
    # cds.GC_THRESHOLDS): otherwise the figure at 5,000 resources would include walks over this process's
    # own synthetic patients, which neither of them holds.
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*cds.GC_THRESHOLDS)
    try:
        for size, bundle in bundles.items():
            out[size] = _offline_engine_ms(bundle, trials, repeats)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    return out


def _offline_engine_ms(bundle: dict[str, Any], trials: dict[str, Any], repeats: int) -> float:
    from cds.engine import evaluate
    from cds.fhir.decoding import decode_resource
    from cds.record import PatientRecord

    text = orjson.dumps(bundle)
    pid = synth.by_type(bundle)["Patient"][0]["id"]
    times = []
    for i in range(repeats + 2):
        # As the service and `trial-cds screen` read it: decoded lean (a fresh decode each time, not
        # timed: a lean resource keeps the fields it has parsed).
        lean = decode_resource(text)
        assert lean is not None
        resources = [e.resource for e in lean.get("entry")]
        t0 = time.perf_counter()
        record = PatientRecord.from_resources(resources, patient_id=pid)
        for trial in trials.values():
            evaluate(trial, record, NOW)
        if i >= 2:  # two warm-up rounds
            times.append(time.perf_counter() - t0)
    return median(times) * 1000


def screen_throughput(workdir: Path, copies: int) -> dict[str, float]:
    folder = workdir / "screen"
    folder.mkdir(exist_ok=True)
    files: list[Path] = []
    for fixture in sorted(p.name for p in synth.FIXTURES.glob("*.json")):
        data = orjson.dumps(synth.grow(synth.load_fixture(fixture), SCREEN_SIZE))
        for c in range(copies):
            path = folder / f"{c}-{fixture}"
            path.write_bytes(data)
            files.append(path)
    cmd = [TRIAL_CDS, "screen", "--now", NOW.isoformat(), "--format", "json"]

    def timed(paths: list[Path]) -> float:
        t0 = time.perf_counter()
        subprocess.run([*cmd, *map(str, paths)], check=True, stdout=subprocess.DEVNULL, cwd=workdir)
        return time.perf_counter() - t0

    one = median([timed(files[:1]) for _ in range(3)])
    every = median([timed(files) for _ in range(3)])
    steady = (len(files) - 1) / (every - one)
    return {"patients": len(files), "startup_s": one, "wall_s": every, "patients_per_s": steady}


def http_round(url: str, body: bytes, size: int, concurrency: int, quick: bool) -> LoadResult:
    count = {100: 400, 1000: 200, 5000: 50}[size] * (concurrency if concurrency == 1 else 2)
    if quick:
        count = max(20, count // 4)
    load(url, body, concurrency=concurrency, requests=min(count // 10, 20), max_seconds=10)  # warm-up
    result = load(url, body, concurrency=concurrency, requests=count, max_seconds=25)
    bad = {s: n for s, n in result.statuses.items() if s != 200}
    if bad:
        raise RuntimeError(f"{url}: non-200 answers {bad}")
    return result


def parse_log(path: Path, offset: int) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        f.seek(offset)
        lines = f.read().splitlines()
    events = []
    for line in lines:
        try:
            events.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return events


def sekmet_url() -> tuple[str, bool]:
    status = subprocess.run([str(ROOT / "scripts" / "fhir-servers"), "status"], capture_output=True, text=True)
    already = status.stdout.startswith("sekmet ") or "\nsekmet " in status.stdout
    started = subprocess.run(
        [str(ROOT / "scripts" / "fhir-servers"), "start-sekmet"], capture_output=True, text=True, check=True
    )
    return started.stdout.strip().splitlines()[-1], not already


def no_prefetch(url: str, fhir: str, bundle: dict[str, Any], log_path: Path, requests: int) -> dict[str, float]:
    types = synth.by_type(bundle)
    expected = 0
    for key, template in templates().items():
        rtype = key[:1].upper() + key[1:]
        if "?" not in template:
            expected += 1
        else:
            expected += max(1, math.ceil(len(types.get(rtype, [])) / PAGE_SIZE))
    body = hook_body(bundle, prefetch=False, fhir_server=fhir)
    walls: list[float] = []
    slowest: list[float] = []
    made: list[int] = []
    with httpx.Client(timeout=60) as http:
        for i in range(requests + 2):
            offset = log_path.stat().st_size
            t0 = time.perf_counter()
            answer = http.post(url, content=body, headers={"Content-Type": "application/json"})
            wall = time.perf_counter() - t0
            if answer.status_code != 200:
                raise RuntimeError(f"no-prefetch request answered {answer.status_code}: {answer.text[:300]}")
            time.sleep(0.05)  # let the log line land
            events = parse_log(log_path, offset)
            queries = [e["duration_ms"] for e in events if e.get("event") == "fhir.query.end"]
            answered = [e for e in events if e.get("event") == "cds_service.answered"]
            if i < 2:  # warm-up
                continue
            walls.append(wall * 1000)
            slowest.append(max(queries))
            made.append(int(answered[-1]["http_requests"]))
    ratios = [w / s for w, s in zip(walls, slowest, strict=True)]
    return {
        "requests_measured": requests,
        "wall_ms": median(walls),
        "slowest_query_ms": median(slowest),
        "ratio": median(ratios),
        "http_requests": median([float(m) for m in made]),
        "http_requests_max": max(made),
        "expected_http_requests": expected,
    }


def soak(url: str, body: bytes, pid: int, total: int) -> dict[str, Any]:
    step = 1000
    samples: list[int] = []
    for _ in range(total // step):
        result = load(url, body, concurrency=8, requests=step, max_seconds=120)
        if result.count < step:
            raise RuntimeError("soak: a chunk did not complete within its time bound")
        samples.append(rss_kib(pid)["VmRSS"])
    return {
        "requests": total,
        "rss_kib_after_each_1000": samples,
        "growth_kib": samples[-1] - samples[0],
        "growth_pct": 100 * (samples[-1] - samples[0]) / samples[0],
    }


# --------------------------------------------------------------------------------------------------
# Report


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(r: dict[str, Any]) -> str:
    lines = [
        f"trial-cds benchmarks — {r['started']}  ({r['machine']})",
        f"command: {r['command']}   repeats: {r['repeats']}   service: trial-cds serve, uvicorn, 1 worker,"
        f" TRIAL_CDS_AUTH=none, build: {r.get('build', 'unknown')}",
        "",
        "request bodies (full prefetch) and the floor (orjson parse + serialise, in process):",
    ]
    for size in SIZES:
        lines.append(
            f"  {size:>5} resources: {r['body_bytes'][str(size)] / 1024:8.0f} KiB"
            f"   floor {r['floor_ms'][str(size)]:7.2f} ms"
        )
    lines += ["", "engine offline (record + evaluation, in process), per patient:"]
    for size in SIZES:
        e = r["engine_ms"][str(size)]
        lines.append(f"  {size:>5} resources: {e:7.2f} ms   = {e / r['floor_ms'][str(size)]:5.2f} × floor")
    s = r["screen"]
    lines += [
        "",
        f"trial-cds screen, {SCREEN_SIZE}-resource patients ({s['patients']} files, one process = one core):",
        f"  {s['patients_per_s']:7.1f} patients/s steady (start-up {s['startup_s']:.2f} s excluded; "
        f"{s['patients'] / s['wall_s']:.1f}/s with it)   target ≥ 300/s per core: "
        f"{verdict(s['patients_per_s'] >= 300)}",
        "",
        "patient-view over HTTP, full prefetch (medians of the repeats):",
        "  size  conc  server      p50 ms   p95 ms   p99 ms    req/s   p50/floor  p50/peer  p99/p50",
    ]
    for size in SIZES:
        floor = r["floor_ms"][str(size)]
        for conc in (1, 8):
            svc = r["http"][f"service-{size}-c{conc}"]
            peer = r["http"].get(f"peer-{size}-c{conc}")
            lines.append(
                f"  {size:>5}  {conc:>4}  trial-cds {svc['p50_ms']:8.2f} {svc['p95_ms']:8.2f} {svc['p99_ms']:8.2f}"
                f" {svc['rps']:8.1f}   {svc['p50_ms'] / floor:8.2f}  "
                + (f"{svc['p50_ms'] / peer['p50_ms']:8.2f}" if peer else "       -")
                + f"  {svc['p99_ms'] / svc['p50_ms']:7.2f}"
            )
            if peer:
                lines.append(
                    f"  {size:>5}  {conc:>4}  peer      {peer['p50_ms']:8.2f} {peer['p95_ms']:8.2f}"
                    f" {peer['p99_ms']:8.2f}"
                    f" {peer['rps']:8.1f}   {peer['p50_ms'] / floor:8.2f}"
                )
    dense, dense_peer = r["http"].get("service-labdense-c1"), r["http"].get("peer-labdense-c1")
    if dense:
        versus = ""
        if dense_peer:
            ratio = dense["p50_ms"] / dense_peer["p50_ms"]
            versus = f", peer {dense_peer['p50_ms']:.2f} ms: {ratio:.2f} × the peer"
        lines.append(f"  {LAB_DENSE_SIZE:>5} lab-dense, concurrency 1: trial-cds p50 {dense['p50_ms']:.2f} ms{versus}")
    t = r["targets"]
    lines += ["", "targets:"]
    for name, (value, limit, ok) in t.items():
        lines.append(f"  {name:58s} {value:8.2f}  (limit {limit})  {verdict(ok)}")
    n = r.get("no_prefetch")
    if n:
        lines += [
            "",
            f"no-prefetch path (1,000 resources on SEKMET, {n['requests_measured']} requests, concurrency 1):",
            f"  wall {n['wall_ms']:.1f} ms, slowest query of the same request {n['slowest_query_ms']:.1f} ms:"
            f" ratio {n['ratio']:.2f} (target ≤ 1.3: {verdict(n['ratio'] <= 1.3)})",
            f"  HTTP requests per hook call: {n['http_requests']:.0f} (max {n['http_requests_max']}); one per key"
            f" and page = {n['expected_http_requests']}: "
            f"{verdict(n['http_requests_max'] == n['expected_http_requests'])}",
        ]
    m = r["memory"]
    lines += [
        "",
        f"service memory: RSS at start {m['start_kib'] / 1024:.1f} MiB, peak (VmHWM) {m['peak_kib'] / 1024:.1f} MiB",
    ]
    if "soak" in m:
        sk = m["soak"]
        lines.append(
            f"  {sk['requests']} requests (100 resources, concurrency 8): RSS after 1,000 "
            f"{sk['rss_kib_after_each_1000'][0] / 1024:.1f} MiB → after {sk['requests']:,} "
            f"{sk['rss_kib_after_each_1000'][-1] / 1024:.1f} MiB ({sk['growth_pct']:+.1f} %; flat = within ±5 %:"
            f" {verdict(abs(sk['growth_pct']) <= 5)})"
        )
    return "\n".join(lines)


def targets(r: dict[str, Any]) -> dict[str, tuple[float, str, bool]]:
    h = r["http"]
    floor1, floor5 = r["floor_ms"]["1000"], r["floor_ms"]["5000"]
    s1, s5 = h["service-1000-c1"], h["service-5000-c1"]
    out: dict[str, tuple[float, str, bool]] = {}
    if "peer-1000-c1" in h:
        ratio = s1["p50_ms"] / h["peer-1000-c1"]["p50_ms"]
        out["1,000 resources: p50 / peer p50"] = (ratio, "1", ratio <= 1)
    if "peer-100-c1" in h:
        ratio = h["service-100-c1"]["p50_ms"] / h["peer-100-c1"]["p50_ms"]
        out["100 resources: p50 / peer p50"] = (ratio, "1.5", ratio <= 1.5)
    if "peer-labdense-c1" in h and "service-labdense-c1" in h:
        ratio = h["service-labdense-c1"]["p50_ms"] / h["peer-labdense-c1"]["p50_ms"]
        out["1,000 lab-dense resources: p50 / peer p50"] = (ratio, "1", ratio <= 1)
    out["1,000 resources: p50 / floor"] = (s1["p50_ms"] / floor1, "4", s1["p50_ms"] / floor1 <= 4)
    out["1,000 resources: p99 / p50"] = (s1["p99_ms"] / s1["p50_ms"], "3", s1["p99_ms"] / s1["p50_ms"] <= 3)
    out["5,000 resources: p50 / floor"] = (s5["p50_ms"] / floor5, "4", s5["p50_ms"] / floor5 <= 4)
    growth = s5["p50_ms"] / s1["p50_ms"]
    out["5,000 vs 1,000 resources: p50 ratio (linear growth)"] = (growth, "6", growth <= 6)
    eng = r["engine_ms"]["5000"] / r["engine_ms"]["1000"]
    out["5,000 vs 1,000 resources: engine offline ratio"] = (eng, "6", eng <= 6)
    out["screen: patients/s per core (300 resources)"] = (
        r["screen"]["patients_per_s"],
        "≥ 300",
        r["screen"]["patients_per_s"] >= 300,
    )
    if r.get("no_prefetch"):
        n = r["no_prefetch"]
        out["no prefetch: wall / slowest query"] = (n["ratio"], "1.3", n["ratio"] <= 1.3)
    if "soak" in r["memory"]:
        g = r["memory"]["soak"]["growth_pct"]
        out["memory growth over 10,000 requests, %"] = (g, "±5", abs(g) <= 5)
    return out


# --------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="HTTP rounds (medians are reported)")
    parser.add_argument("--quick", action="store_true", help="one repeat, fewer requests, a short soak")
    parser.add_argument("--skip-peer", action="store_true", help="no HealthChain reference")
    parser.add_argument("--skip-fhir", action="store_true", help="no no-prefetch phase (needs SEKMET)")
    parser.add_argument("--skip-soak", action="store_true", help="no 10,000-request memory soak")
    args = parser.parse_args()
    repeats = 1 if args.quick else max(1, args.repeat)
    started = datetime.now(UTC)
    out_dir = ROOT / "var" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="trial-cds-bench-"))
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "benchmarks/run.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}",
        "repeats": repeats,
        "build": cds.build(),
    }
    shift_days = (date.today() - synth.ANCHOR).days  # the service evaluates on the real date
    try:
        log("building synthetic patients")
        offline = {size: synth.patient(size) for size in SIZES}
        live = {size: synth.shift(offline[size], shift_days) for size in SIZES}
        bodies = {size: hook_body(live[size]) for size in SIZES}
        dense_body = hook_body(synth.lab_dense_patient(LAB_DENSE_SIZE, shift_days=shift_days))
        results["body_bytes"] = {str(s): len(b) for s, b in bodies.items()}
        results["floor_ms"] = {str(s): floor_ms(b, 30 if s < 5000 else 10) for s, b in bodies.items()}

        log("engine offline")
        results["engine_ms"] = {str(k): v for k, v in offline_engine(offline, 5 if args.quick else 15).items()}
        log("trial-cds screen")
        results["screen"] = screen_throughput(workdir, 1 if args.quick else 3)

        fhir: str | None = None
        stop_sekmet = False
        if not args.skip_fhir:
            log("starting SEKMET")
            fhir, stop_sekmet = sekmet_url()
        try:
            port = free_port()
            svc_log = out_dir / "service.log"
            svc_log.write_bytes(b"")
            svc_cmd = [TRIAL_CDS, "serve", "--host", "127.0.0.1", "--port", str(port)]
            svc_url = f"http://127.0.0.1:{port}{SERVICE_PATH}"
            peer_ctx: Any = None
            if not args.skip_peer:
                subprocess.run([str(HERE / "setup-healthchain")], check=True)
                peer_port = free_port()
                peer_cmd = [
                    str(HERE / ".venv-healthchain" / "bin" / "python"),
                    "-m",
                    "uvicorn",
                    "peer_healthchain:app",
                    "--app-dir",
                    str(HERE),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(peer_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ]
                peer_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
                peer_ctx = process(
                    peer_cmd,
                    env=peer_env,
                    cwd=workdir,
                    log_path=out_dir / "peer.log",
                    health=f"http://127.0.0.1:{peer_port}/health",
                )
            log(f"starting trial-cds serve on port {port}")
            with process(
                svc_cmd,
                env=service_env(workdir, fhir),
                cwd=workdir,
                log_path=svc_log,
                health=f"http://127.0.0.1:{port}/health",
            ) as pid:
                memory: dict[str, Any] = {"start_kib": rss_kib(pid)["VmRSS"]}
                peer_pid = peer_ctx.__enter__() if peer_ctx else None
                try:
                    rounds: dict[str, list[dict[str, float]]] = {}
                    for rep in range(repeats):
                        for size in SIZES:
                            for conc in (1, 8):
                                log(f"HTTP round {rep + 1}/{repeats}: {size} resources, concurrency {conc}")
                                res = http_round(svc_url, bodies[size], size, conc, args.quick)
                                rounds.setdefault(f"service-{size}-c{conc}", []).append(res.summary())
                                if peer_pid:
                                    peer_url = f"http://127.0.0.1:{peer_port}{PEER_PATH}"
                                    res = http_round(peer_url, bodies[size], size, conc, args.quick)
                                    rounds.setdefault(f"peer-{size}-c{conc}", []).append(res.summary())
                        log(f"HTTP round {rep + 1}/{repeats}: {LAB_DENSE_SIZE} lab-dense resources, concurrency 1")
                        res = http_round(svc_url, dense_body, LAB_DENSE_SIZE, 1, args.quick)
                        rounds.setdefault("service-labdense-c1", []).append(res.summary())
                        if peer_pid:
                            peer_url = f"http://127.0.0.1:{peer_port}{PEER_PATH}"
                            res = http_round(peer_url, dense_body, LAB_DENSE_SIZE, 1, args.quick)
                            rounds.setdefault("peer-labdense-c1", []).append(res.summary())
                    results["http_rounds"] = rounds
                    results["http"] = {
                        name: {k: median([r[k] for r in rs]) for k in rs[0]} for name, rs in rounds.items()
                    }
                finally:
                    if peer_ctx:
                        peer_ctx.__exit__(None, None, None)
                if fhir:
                    log("no-prefetch path: loading the 1,000-resource patient into SEKMET")
                    from cds.fhir.load import load_files

                    path = workdir / "fhir-patient.json"
                    path.write_bytes(orjson.dumps(live[1000]))
                    load_files(fhir, [path], id_prefix="bench-")
                    # The same patient under the ids load_files gave it (every id prefixed).
                    fetched_bundle = orjson.loads(orjson.dumps(live[1000]).replace(b'"npc-01', b'"bench-npc-01'))
                    log("no-prefetch path: requests")
                    results["no_prefetch"] = no_prefetch(
                        svc_url, fhir, fetched_bundle, svc_log, 5 if args.quick else 15
                    )
                if not args.skip_soak:
                    total = 2000 if args.quick else SOAK_REQUESTS
                    log(f"memory soak: {total} requests")
                    memory["soak"] = soak(svc_url, bodies[100], pid, total)
                memory["peak_kib"] = rss_kib(pid)["VmHWM"]
                results["memory"] = memory
        finally:
            if stop_sekmet:
                subprocess.run([str(ROOT / "scripts" / "fhir-servers"), "stop", "sekmet"], check=False)
        results["targets"] = targets(results)
        results["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
        text = report(results)
        print(text)
        print(f"\n(total {results['seconds']:.0f} s)")
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        (out_dir / f"results-{stamp}.json").write_text(json.dumps(results, indent=2))
        (out_dir / f"report-{stamp}.txt").write_text(text + "\n")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
