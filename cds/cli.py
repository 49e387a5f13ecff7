"""The `trial-cds` command line: serve the CDS service, screen bundles offline, list and check trials."""

from __future__ import annotations

import gc
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

import cds
from cds.assessment import Assessment, Status
from cds.cli_support import TrialsDirOption
from cds.cli_support import checked_portfolio as _load_portfolio
from cds.cli_support import fail as _fail
from cds.cli_support import parse_now as _parse_now
from cds.engine import evaluate
from cds.fhir.decoding import decode_resource
from cds.portfolio import load_trial_file
from cds.prescreen.cli import prescreen_command
from cds.record import PatientRecord, RecordError
from cds.trials import TrialError
from cds.valuesets import ValueSetError, ValueSetLibrary

app = typer.Typer(
    help="Clinical-trial eligibility as a CDS Hooks 2.0 service.", no_args_is_help=True, add_completion=False
)
trials_app = typer.Typer(
    help="List the trials and their criteria; check, explain or describe (JSON Schema) a trial file.",
    invoke_without_command=True,
)
app.add_typer(trials_app, name="trials")
app.command("prescreen")(prescreen_command)

_MARK = {Status.MET: "[x]", Status.NOT_MET: "[ ]", Status.UNKNOWN: "[?]"}


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (1-65535).", min=1, max=65535)] = 8080,
    demo: Annotated[
        bool, typer.Option("--demo", help="Demo mode: bundled demo patients, demo page, NO authentication.")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes, all on the one database of TRIAL_CDS_DATABASE_URL (a file or a server).",
        ),
    ] = 1,
    trials_dir: TrialsDirOption = None,
) -> None:
    """Run the CDS Hooks service. Without --demo, CDS clients must authenticate (TRIAL_CDS_* settings).
    SIGHUP reloads the trial folder; a broken folder is refused and the running portfolio kept."""
    from pydantic import ValidationError

    from cds.api.server import run
    from cds.settings import Settings, SettingsError

    _load_portfolio(trials_dir)  # a broken folder: its validation report, before anything listens
    try:
        settings = Settings()  # a bad setting stops here with a clear message, before anything is started
    except (SettingsError, ValidationError) as exc:
        _fail(f"invalid configuration: {exc}")
        raise
    if workers > 1 and _in_memory(settings.database_url):
        # Each process would have a database of its own: a token refused by one worker as a replay would
        # be accepted by the next, and feedback would be scattered.
        _fail(
            f"--workers {workers} needs one database for every worker: set TRIAL_CDS_DATABASE_URL to a file or server"
        )
    if _port_in_use(host, port):
        _fail(f"port {port} is in use on {host}; choose another with --port (make demo PORT=… for the demo)")
    try:
        # A configuration that cannot work stops here (no clients, CORS *).
        run(host, port, demo=demo, workers=workers, trials_dir=trials_dir)
    except SettingsError as exc:
        _fail(f"invalid configuration: {exc}")


def _port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be listened on now (checked before start-up, so that a busy port is
    one clear line rather than a server that starts and then logs an error)."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror:
        return False  # the server says what is wrong with the host
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError:
            return True
    return False


def _in_memory(database_url: str) -> bool:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in {"", ":memory:"} or "mode=memory" in database or database.startswith("file::memory:")
    )


