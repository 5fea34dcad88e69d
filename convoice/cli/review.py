"""``convoice review``: a local Label Studio, and clips pushed to it and pulled back.

Heavy libraries (Prefect, the Label Studio SDK) are imported inside the commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from convoice.cli.common import HomeOption, fail, prefect_defaults

if TYPE_CHECKING:
    from convoice.review.layout import PullReport, PushReport
    from convoice.review.server import LocalServer

review_app = typer.Typer(
    no_args_is_help=True,
    help="People in the loop: review uncertain clips in Label Studio and apply their labels.",
)
console = Console()

ConfigOption = Annotated[str | None, typer.Option("--config", help="TOML settings file.")]


def _local(home: str | None, port: int | None) -> LocalServer:
    from dataclasses import replace

    from convoice.config import load_settings
    from convoice.review.client import local_server
    from convoice.storage import Store

    settings = load_settings(home=home)
    if port is not None:
        settings = replace(settings, review=replace(settings.review, port=port))
    if settings.review.url:
        console.print(
            f"[yellow]review.url is set ({settings.review.url}): push and pull use that server;"
            " this starts a local one anyway[/]"
        )
    return local_server(settings, Store.open(settings))


@review_app.command()
def serve(
    home: HomeOption = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default 8089).")] = None,
    detach: Annotated[
        bool, typer.Option(help="Leave it running in the background (stop: convoice review stop).")
    ] = False,
) -> None:
    """Start a local Label Studio on 127.0.0.1 (installed on first use) and print its login."""
    from convoice.review import server as review_server

    server = _local(home, port)
    try:
        program = review_server.ensure_venv(log=console.print)
        console.print(f"starting Label Studio (data in {server.data_dir}) ...")
        proc, creds = review_server.start(server, program)
    except review_server.ServerError as err:
        fail(err, 1)
    state = "already running" if proc is None else "running"
    console.print(f"[bold]Label Studio {state}[/] at {server.url}")
    console.print(f"  login: {creds.username}  password: {creds.password}")
    console.print(
        f"  API token: in {server.data_dir / review_server.CREDENTIALS} (not printed);"
        " `convoice review push` and `pull` use it"
    )
    if proc is None or detach:
        return
    console.print("Ctrl-C stops it.")
    try:
        proc.wait()
    except KeyboardInterrupt:
        console.print("stopping Label Studio ...")
        review_server.stop(server)


@review_app.command()
def stop(
    home: HomeOption = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default 8089).")] = None,
) -> None:
    """Stop the local Label Studio that `serve --detach` started."""
    from convoice.review import server as review_server

    server = _local(home, port)
    stopped = review_server.stop(server)
    console.print("stopped" if stopped else f"no local Label Studio running for {server.data_dir}")


def _print_push(report: PushReport) -> None:
    console.print(report.summary())
    if report.task_ids:
        first, last = report.task_ids[0], report.task_ids[-1]
        what = "clip" if report.queue == "clip" else f"{report.queue} label"
        console.print(f"task ids {first}..{last} (least sure {what} first)")


def _print_pull(report: PullReport) -> None:
    for task_id, annotation_id, reason in report.skipped:
        console.print(f"[yellow]skipped[/] task {task_id} (annotation {annotation_id}): {reason}")
    for merged, kept in report.merges:
        console.print(f"merged speaker {merged} into {kept}")
    for speaker in report.new_speakers:
        console.print(f"new speaker {speaker}")
    console.print(report.summary())


@review_app.command()
def push(
    home: HomeOption = None,
    config: ConfigOption = None,
    limit: Annotated[int | None, typer.Option(help="At most this many new tasks.")] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            help="Which labels: clip (any label in review, least sure clip first), speaker "
            "or transcript (that label in review, least sure first). Default: [review] queue."
        ),
    ] = None,
) -> None:
    """Send the clips that need review to Label Studio (most uncertain first, never twice)."""
    from convoice.config import ConfigError, load_settings
    from convoice.review.layout import QueueKind

    try:  # a wrong name is a message before any flow starts
        kind = QueueKind.parse(queue) if queue else None
    except ValueError as err:
        fail(err)
    try:
        kind = kind or QueueKind.parse(load_settings(config, home=home).review.queue)
    except ValueError as err:
        raise ConfigError(f"[review] queue: {err}") from None  # the settings file's mistake
    prefect_defaults()
    from convoice.flows.review import ReviewIncomplete, review_push_flow

    try:
        _print_push(review_push_flow(home=home, config=config, limit=limit, queue_kind=kind))
    except ReviewIncomplete as err:
        report = err.report
        console.print(f"[red]push incomplete:[/] {report.error}")
        console.print(report.summary().split("; ERROR")[0] + " (the rest goes with the next push)")
        raise typer.Exit(1) from err


@review_app.command()
def status(home: HomeOption = None, config: ConfigOption = None) -> None:
    """What each review queue holds now: clips, speech, the wrong labels people can expect;
    then what the review project in Label Studio holds and what waits to be pulled."""
    from convoice.config import load_settings
    from convoice.flows.review import review_server_progress
    from convoice.review.client import ReviewServerError
    from convoice.review.layout import queue_sizes
    from convoice.storage import Store
    from convoice.storage.rows import clip_records

    settings = load_settings(config, home=home)
    store = Store.open(settings)
    clips = clip_records(store.materialized_clips())
    by_people = sum(1 for c in clips if c.labelled_by)
    console.print(
        f"{len(clips)} clips in {settings.home}; {by_people} labelled by people. "
        f"`convoice review push --queue Q` sends a queue (default [review] queue = "
        f"{settings.review.queue!r}), least sure first:",
        markup=False,
    )
    console.print(
        f"  {'queue':<11} {'clips':>7} {'speech h':>9} {'wrong labels expected':>22} {'+ audit':>8}"
    )
    for q in queue_sizes(clips, settings.review.audit_share):
        console.print(
            f"  {q.queue:<11} {q.clips:7d} {q.speech_s / 3600:9.2f} {q.expected_wrong:22.1f} "
            f"{q.audit:8d}"
        )
    try:
        console.print(review_server_progress(settings, store).summary(), markup=False)
    except ReviewServerError as err:
        console.print(f"Label Studio: {err} (the queues above are the store's alone)", markup=False)


@review_app.command()
def pull(
    home: HomeOption = None,
    config: ConfigOption = None,
    every: Annotated[
        float | None, typer.Option(help="Keep polling, pulling every this many seconds.")
    ] = None,
    listen: Annotated[
        int | None,
        typer.Option(help="Also pull when Label Studio reports an annotation (webhook port)."),
    ] = None,
) -> None:
    """Apply the completed annotations (labels, merges, new speakers); safe to repeat."""
    prefect_defaults()
    from convoice.flows.review import ReviewIncomplete, review_pull_flow

    def once() -> bool:
        try:
            _print_pull(review_pull_flow(home=home, config=config))
        except ReviewIncomplete as err:
            console.print(f"[red]pull incomplete:[/] {err.report.error}")
            return False
        return True

    if listen is None:
        while True:
            if not once() and every is None:
                raise typer.Exit(1)
            if every is None:
                return
            time.sleep(every)
    _listen(home, listen, every or 300.0, once)


def _listen(home: str | None, port: int, every: float, once: Callable[[], bool]) -> None:
    """Pull on every annotation webhook, and every ``every`` seconds anyway."""
    from convoice.config import load_settings
    from convoice.review.client import ReviewServerError, client_for
    from convoice.review.webhook import WebhookReceiver
    from convoice.storage import Store

    settings = load_settings(home=home)
    with WebhookReceiver(port) as receiver:
        try:
            client = client_for(settings, Store.open(settings))
            project_id = client.find_project(settings.review.project_title)
            if project_id is None:
                console.print("[red]no review project yet: run `convoice review push` first[/]")
                raise typer.Exit(1)
            client.ensure_webhook(project_id, receiver.url)
        except ReviewServerError as err:
            fail(err, 1)
        console.print(f"listening for annotations on 127.0.0.1:{port}; Ctrl-C stops")
        while True:
            once()
            receiver.wait(every)
            time.sleep(2.0)  # let a burst of annotations arrive before pulling
