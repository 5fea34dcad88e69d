"""The ``convoice`` command line: ingest, demo, datasets, benchmark.

Heavy libraries (torch, pyannote, Prefect) are imported inside the commands,
so ``convoice --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from convoice.cli.bench import bench_command
from convoice.cli.calibrate import calibrate_command
from convoice.cli.common import (
    HomeOption,
    end_without_teardown,
    exit_process,
    fail,
    fast_exit_requested,
    prefect_defaults,
)
from convoice.cli.ops import deploy_command, report_command
from convoice.cli.registry import registry_app
from convoice.cli.review import review_app
from convoice.cli.serve import serve_command
from convoice.cli.train import encoder_app, export_app, loop_command, retrain_app
from convoice.cli.vocab import retranscribe_command, vocabulary_app
from convoice.config import RunnerKind
from convoice.logs import LogFormat

if TYPE_CHECKING:
    from convoice.config import RunnerSettings, Settings
    from convoice.models.run_summary import IngestReport
    from convoice.storage import Store

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Con Voice: Creative Commons video in, versioned self-labelled speaker datasets out.",
)
dataset_app = typer.Typer(no_args_is_help=True, help="Release, list and pull dataset versions.")
app.add_typer(dataset_app, name="dataset")
app.add_typer(review_app, name="review")
app.add_typer(retrain_app, name="retrain")
app.add_typer(encoder_app, name="encoder")
app.add_typer(export_app, name="export")
app.add_typer(registry_app, name="registry")
app.add_typer(vocabulary_app, name="vocabulary")
app.command("retranscribe")(retranscribe_command)
app.command("loop")(loop_command)
app.command("deploy")(deploy_command)
app.command("serve")(serve_command)
app.command("calibrate")(calibrate_command)
dataset_app.command("report")(report_command)
console = Console()


def _store(home: str | None) -> Store:
    from convoice.config import load_settings
    from convoice.storage import Store

    return Store.open(load_settings(home=home))


def print_report(report: IngestReport) -> None:
    """What was labelled, what was skipped (grouped by reason), then the run's figures."""
    table = Table(title=f"ingest run {report.run_id}: labelled")
    for col in ("recording", "audio s", "clips", "kept s", "speakers", "new", "to review"):
        table.add_column(col)
    for r in report.recordings:
        table.add_row(escape(r.title[:40]), f"{r.duration:.1f}", str(r.clips),
                      f"{r.kept_seconds:.1f}", str(r.speakers), str(r.new_speakers),
                      str(r.review_clips))  # fmt: skip
    if report.recordings:
        console.print(table)
    if report.skipped:
        console.print(_skipped_table(report))
    console.print(escape(report.summary()), soft_wrap=True)


def _skipped_table(report: IngestReport, shown: int = 10) -> Table:
    from convoice.models.run_summary import CRASH_CODES

    table = Table(title="skipped, by reason")
    for col in ("reason", "items", "which (line of the sources file: item: reason)"):
        table.add_column(col, overflow="fold")
    for code, items in report.skipped_by_reason().items():
        lines = []
        for s in items[:shown]:
            where = f"line {s.line}: " if s.line is not None else ""
            lines.append(escape(f"{where}{s.url or s.source_url or '(no url)'}: {s.reason}"))
        if len(items) > shown:
            lines.append(f"... and {len(items) - shown} more (table `skipped` in the store)")
        style = "red" if code in CRASH_CODES else "yellow"
        table.add_row(f"[{style}]{code}[/]", str(len(items)), "\n".join(lines))
    return table


SourcesOption = Annotated[
    Path | None,
    typer.Option(
        "--sources",
        help="CSV (, ; or tab) with columns url,license[,note]; a bad row is skipped.",
    ),
]
RunnerOption = Annotated[
    RunnerKind | None,
    typer.Option(help="Where recordings are prepared: threads, dask-local, dask."),
]
WorkersOption = Annotated[
    int | None, typer.Option(help="Threads or Dask worker processes (runner.workers).")
]
AddressOption = Annotated[
    str | None, typer.Option(help="Dask scheduler address for --runner dask.")
]
LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option("--log-format", help="text, or json: one object per line (or env)."),
]


