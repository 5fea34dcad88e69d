"""What every ``convoice`` command module shares: the ``--home`` option, Prefect defaults."""

from __future__ import annotations

import os
from typing import Annotated

import typer

HomeOption = Annotated[
    str | None,
    typer.Option("--home", help="Store root (default: $CONVOICE_HOME or ~/.convoice)."),
]


def prefect_defaults() -> None:
    """Settings that make Prefect's temporary local server behave on small machines."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
