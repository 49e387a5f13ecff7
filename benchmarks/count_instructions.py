"""Instructions per patient-view request, counted with callgrind: the service's ASGI app in process
(starlette's TestClient: body read, validation, the hook, the engine, the cards, the store, encoding;
not uvicorn's HTTP parsing), on the benchmark's bodies (``synth``). Wall-clock on a shared machine swings
from run to run; instruction counts do not, so a change is judged by these first (docs/performance.md).

    PYTHONPATH=fixtures:benchmarks .venv/bin/python benchmarks/count_instructions.py \
        --size 100 --size 1000 --lab-dense --trials-dir DIR [--trials-dir DIR2] [--build SITE]

Each (body, trials folder) runs in its own ``valgrind --tool=callgrind`` process: three warm-up requests,
then collection switched on (``callgrind_control -i on``) for ``--requests`` requests; the figure is the
counted instructions divided by the requests. ``PYTHONHASHSEED=0``. ``--build`` names the build to count,
a production wheel unpacked (``python -m zipfile -e WHEEL DIR``): its modules come first on the requests'
``PYTHONPATH``, as ``.ci/run`` puts them; the request bodies are made with this tree's modules.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(body_path: Path, requests: int) -> None:
    """In the valgrind process: the app, warm-up, then ``requests`` counted requests."""
    from fastapi.testclient import TestClient

    from cds.api.app import create_app

    body = body_path.read_bytes()
    app = create_app()
    url, headers = "/cds-services/trial-eligibility", {"content-type": "application/json"}
    with TestClient(app) as client:
        for _ in range(3):
            r = client.post(url, content=body, headers=headers)
            assert r.status_code == 200, r.text[:500]
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
        for _ in range(requests):
            client.post(url, content=body, headers=headers)
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)


def count(body: bytes, trials_dir: Path, requests: int, out_dir: Path, label: str, build: Path | None) -> float:
    body_path = out_dir / f"{label}.json"
    body_path.write_bytes(body)
    out_file = out_dir / f"callgrind.{label}.out"
    env = dict(os.environ)
    env.update(
        {
            "PYTHONHASHSEED": "0",
            "TRIAL_CDS_AUTH": "none",
            "TRIAL_CDS_TRIALS_DIR": str(trials_dir),
            "TRIAL_CDS_DATABASE_URL": f"sqlite:///{out_dir / (label + '.sqlite3')}",
            "TRIAL_CDS_LOG_LEVEL": "INFO",
        }
    )
    if build is not None:  # the build counted: its modules first, as .ci/run puts the wheel's
        env["PYTHONPATH"] = os.pathsep.join([str(build), env.get("PYTHONPATH", "")])
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out_file}",
            sys.executable,
            __file__,
            "--child",
            str(body_path),
            "--requests",
            str(requests),
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    text = out_file.read_text(errors="replace")
    found = re.search(r"^totals: (\d+)", text, re.M)
    assert found is not None, "no totals in the callgrind output"
    return int(found.group(1)) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, action="append", default=[], help="resources (repeatable)")
    parser.add_argument("--lab-dense", action="store_true", help="also the 1,000-resource lab-dense patient")
    parser.add_argument("--trials-dir", type=Path, action="append", default=[], help="a trials folder (repeatable)")
    parser.add_argument("--requests", type=int, default=5, help="counted requests per run")
    parser.add_argument("--keep", type=Path, help="keep the callgrind outputs in this folder")
    parser.add_argument(
        "--build", type=Path, help="an unpacked wheel to count (first on the PYTHONPATH of the requests)"
    )
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.requests)
        return 0

    import run
    import synth

    bodies = {str(size): run.hook_body(synth.patient(size)) for size in args.size}
    if args.lab_dense:
        bodies["1000-lab-dense"] = run.hook_body(synth.lab_dense_patient(1000))
    out_dir = args.keep or Path(tempfile.mkdtemp(prefix="count-instructions-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    for trials_dir in args.trials_dir:
        for name, body in bodies.items():
            label = f"{trials_dir.name}-{name}"
            per_request = count(body, trials_dir.resolve(), args.requests, out_dir, label, args.build)
            print(f"{trials_dir.name:>20} {name:>16}: {per_request / 1e6:8.2f} M instructions per request", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