@app.command()
def ingest(
    urls: Annotated[
        list[str] | None,
        typer.Argument(
            help="Video, playlist, channel or search URLs, or local paths (a local file"
            " needs its licence declared in a --sources file)."
        ),
    ] = None,
    sources: SourcesOption = None,
    home: HomeOption = None,
    config: Annotated[Path | None, typer.Option(help="TOML settings file.")] = None,
    runner: RunnerOption = None,
    workers: WorkersOption = None,
    address: AddressOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Ingest and label every Creative Commons item behind URLS and/or a sources file.

    Exit codes: 0 when every item was labelled, already done, left to another
    ingest into the store that is labelling it, or skipped for a reason (not
    Creative Commons, no speech, truncated, a bad row of the sources file, ...:
    the table lists them); 1 when the engine crashed on some item
    (reason ``labelling_failed``, logged with its traceback) or the run itself
    failed; 2 for bad usage (options, a sources file that cannot be read as a whole);
    3 when the run stopped because a disk it writes to (store, downloads, temporary
    files) is full: what was labelled is kept, and the same command resumes.
    """
    _check_sources(urls, sources)
    prefect_defaults()
    cfg = _settings(config, home)
    from convoice.orchestration.server import start_early_server, use_early_server

    server = start_early_server()  # Prefect's temporary server starts while Prefect imports
    runner_settings = _runner_settings(cfg.runner, runner, workers, address)
    if (runner_settings or cfg.runner).kind == RunnerKind.THREADS:
        from convoice.orchestration.preload import start_preload

        start_preload(cfg)  # models load while Prefect is imported and its server starts
    from convoice.flows.ingest import run_ingest

    use_early_server(server)

    fmt = log_format.value if log_format else None
    if fmt:
        _use_log_format(fmt)
    report = run_ingest(
        urls=list(urls or []),
        sources_file=str(sources) if sources else None,
        home=home,
        config=str(config) if config else None,
        runner_settings=runner_settings,
        log_format=fmt,
    )
    print_report(report)
    end_without_teardown()  # the process ends without freeing the models one by one
    if report.stopped:
        console.print(f"[red]{escape(report.stopped)}[/]", soft_wrap=True)
    elif report.exit_code:
        console.print(f"[red]{len(report.crashed)} item(s) crashed[/]: see the ERROR lines above")
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _check_sources(urls: list[str] | None, sources: Path | None) -> None:
    """Usage errors (exit 2): nothing to ingest, or a sources file unreadable as a whole."""
    if not urls and sources is None:
        raise typer.BadParameter("give at least one URL or --sources FILE")
    if sources is not None and not sources.is_file():
        raise typer.BadParameter(f"no such sources file: {sources}")
    if sources is not None:
        from convoice.media.sources import SourcesError, read_sources

        try:
            read_sources(sources)  # the file as a whole must be readable; bad rows are skipped
        except SourcesError as err:
            raise typer.BadParameter(str(err), param_hint="--sources") from err


def _settings(config: Path | None, home: str | None) -> Settings:
    """The settings; a bad settings file stops the command before anything runs (exit 2)."""
    from convoice.config import ConfigError, load_settings

    try:
        return load_settings(config, home=home)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="settings") from err


def _runner_settings(
    settings: RunnerSettings,
    runner: RunnerKind | None,
    workers: int | None,
    address: str | None,
) -> RunnerSettings | None:
    """``[runner]`` with the command's options over it, checked; None when none is given."""
    if runner is None and workers is None and address is None:
        return None
    from dataclasses import replace

    from convoice.config import ConfigError
    from convoice.orchestration.runner import check  # imports Prefect: only when options are given

    chosen = replace(
        settings,
        kind=settings.kind if runner is None else runner.value,
        workers=settings.workers if workers is None else workers,
        address=settings.address if address is None else address,
    )
    try:
        check(chosen)
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from err
    return chosen


def _use_log_format(fmt: str) -> None:
    """Log lines as ``fmt`` here and in Dask workers (they inherit the environment)."""
    from convoice.logs import configure_logging

    os.environ["CONVOICE_LOG_FORMAT"] = fmt  # Dask workers inherit it
    configure_logging(fmt)  # Prefect's own lines about the run, too


@app.command()
def demo(
    home: HomeOption = None,
    workdir: Annotated[Path | None, typer.Option(help="Where to make the sample videos.")] = None,
) -> None:
    """Make sample videos, serve them on 127.0.0.1, ingest them by URL and release a version."""
    prefect_defaults()
    from convoice.flows.demo import demo_flow

    result = demo_flow(home=home, workdir=str(workdir) if workdir else None)
    report = result.report
    print_report(report)
    rel = result.release
    console.print(
        f"[bold]demo done[/]: {len(report.recordings)} recordings, {report.clips} clips, "
        f"{report.audio_seconds / 3600:.3f} h raw, {report.kept_seconds / 3600:.3f} h kept, "
        f"{result.speakers} speakers in the registry, {report.review_clips} clips sent to review, "
        f"{len(report.skipped)} items skipped; dataset version {rel.name} "
        f"({rel.n_clips} clips, {rel.hours:.3f} h) in {rel.path}"
    )
    console.print(f"load it: convoice dataset pull {rel.name} --to ./my-dataset")


app.command("bench")(bench_command)  # after ingest and demo, where --help has always listed it


@dataset_app.command("release")
def dataset_release(
    tag: Annotated[str | None, typer.Option(help="A name for this version (unique).")] = None,
    note: Annotated[str, typer.Option(help="A note stored in the manifest.")] = "",
    home: HomeOption = None,
) -> None:
    """Publish the current labels as the next immutable version."""
    from convoice.models.licence import LOCAL_ATTRIBUTION_HINT, local_attributions

    store = _store(home)
    try:
        rel = store.release(tag=tag, note=note)
    except ValueError as err:  # a tag already used or malformed, or nothing to release
        fail(err)
    console.print(
        f"released {rel.name}{f' ({rel.tag})' if rel.tag else ''}: {rel.n_clips} clips, "
        f"{rel.n_recordings} recordings, {rel.n_speakers} speakers, {rel.hours:.3f} h, "
        f"by status {rel.clips_by_status}"
    )
    local = local_attributions(store.recordings().column("attribution").to_pylist())
    if local:
        console.print(f"[yellow]warning:[/] {local} recording(s) {LOCAL_ATTRIBUTION_HINT}")


@dataset_app.command("list")
def dataset_list(home: HomeOption = None) -> None:
    """Every released version, oldest first."""
    releases = _store(home).releases()
    if not releases:
        console.print("no release yet: run `convoice dataset release`")
        return
    table = Table()
    for col in ("version", "tag", "created", "clips", "recordings", "speakers", "hours", "note"):
        table.add_column(col)
    for r in releases:
        table.add_row(r.name, r.tag or "", r.created_at, str(r.n_clips), str(r.n_recordings),
                      str(r.n_speakers), f"{r.hours:.3f}", r.note)  # fmt: skip
    console.print(table)


@dataset_app.command("pull")
def dataset_pull(
    version: Annotated[str, typer.Argument(help="v3, 3 or a tag.")],
    to: Annotated[Path, typer.Option("--to", help="Destination folder.")],
    speaker: Annotated[
        str | None,
        typer.Option(
            help="Keep clips whose speaker label is: accepted, review, labelled, rejected or "
            "sure (accepted or labelled); comma-separated."
        ),
    ] = None,
    transcript: Annotated[
        str | None, typer.Option(help="Keep clips whose transcript is: (as --speaker).")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Write a release's Parquet tables and clip audio into a folder, ready for training."""
    from convoice.storage import UnknownReleaseError
    from convoice.storage.pull import KindFilter

    try:
        wanted = KindFilter.parse(speaker, transcript)
        result = _store(home).pull(version, to, wanted)
    except (ValueError, UnknownReleaseError) as err:
        fail(err)
    console.print(
        f"pulled {result.release.name} into {result.path}: {result.n_clips} clips, "
        f"{result.copied} files copied, {result.skipped} already there"
    )
    console.print(f"pandas: pd.read_parquet('{result.path}/clips.parquet')")


def main() -> None:
    from convoice.config import ConfigError
    from convoice.orchestration.memory import keep_freed_memory

    keep_freed_memory()  # before any thread starts (Whisper's buffers reused: see the module)
    try:
        app()
    except SystemExit as done:  # how a typer app always ends, its exit code in it
        if fast_exit_requested() and isinstance(done.code, int | None):
            exit_process(done.code or 0)
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigError as err:  # any command: a bad settings file is a message, not a traceback
        console.print(f"[red]Error:[/] settings: {err}")
        sys.exit(2)
    except Exception as err:  # any command: a full disk is a message too, exit code 3
        from convoice.orchestration.disk_space import says_out_of_space

        if not says_out_of_space(err):
            raise
        first = (str(err).strip().splitlines() or [""])[0]
        console.print(
            f"[red]Error:[/] out of disk space ({type(err).__name__}: {escape(first)}). "
            "Free space and run the same command again.",
            soft_wrap=True,
        )
        sys.exit(3)


if __name__ == "__main__":
    main()
