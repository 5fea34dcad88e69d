"""`convoice ingest` starts Prefect's temporary server before it imports Prefect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Run in a fresh process: the early server is only for a process that has not imported Prefect.
FLOW_ON_EARLY_SERVER = """
import os, sys
from convoice.orchestration.server import start_early_server, use_early_server
server = start_early_server()
assert server is not None and server.process.poll() is None
from prefect import flow
from prefect.client.orchestration import get_client
assert use_early_server(server)

@flow(name="early-server-check")
def answer() -> int:
    return 42

assert answer() == 42
with get_client(sync_client=True) as client:
    assert str(client.api_url).rstrip("/") == server.api_url, client.api_url
    names = [f.name for f in client.read_flows()]
assert "early-server-check" in names, names
print("port", server.port)
"""

PROFILE_WINS = """
from convoice.orchestration.server import start_early_server, use_early_server
server = start_early_server()
assert server is not None
import prefect
assert not use_early_server(server)
assert server.process.poll() is not None  # stopped: Prefect uses the profile's API
print("stopped")
"""


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )


def test_a_flow_runs_on_the_early_server_and_prefect_starts_none_of_its_own(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_API_URL", None)
    done = _run(FLOW_ON_EARLY_SERVER, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting temporary server" not in done.stdout + done.stderr
    port = int(done.stdout.split("port")[-1])
    import socket

    with socket.socket() as sock:  # stopped when the process exited
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_an_api_url_in_prefects_profile_wins(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        'active = "remote"\n[profiles.remote]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'
    )
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "PREFECT_PROFILES_PATH": str(profiles)}
    env.pop("PREFECT_API_URL", None)
    done = _run(PROFILE_WINS, env)
    assert done.returncode == 0 and "stopped" in done.stdout, done.stderr[-3000:]


def test_none_in_a_process_that_imported_prefect(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import prefect  # noqa: F401

    from convoice.orchestration.server import start_early_server

    assert start_early_server() is None  # Prefect decides, as always
    monkeypatch.delitem(sys.modules, "prefect")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert start_early_server() is None  # an API of the operator's own
