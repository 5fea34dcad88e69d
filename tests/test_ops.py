"""``convoice deploy`` against a real Prefect server; a worker runs the release and a sync.

The server runs on SQLite (``prefect server start``'s default) and, when the
PostgreSQL binaries are installed (Debian ``postgresql``), on a throw-away
PostgreSQL cluster as in ``deployments/compose.yaml``. Its scheduler is off,
so the only flow runs are the ones a test starts.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from test_storage import ingest

from convoice.flows.release import unchanged_since
from convoice.flows.review import superseded
from convoice.orchestration import memory
from convoice.storage import Release, Store
from convoice.synth.serve import free_port

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


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


@contextlib.contextmanager
def postgres_cluster(sql: Sequence[str] = ()) -> Iterator[int]:
    """A throw-away PostgreSQL on 127.0.0.1 (trust auth); runs ``sql``, yields its port.

    Skips when Debian's ``postgresql`` is missing. As root the server runs as
    the ``postgres`` user (it refuses to run as root).
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql: make system)")
    bin_dir = Path(found[-1]).parent
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = Path(tempfile.mkdtemp(prefix="convoice-test-pg-"))  # /tmp: the postgres user reaches it
    if as_user:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()

    def run(program: str, *args: str) -> None:
        command = [*as_user, str(bin_dir / program), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    try:
        run("initdb", "-D", str(data / "db"), "-U", "postgres", "--auth=trust")
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
        run("pg_ctl", "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start")
        try:
            for statement in sql:
                run(
                    "psql",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    statement,
                )
            yield port
        finally:
            run("pg_ctl", "-D", str(data / "db"), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def prefect_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A real ``prefect server start`` on 127.0.0.1; yields (API URL, client PREFECT_HOME)."""
    base = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = _env(base / "server-home", None) | {
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_SERVICES_SCHEDULER_ENABLED": "false",  # no run but the tests' own
    }
    if request.param == "sqlite":
        yield from _serve(url, base, env)
        return
    with postgres_cluster(["CREATE DATABASE prefect"]) as pg_port:
        database = f"postgresql+asyncpg://postgres@127.0.0.1:{pg_port}/prefect"
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database
        yield from _serve(url, base, env)


def _serve(url: str, base: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    port = url.removesuffix("/api").rsplit(":", 1)[1]
    log = (base / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
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


def test_a_sync_that_starts_an_interval_late_is_superseded() -> None:
    scheduled = datetime(2026, 1, 4, 2, 0, tzinfo=UTC)
    late = scheduled + timedelta(seconds=301)
    assert superseded(scheduled, True, late, 300)
    assert not superseded(scheduled, True, scheduled + timedelta(seconds=299), 300)
    assert not superseded(scheduled, False, late, 300)  # started by hand: always runs
    assert not superseded(scheduled, True, late, None)  # no limit set
    assert not superseded(None, True, late, 300)


def test_deploy_without_a_server_says_so(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api"
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


def test_deploy_and_run_the_release(
    prefect_server: tuple[str, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    api_url, client_home = prefect_server
    on_sqlite = request.node.callspec.params["prefect_server"] == "sqlite"
    env = _env(client_home, api_url) | {"COLUMNS": "200"}
    store = Store(tmp_path / "store")
    ingest(store, "rec_a", ["spk_1", "spk_2"], np.random.default_rng(5))

    out = _run([str(BIN / "convoice"), "deploy", "--home", store.root], env, cwd=tmp_path)
    assert "created work pool convoice (process)" in out
    _check_registered(api_url, store.root)
    if on_sqlite:  # what follows does not depend on the server's database: once is enough
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

        (release,) = store.releases()
        assert (release.tag, release.note, release.n_clips) == ("from-test", "made by a worker", 2)

    if not on_sqlite:
        return

    # Against the same server, nothing changed since v1: the flow publishes nothing. (In a
    # process of its own: a flow run in this one would keep Prefect's clients bound to the
    # first server of the module, which the second parametrisation has already stopped.)
    again = "from convoice.flows.release import release_flow as f; print('result', f(home=%r))"
    out = _run([sys.executable, "-c", again % store.root], env, cwd=tmp_path)
    assert "result None" in out.splitlines(), out[-3000:]
    assert [r.name for r in store.releases()] == ["v1"]

    # The review sync with Label Studio down: the run fails, says why, and writes nothing.
    versions = store.table_versions()
    down = env | {
        "CONVOICE_REVIEW__URL": f"http://127.0.0.1:{free_port()}",
        "CONVOICE_REVIEW__RETRIES": "0",
        "LABEL_STUDIO_API_KEY": "not-a-real-token",
    }
    run_sync = [str(BIN / "prefect"), "deployment", "run", "convoice-review-sync/review-sync"]
    match = re.search(r"UUID: ([0-9a-f-]{36})", _run(run_sync, down, cwd=tmp_path))
    assert match
    worker = _run(
        [str(BIN / "prefect"), "worker", "start", "--pool", "convoice", "--run-once"],
        down,
        cwd=tmp_path,
    )
    assert "review sync stopped at the pull (nothing is lost" in worker, worker[-3000:]
    assert "could not find project" in worker and "not-a-real-token" not in worker
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        run = client.read_flow_run(match.group(1))
    assert run.state is not None and run.state.is_failed(), run.state
    assert store.table_versions() == versions


def _check_registered(api_url: str, home: str) -> None:
    """Every deployment of prefect.yaml is on the server, with its queue, schedule, home."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    declared = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())["deployments"]
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        registered = {d.name: d for d in client.read_deployments()}
    assert set(registered) == {d["name"] for d in declared}
    assert {"nightly-ingest", "weekly-release", "review-sync"} <= set(registered)
    for spec in declared:
        deployment = registered[spec["name"]]
        assert deployment.work_pool_name == spec["work_pool"]["name"] == "convoice"
        assert deployment.work_queue_name == spec["work_pool"]["work_queue_name"]
        assert deployment.parameters["home"] == home
        (schedule,) = deployment.schedules
        (wanted,) = spec["schedules"]
        if "interval" in wanted:
            assert schedule.schedule.interval == timedelta(seconds=wanted["interval"])
        else:
            assert schedule.schedule.cron == wanted["cron"]
        assert schedule.active
        limit = deployment.global_concurrency_limit
        assert limit is not None and limit.limit == spec["concurrency_limit"]["limit"] == 1
        options = deployment.concurrency_options
        assert options is not None
        assert options.collision_strategy == spec["concurrency_limit"]["collision_strategy"]
    for name in ("nightly-ingest", "loop"):  # Whisper runs there: its buffers kept for reuse
        env = registered[name].job_variables["env"]
        assert env["GLIBC_TUNABLES"] == memory.TUNABLES, name
    sync = registered["review-sync"]
    interval = sync.schedules[0].schedule.interval
    assert interval <= timedelta(minutes=10)  # "every few minutes"
    assert sync.parameters["max_lateness_s"] == interval.total_seconds()  # late by one: skip