@app.command()
def screen(
    bundles: Annotated[
        list[Path], typer.Argument(help="FHIR R4 Bundle files (JSON); each Patient of a Bundle is screened.")
    ],
    trial: Annotated[str | None, typer.Option("--trial", help="Trial id (default: the only trial).")] = None,
    now: Annotated[str | None, typer.Option("--now", help="Evaluation date-time, ISO-8601 (default: now).")] = None,
    output_format: Annotated[str, typer.Option("--format", help="text or json (one JSON object per line).")] = "text",
    trials_dir: TrialsDirOption = None,
) -> None:
    """Evaluate patient Bundles offline: the same engine as the service, no HTTP. Each Patient of a Bundle
    is screened on its own resources (one JSON line, or one block of text, each)."""
    if output_format not in ("text", "json"):
        _fail("--format must be text or json")
    portfolio = _load_portfolio(trials_dir)
    trials = portfolio.open_trials
    if trial is None:
        if not trials:
            _fail(f"every trial of {portfolio.folder} is closed: nothing to screen")
        if len(trials) != 1:
            _fail(f"{len(trials)} open trials are loaded; choose one with --trial ({', '.join(sorted(trials))})")
        chosen = next(iter(trials.values()))
    elif trial in portfolio.trials and trial not in trials:
        _fail(f"trial {trial!r} is closed: it is listed, not screened (status: closed in its file)")
        raise AssertionError
    elif trial not in trials:
        _fail(f"unknown trial {trial!r}; known: {', '.join(sorted(portfolio.trials))}")
        raise AssertionError
    else:
        chosen = trials[trial]
    library = portfolio.library
    when = _parse_now(now)
    # The trials and value sets outlive every bundle: out of the cyclic collector's sight (it would walk
    # them again at each collection that reading a bundle triggers).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*cds.GC_THRESHOLDS)  # each bundle: thousands of containers, freed by reference counting
    failed = False
    for path in bundles:
        try:
            raw = path.read_bytes()
            # Lean (cds.fhir.decoding): only the fields the rules read; orjson where lean decoding cannot say.
            data: Any = decode_resource(raw)
            if data is None:
                data = orjson.loads(raw)
        except (OSError, orjson.JSONDecodeError) as exc:
            typer.echo(f"error: {path}: cannot read a JSON Bundle: {exc}", err=True)
            failed = True
            continue
        if not isinstance(data, Mapping) or data.get("resourceType") != "Bundle":
            typer.echo(f"error: {path}: not a FHIR Bundle", err=True)
            failed = True
            continue
        try:
            records = PatientRecord.each_from_bundle(data)
        except RecordError as exc:
            typer.echo(f"error: {path}: {exc}", err=True)
            failed = True
            continue
        for record in records:
            assessment = evaluate(chosen, record, when, library)
            for note in assessment.notes:  # said where a person sees it, whatever the output format
                typer.echo(f"warning: {path}: {assessment.patient}: {note}", err=True)
            if output_format == "json":
                sys.stdout.write(orjson.dumps(assessment.screen_json()).decode() + "\n")
            else:
                typer.echo(render_text(assessment, path))
    if failed:
        raise typer.Exit(1)


def render_text(a: Assessment, path: Path | None = None) -> str:
    """The assessment as a person reads it: the card's counts (an absent exclusion is satisfied) and its
    dates ("7 Dec 2026")."""
    # The card's words; the cards module is imported only where text is printed.
    from cds.cards import clinical_dates, clinical_day, counts_line

    verdict = a.verdict.value.replace("_", " ")
    lines = [f"{a.patient}{f' ({path.name})' if path else ''} — {a.trial_id}: {verdict.upper()}"]
    if a.verdict_reason:
        lines.append(f"  {clinical_dates(a.verdict_reason)}: not screened against the criteria")
    lines.append(f"  {counts_line(a)} (evaluated {clinical_day(a.evaluated_at.date())})")
    lines.extend(f"  Note: {note}" for note in a.notes)
    for kind in ("inclusion", "exclusion"):
        lines.append(
            f"  {kind.capitalize()} ({'[x] = satisfied' if kind == 'inclusion' else '[x] = applies, excludes'})"
        )
        for c in a.criteria:
            if c.kind != kind:
                continue
            flag = " (investigator)" if c.judgement else ""
            lines.append(f"    {_MARK[c.status]} {c.id}{flag}: {clinical_dates(c.reason)}")
    return "\n".join(lines)


@trials_app.callback()
def trials_list(
    ctx: typer.Context,
    trials_dir: TrialsDirOption = None,
) -> None:
    """List the portfolio: each trial's id, status, criteria count, source folder and title, then its criteria."""
    if ctx.invoked_subcommand is not None:
        return
    portfolio = _load_portfolio(trials_dir)
    typer.echo(f"{len(portfolio.trials)} trials from {portfolio.source} folder {portfolio.folder}")
    for trial in portfolio.trials.values():
        typer.echo(
            f"{trial.id} — {trial.short_name}: {trial.title} "
            f"[{trial.status}, {len(trial.criteria)} criteria, {portfolio.source}]"
        )
        for c in trial.criteria:
            flag = " [J]" if c.judgement else ""
            typer.echo(f"  {c.kind[:3]} {c.id}{flag}: {c.text}")


@trials_app.command("validate")
def trials_validate(files: Annotated[list[Path], typer.Argument(help="Trial YAML files to check.")]) -> None:
    """Check trial files: schema, rule kinds, value sets, tests, units and the id against the file name.
    Every problem is reported at once, located by criterion id. Exit 1 on any problem."""
    from cds.authoring import validation_report
    from cds.portfolio import layered_library

    bundled = _library()
    bad = False
    for path in files:
        try:  # a trial of a local folder is checked on the value sets beside it, as the folder loads
            library, _ = layered_library(path.parent, bundled)
        except ValueSetError as exc:
            _fail(str(exc))
        problems = validation_report(path, library)
        if problems:
            bad = True
            typer.echo(f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''}", err=True)
            for problem in problems:
                typer.echo(f"  {problem}", err=True)
            continue
        trial = load_trial_file(path, library)
        typer.echo(f"{path}: ok — trial {trial.id}, {len(trial.criteria)} criteria")
    if bad:
        raise typer.Exit(1)


