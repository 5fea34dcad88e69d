"""``convoice deploy`` against a real Prefect server, and a worker running the release."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from test_storage import ingest

from convoice.flows.release import unchanged_since
from convoice.storage import Release, Store

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(prefect_home: Path, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CONVOICE_"))}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="INFO",
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real ``prefect server start`` on 127.0.0.1; yields (API URL, client PREFECT_HOME)."""
    base = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = _env(base / "server-home", None) | {"PREFECT_UI_ENABLED": "false"}
    log = (base / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server did not start: {(base / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url, base / "client-home"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"{command} exited {done.returncode}:\n{output[-4000:]}")
    return output


def test_unchanged_since() -> None:
    versions: dict[str, int | None] = {"clips": 3, "labels": None}
    release = Release(1, None, "t", "", 1, 1, 1, 0.1, table_versions=dict(versions))
    assert unchanged_since(release, versions)
    assert not unchanged_since(release, {"clips": 3, "labels": 0})


def test_deploy_without_a_server_says_so(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{_free_port()}/api"
    done = subprocess.run(
        [str(BIN / "convoice"), "deploy", "--api-url", closed],
        env=_env(tmp_path / "home", None) | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert f"no Prefect server answers at {closed}" in done.stdout
    done = subprocess.run(  # no URL at all: neither option, environment nor profile
        [str(BIN / "convoice"), "deploy"],
        env=_env(tmp_path / "home", None) | {"COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "no Prefect server is configured" in done.stdout


def test_deploy_and_run_the_release(prefect_server: tuple[str, Path], tmp_path: Path) -> None:
    api_url, client_home = prefect_server
    env = _env(client_home, api_url) | {"COLUMNS": "200"}
    store = Store(tmp_path / "store")
    ingest(store, "rec_a", ["spk_1", "spk_2"], np.random.default_rng(5))

    out = _run([str(BIN / "convoice"), "deploy", "--home", store.root], env, cwd=tmp_path)
    assert "created work pool convoice (process)" in out
    assert "convoice-ingest/nightly-ingest" in out and "convoice-release/weekly-release" in out
    again = _run([str(BIN / "convoice"), "deploy", "--home", store.root], env, cwd=tmp_path)
    assert "created work pool" not in again  # a second deploy updates, creates nothing

    parameters = [f"home={store.root}", "tag=from-test", "note=made by a worker"]
    run_release = [str(BIN / "prefect"), "deployment", "run", "convoice-release/weekly-release"]
    out = _run([*run_release, *(a for p in parameters for a in ("-p", p))], env, cwd=tmp_path)
    match = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert match, out
    # The worker starts anywhere: the deployment's pull step moves to the repository root.
    worker = _run(
        [str(BIN / "prefect"), "worker", "start", "--pool", "convoice", "--run-once"],
        env,
        cwd=tmp_path,
    )
    assert "released v1" in worker, worker[-3000:]

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(match.group(1))
            deployment = client.read_deployment_by_name("convoice-release/weekly-release")
        assert run.state is not None and run.state.is_completed(), run.state
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]
        assert deployment.parameters["home"] == store.root
        assert deployment.work_queue_name == "convoice-store"

        (release,) = store.releases()
        assert (release.tag, release.note, release.n_clips) == ("from-test", "made by a worker", 2)

        # Against the same server, nothing changed since v1: the flow publishes nothing.
        from convoice.flows.release import release_flow

        assert release_flow(home=store.root) is None
    assert [r.name for r in store.releases()] == ["v1"]
