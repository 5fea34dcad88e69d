"""What every ``convoice`` command module shares: ``--home``, Prefect defaults, how errors end."""

from __future__ import annotations

import os
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

HomeOption = Annotated[
    str | None,
    typer.Option("--home", help="Store root (default: $CONVOICE_HOME or ~/.convoice)."),
]


def prefect_defaults() -> None:
    """Settings that make Prefect's temporary local server behave on small machines."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")


def fail(err: BaseException, code: int = 2) -> NoReturn:
    """End the command on an operator's mistake: the error in red (not a traceback), exit
    ``code`` (2: bad usage, 1: the work failed)."""
    Console().print(f"[red]{escape(str(err))}[/]")
    raise typer.Exit(code) from err
