"""`trial-cds prescreen`: every patient of an export or a folder of Bundles against every open trial,
ranked per trial, for a trial coordinator (registered on cds.cli's app)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

import typer

from cds.cli_support import TrialsDirOption
from cds.cli_support import checked_portfolio as _load_portfolio
from cds.cli_support import fail as _fail
from cds.cli_support import parse_now as _parse_now
from cds.prescreen.backend_auth import BulkAuthError, auth_from_options
from cds.prescreen.bulk_export import BulkExportError
from cds.prescreen.from_server import MirrorError, export_population
from cds.prescreen.local import Screening
from cds.prescreen.outputs import PHI_NOTICE, TrialSummary
from cds.prescreen.progress import say
from cds.prescreen.run import Inputs, prescreen
from cds.prescreen.sources import SourceError
from cds.trials import Trial

ENGINES = ("local", "spark")


def prescreen_command(
    # Text, not Path: with --engine spark a source may be a URL (hdfs://namenode/…), which Path would fold.
    ndjson: Annotated[
        str | None,
        typer.Option(
            "--ndjson",
            help="Folder of NDJSON files as FHIR Bulk Data $export writes them (*.ndjson, *.ndjson.gz); "
            "with --engine spark also a URL the cluster reads (hdfs://…, s3a://…).",
        ),
    ] = None,
    bundles: Annotated[
        str | None, typer.Option("--bundles", help="Folder of FHIR Bundles (*.json), each of one or more patients.")
    ] = None,
    fhir: Annotated[
        str | None,
        typer.Option(
            "--fhir",
            help="FHIR R4 server base URL: Bulk Data $export where it has one, paged search otherwise "
            "(the NDJSON lands in WORK-DIR/export).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="FHIR_BEARER_TOKEN", help="Bearer token for --fhir (or FHIR_BEARER_TOKEN)."),
    ] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="SMART Backend Services client id for --fhir.")
    ] = None,
    private_key: Annotated[
        Path | None, typer.Option("--private-key", help="The backend client's private key (PEM or JWK), for --fhir.")
    ] = None,
    kid: Annotated[str | None, typer.Option("--kid", help="Key id of --private-key, as in the client's JWKS.")] = None,
    scope: Annotated[str, typer.Option("--scope", help="Scopes asked with a backend client.")] = "system/*.rs",
    since: Annotated[
        str | None,
        typer.Option("--since", help="With --fhir: only resources changed since this instant (_since), ISO-8601."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder of the ranked lists and reports (made owner-only: they hold PHI).")
    ] = Path("prescreen"),
    trial: Annotated[
        list[str] | None, typer.Option("--trial", help="A trial id; repeat for several (default: every open trial).")
    ] = None,
    now: Annotated[str | None, typer.Option("--now", help="Evaluation date-time, ISO-8601 (default: now).")] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (a process pool on this machine) or spark (Apache Spark).")
    ] = "local",
    master: Annotated[
        str | None,
        typer.Option(
            "--master",
            help="Spark master URL, with --engine spark: spark://host:7077, yarn, k8s://…, local[N] "
            "(default: spark-submit's, else local[*]).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Processes of the local engine (default: this machine's cores)."),
    ] = None,
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="Folder of the patient partitions and partial results (default: OUT/.work)."),
    ] = None,
    trials_dir: TrialsDirOption = None,
) -> None:
    """Pre-screen a population: every patient against every open trial, ranked per trial (likely eligible
    first, then fewest criteria to confirm, then the most recent deciding data) as CSV, JSON lines (the
    `screen --format json` lines) and an HTML report. Resources are grouped by patient on disk; a re-run
    with the same inputs, trials and --now skips the partitions already screened."""
    if sum(source is not None for source in (ndjson, bundles, fhir)) != 1:
        _fail("give one source: --fhir URL, --ndjson DIR or --bundles DIR")
    if fhir is None and (since or client_id or private_key):
        _fail("--since, --client-id and --private-key are for --fhir")
    if engine not in ENGINES:
        _fail(f"--engine must be one of {', '.join(ENGINES)}")
    if master is not None and engine != "spark":
        _fail("--master is for --engine spark")
    when = _parse_now(now)

    def load_trials() -> tuple[Screening, dict[str, Trial]]:
        portfolio = _load_portfolio(trials_dir)
        chosen = _chosen_trials(portfolio.trials, set(portfolio.open_trials), trial)
        return Screening(trials_dir, tuple(chosen), when), {tid: portfolio.trials[tid] for tid in chosen}

    if fhir is not None or engine == "spark":  # the export asks for the types the trials read
        screening, trials = load_trials()
    if fhir is not None:
        export_dir = (work_dir or out / ".work") / "export"
        ndjson = str(_export(fhir, export_dir, token, client_id, private_key, kid, scope, since, trials))
    folder = ndjson if ndjson is not None else bundles
    assert folder is not None
    if engine == "spark":
        summaries = _run_spark(folder, bundles is not None, out, screening, trials, master)
    else:
        # The trials (seconds to load) are loaded while the workers spill the input, unless already loaded.
        given = (lambda: (screening, trials)) if fhir is not None else load_trials
        try:
            outcome = prescreen(
                Inputs(Path(folder), bundles=bundles is not None),
                out,
                workers=workers or os.cpu_count() or 1,
                work_dir=work_dir,
                prepare=given,
            )
        except SourceError as exc:
            _fail(str(exc))
            raise
        summaries = outcome.summaries
    for s in summaries:
        counts = ", ".join(f"{v.replace('_', ' ')} {n}" for v, n in s.verdicts.items())
        say(f"{s.trial_id}: {s.patients} patients — {counts}")
    say(f"written to {out}/ (index.html): {PHI_NOTICE}")


def _export(
    base_url: str,
    into: Path,
    token: str | None,
    client_id: str | None,
    private_key: Path | None,
    kid: str | None,
    scope: str,
    since: str | None,
    trials: dict[str, Trial],
) -> Path:
    """The server's population as NDJSON in ``into``, or a clear error naming the server's answer."""
    try:
        auth = auth_from_options(token, client_id, private_key, kid=kid, scope=scope)
        export_population(base_url, into, auth, _parse_now(since) if since else None, trials)
    except (BulkExportError, BulkAuthError, MirrorError) as exc:
        _fail(f"{base_url}: {exc}")
        raise
    return into


def _chosen_trials(known: Iterable[str], open_ids: set[str], asked: list[str] | None) -> list[str]:
    if not asked:
        if not open_ids:
            _fail("every trial of the portfolio is closed: nothing to screen")
        return sorted(open_ids)
    for tid in asked:
        if tid not in known:
            _fail(f"unknown trial {tid!r}; known: {', '.join(sorted(known))}")
        if tid not in open_ids:
            _fail(f"trial {tid!r} is closed: it is listed, not screened (status: closed in its file)")
    return sorted(set(asked))


def _run_spark(
    folder: str, bundles: bool, out: Path, screening: Screening, trials: dict[str, Trial], master: str | None
) -> list[TrialSummary]:
    """The Spark engine (cds/prescreen/engine_spark.py): Spark reads ``folder`` itself (a path every
    executor reaches, or an hdfs:// or s3a:// URL), or a clear error when it cannot run here."""
    if find_spec("pyspark") is None:
        _fail("--engine spark needs PySpark: pip install trial-cds[spark]")
    from pyspark.sql import SparkSession

    from cds.prescreen import engine_spark

    owned = SparkSession.getActiveSession() is None  # a session of its own is stopped at the end
    spark = engine_spark.spark_session(master)
    try:
        return engine_spark.prescreen_spark(
            spark,
            [folder],
            out,
            kind="bundles" if bundles else "ndjson",
            trials=trials,
            trials_dir=screening.trials_dir,
            now=screening.now,
        )
    except engine_spark.SparkInputError as exc:
        _fail(str(exc))
        raise
    finally:
        if owned:
            spark.stop()
