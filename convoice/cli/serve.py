"""``convoice serve``: the voice bank web service (FastAPI under uvicorn).

Registered by :mod:`convoice.cli.root`; heavy libraries are imported inside the command.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from convoice.cli.common import HomeOption, fail

console = Console()


def serve_command(
    release: Annotated[
        str | None, typer.Option("--release", help="Release: v3, 3 or a tag (default: latest).")
    ] = None,
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on; anything but loopback needs [service] token"
            " or $CONVOICE_SERVICE_TOKEN.",
        ),
    ] = "127.0.0.1",
    home: HomeOption = None,
) -> None:
    """Serve the voice bank: voices of a release, find a voice, speak text in it (see /docs)."""
    from convoice.config import load_settings
    from convoice.service.app import create_app, is_loopback
    from convoice.storage import UnknownReleaseError

    settings = load_settings(home=home)
    token = settings.service.token or os.environ.get("CONVOICE_SERVICE_TOKEN", "")
    if not is_loopback(host) and not token:
        console.print(
            f"[red]refusing to listen on {escape(host)} without a token: set [service] token or"
            " $CONVOICE_SERVICE_TOKEN (clients send Authorization: Bearer <token>)[/]"
        )
        raise typer.Exit(2)
    import uvicorn

    try:
        app = create_app(settings, release)
    except UnknownReleaseError as err:
        fail(err)
    bank = app.state.bank
    dataset = sum(v.kind == "dataset" for v in bank.voices.values())
    console.print(
        f"voice bank of {bank.release or 'no release (shipped voices only)'}: {dataset} dataset"
        f" speakers, {len(bank.voices) - dataset} shipped voices, {len(bank.excluded)} excluded;"
        f" http://{host}:{port}/ (API docs /docs)",
        markup=False,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
