"""What every ``convoice`` command module shares: ``--home``, Prefect defaults, how errors end."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
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


class _Ending:
    """Whether the command that ran asked to end its process without the interpreter's teardown."""

    fast = False


def end_without_teardown() -> None:
    """Let :func:`exit_process` end this process once the command returns (``convoice ingest``).

    Called by a command, never by a library: only the process's entry point
    (:func:`convoice.cli.root.main`) acts on it, so a command invoked in-process (tests,
    ``CliRunner``) ends as any other.
    """
    _Ending.fast = True


def fast_exit_requested() -> bool:
    """Whether the command that ran called :func:`end_without_teardown`."""
    return _Ending.fast


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` as Python would, minus the interpreter's teardown.

    First what a normal exit does: wait for the threads that are not daemons and run
    ``threading``'s exit hooks (Prefect sends its last logs and events there, thread pools
    stop), then the ``atexit`` handlers (Prefect's, the early server's stop, logging's
    flush), then flush the standard streams. What is skipped is the interpreter's
    finalisation: tearing down every module and freeing every object one by one (Whisper,
    ONNX Runtime's sessions), which took 1.5-5 s after an ingest on this 2-core machine
    (README "Where the time goes").
    """
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()  # what Py_FinalizeEx does first: join non-daemon threads, threading's hooks
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a broken pipe
            stream.flush()
    os._exit(code)
