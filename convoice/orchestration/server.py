"""Prefect's temporary API server, started by ``convoice ingest`` before it imports Prefect.

With no API URL set, Prefect starts a temporary server when the first flow
runs: it imports its whole server stack into the calling process (about 12 s
on a loaded 2-core machine, only to start a subprocess), then waits for that
subprocess to import it again and answer (about 30 s). ``convoice ingest``
starts the same subprocess (the same uvicorn command and flags as Prefect's
``SubprocessASGIServer``) as its first act, so the server starts while the
command imports Prefect and loads the models, and points Prefect at it once
Prefect is imported (:func:`use_early_server`). When Prefect has an API URL of
its own (environment, profile, ``prefect.toml``) or the server does not answer,
the server is stopped and Prefect does as it always did. Stopped at exit, after
Prefect's own exit handlers (which send the last logs and events to it).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# What Prefect's SubprocessASGIServer sets for its temporary server (no UI, ephemeral).
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}


@dataclass
class EarlyServer:
    """A Prefect API server subprocess on 127.0.0.1:``port``."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_ready(self, timeout: float) -> bool:
        """Whether the server answers its health check within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # it exited (the port was taken, say)
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except OSError:  # not listening yet
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Terminate the server (killed after 5 s, as Prefect stops its own)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_early_server() -> EarlyServer | None:
    """Start Prefect's temporary server now; None when Prefect is imported already (an
    in-process caller: Prefect decides) or ``PREFECT_API_URL`` is set."""
    if "prefect" in sys.modules or os.environ.get("PREFECT_API_URL"):
        return None
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        return None
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent),
        "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip
    process = subprocess.Popen(cmd, env={**os.environ, **SERVER_ENV})
    server = EarlyServer(process, port)
    atexit.register(server.stop)  # registered before Prefect's handlers: runs after them
    return server


def use_early_server(server: EarlyServer | None) -> bool:
    """Point Prefect (imported by now) at ``server`` once it answers; True when it does.

    Stops ``server`` instead when Prefect's settings give an API URL or turn its
    temporary server off, or the server does not answer within Prefect's own
    start-up timeout.
    """
    if server is None:
        return False
    from prefect.context import refresh_global_settings_context
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        server.stop()
        return False
    timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    if not server.wait_ready(timeout):
        code = server.process.poll()
        server.stop()
        log.warning(
            "Prefect's temporary server, started early, %s: Prefect starts its own",
            f"exited ({code})" if code is not None else f"did not answer in {timeout} s",
        )
        return False
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()  # the settings every thread sees pick it up
    return True