@trials_app.command("schema")
def trials_schema() -> None:
    """Print the JSON Schema of a trial file (for editors: YAML language servers, IDEs)."""
    from cds.authoring import trial_schema

    typer.echo(orjson.dumps(trial_schema(), option=orjson.OPT_INDENT_2).decode())


@trials_app.command("explain")
def trials_explain(file: Annotated[Path, typer.Argument(help="A trial YAML file.")]) -> None:
    """Print the trial as a person reads it: each criterion with its rule in words, to proofread."""
    from cds.authoring import explain

    library = _library()
    try:
        trial = load_trial_file(file, library)
    except TrialError as exc:
        _fail(f"{exc}\n(trial-cds trials validate {file} locates every problem)", 1)
        raise
    typer.echo(explain(trial, library))


def _library() -> ValueSetLibrary:
    from cds.valuesets import default_library

    try:
        return default_library()
    except ValueSetError as exc:
        _fail(str(exc))
        raise


@app.command()
def feedback(
    trial: Annotated[str | None, typer.Option("--trial", help="Only this trial.")] = None,
    daily: Annotated[bool, typer.Option("--daily", help="One line per day instead of totals.")] = False,
    database_url: Annotated[str | None, typer.Option(help="Database URL (default: TRIAL_CDS_DATABASE_URL).")] = None,
) -> None:
    """Card feedback for trial coordinators, without PHI: shown, accepted, overridden and why."""
    from cds.settings import Settings
    from cds.store import feedback_daily, feedback_summary

    url = database_url or Settings().database_url
    if daily:
        from cds.cards import clinical_day  # the cards module only where text is printed

        rows = feedback_daily(url, trial)
        if not rows:
            typer.echo("no cards or feedback recorded yet")
        for day_row in rows:
            reasons = ", ".join(f"{k} × {v}" for k, v in sorted(day_row.override_reasons.items()))
            typer.echo(
                f"{clinical_day(day_row.day)}  {day_row.trial_id or '(unknown trial)'}: shown {day_row.cards_shown}, "
                f"accepted {day_row.accepted}, overridden {day_row.overridden}" + (f" ({reasons})" if reasons else "")
            )
        return
    summaries = feedback_summary(url, trial)
    if not summaries:
        typer.echo("no cards or feedback recorded yet")
        return
    for item in summaries:
        typer.echo(
            f"{item.trial_id or '(cards not issued by this database)'}: shown {item.cards_shown}, "
            f"accepted {item.accepted}, overridden {item.overridden}"
        )
        for reason, count in sorted(item.override_reasons.items(), key=lambda kv: -kv[1]):
            typer.echo(f"    overridden: {reason} × {count}")


@app.command()
def load(
    bundles: Annotated[list[Path], typer.Argument(help="FHIR Bundle files (JSON) of synthetic patients.")],
    fhir: Annotated[str, typer.Option("--fhir", help="Base URL of the FHIR R4 server.")],
    token: Annotated[
        str | None, typer.Option("--token", envvar="FHIR_BEARER_TOKEN", help="Bearer token, if the server needs one.")
    ] = None,
    id_prefix: Annotated[
        str,
        typer.Option("--id-prefix", help="Put before every resource id, references following (shared servers)."),
    ] = "",
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Overwrite resources the server holds for another patient under the same id."),
    ] = False,
) -> None:
    """Upload synthetic patients: one transaction per file, PUT by id, so a re-run changes nothing. A file
    that would overwrite another patient's resource (the same id) is refused unless --replace."""
    from cds.fhir.load import FhirLoadError, load_files

    try:
        results = load_files(fhir, bundles, token=token, id_prefix=id_prefix, replace=replace)
    except FhirLoadError as exc:
        _fail(str(exc), 1)
        raise
    for r in results:
        patients = ", ".join(f"Patient/{pid}" for pid in r.patient_ids) or "no Patient resource"
        typer.echo(
            f"{r.source}: {r.resources} resources ({r.created} created, {r.updated} unchanged or updated), {patients}"
        )


@app.command()
def check(
    fhir: Annotated[str, typer.Option("--fhir", help="Base URL of the FHIR R4 server.")],
    token: Annotated[
        str | None, typer.Option("--token", envvar="FHIR_BEARER_TOKEN", help="Bearer token, if /metadata needs one.")
    ] = None,
    trials_dir: TrialsDirOption = None,
) -> None:
    """Read the server's /metadata: does it support every search this service makes? Exit 1 if not."""
    from cds.fhir.check import CapabilityError, all_supported, check_server, render_table, service_templates

    templates = service_templates(_load_portfolio(trials_dir).open_trials)  # the searches of the open trials
    try:
        rows = check_server(fhir, token=token, templates=templates)
    except CapabilityError as exc:
        _fail(f"{fhir}: {exc}", 1)
        raise
    typer.echo(render_table(rows))
    if not all_supported(rows):
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
