"""The container images and the compose file agree with the code they deploy.

Docker cannot run on these machines, so these tests read ``deployments/``:
every ``CONVOICE_*`` variable the compose file sets is a real setting, the
worker serves the pool the deployments use, the images carry the pins and the
Debian packages the Makefile installs, and every service the others wait for
has a health check. Services run directly where that can be done here: Label
Studio on PostgreSQL with the compose file's environment (below, slow), and a
Prefect server on PostgreSQL with ``convoice deploy`` and a process worker
(tests/test_ops.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from test_ops import postgres_cluster
from test_storage import SAMPLE_RATE, ingest

from convoice.cli.ops import POOL, STORE_LIMIT
from convoice.config import ConfigError, load_settings
from convoice.review.server import LABEL_STUDIO_REQUIREMENT, LABEL_STUDIO_REQUIREMENTS
from convoice.storage import Store
from convoice.synth.serve import free_port

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deployments"
DOCKER = DEPLOY / "docker"
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
# CONVOICE_ variables outside the settings sections: read by default_home,
# load_settings and the --sources option of `convoice deploy`.
TOP_LEVEL = {"CONVOICE_HOME", "CONVOICE_CONFIG", "CONVOICE_SOURCES"}


def _example_env() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        if op.endswith("-"):
            return arg
        raise KeyError(f"${{{name}}} has no value in env.example and no default ({arg})")

    return VARIABLE.sub(one, text).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """deployments/compose.yaml as `docker compose` sees it with env.example's values."""
    loaded: dict[str, Any] = yaml.safe_load(
        interpolate((DEPLOY / "compose.yaml").read_text(), _example_env())
    )
    return loaded


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping, so it can be checked"
    return {str(k): str(v) for k, v in env.items()}


def _make(*args: str) -> str:
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def _make_variable(name: str) -> str:
    return _make("--eval", f"print-var: ; @echo $({name})", "print-var").strip()


def _run_lines(dockerfile: Path) -> list[str]:
    """The RUN instructions of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_every_variable_has_a_value_and_env_example_has_no_stray_ones() -> None:
    used = {m.group(1) for m in VARIABLE.finditer((DEPLOY / "compose.yaml").read_text())}
    example = _example_env()
    required = {
        m.group(1)
        for m in VARIABLE.finditer((DEPLOY / "compose.yaml").read_text())
        if not (m.group(2) or "").endswith("-")
    }
    assert required <= set(example), required - set(example)
    assert set(example) <= used, set(example) - used
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):  # the check does catch a gap
        interpolate("${POSTGRES_PASSWORD:?set it}", {})


def test_the_engine_env_is_made_of_real_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = _service_env(services["worker"])
    assert env == _service_env(services["deploy"])  # deploy and worker see one store
    convoice = {k: v for k, v in env.items() if k.startswith("CONVOICE_")}
    assert {k for k in convoice if "__" not in k} <= TOP_LEVEL
    settings = load_settings(environ=convoice)  # an unknown CONVOICE_X__Y raises ConfigError
    with pytest.raises(ConfigError, match=r"unknown setting store\.endpoint;"):
        load_settings(environ={**convoice, "CONVOICE_STORE__ENDPOINT": "http://minio:9000"})

    bucket = settings.home.removeprefix("s3://").split("/")[0]
    assert settings.home.startswith("s3://") and bucket
    assert settings.store.endpoint_url == "http://minio:9000" and settings.store.allow_http
    assert "minio" in services and f"store/{bucket}" in " ".join(services["minio-init"]["command"])
    assert env["AWS_ACCESS_KEY_ID"] == _service_env(services["minio"])["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == _service_env(services["minio"])["MINIO_ROOT_PASSWORD"]

    assert settings.review.url == "http://label-studio:8080"
    label_studio = _service_env(services["label-studio"])
    assert env["LABEL_STUDIO_API_KEY"] == label_studio["LABEL_STUDIO_USER_TOKEN"]
    assert len(env["LABEL_STUDIO_API_KEY"]) == 40  # the legacy token format Label Studio takes
    assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api"


def test_the_worker_serves_the_pool_of_the_deployments(compose: dict[str, Any]) -> None:
    prefect_yaml = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in prefect_yaml["deployments"]}
    queues = {d["work_pool"]["work_queue_name"] for d in prefect_yaml["deployments"]}
    assert pools == {POOL} and queues == {STORE_LIMIT}
    command = compose["services"]["worker"]["command"]
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == POOL
    assert command[command.index("--type") + 1] == "process"  # what `convoice deploy` makes
    assert compose["services"]["deploy"]["command"] == ["convoice", "deploy"]


def test_prefect_runs_on_postgresql_from_the_engine_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    server = services["prefect-server"]
    url = _service_env(server)["PREFECT_API_DATABASE_CONNECTION_URL"]
    postgres = _service_env(services["postgres"])
    assert url == (
        f"postgresql+asyncpg://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    version("asyncpg")  # the driver of that URL is in the engine's environment
    engine = {services[name]["image"] for name in ("prefect-server", "deploy", "worker")}
    assert len(engine) == 1
    for name in ("prefect-server", "deploy", "worker"):
        assert services[name]["build"]["dockerfile"] == "deployments/docker/Dockerfile"
    # The server is the engine's own Prefect: the version prefect.yaml declares.
    prefect_yaml = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    assert version("prefect") == prefect_yaml["prefect-version"] == "3.8.8"


def test_label_studio_runs_on_postgresql_from_the_pinned_release(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    service = services["label-studio"]
    env = _service_env(service)
    postgres = _service_env(services["postgres"])
    assert env["DJANGO_DB"] == "default"
    assert (env["POSTGRE_HOST"], env["POSTGRE_PORT"]) == ("postgres", "5432")
    assert (env["POSTGRE_USER"], env["POSTGRE_PASSWORD"]) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    init = (DOCKER / "postgres-init.sql").read_text()
    assert f"CREATE DATABASE {env['POSTGRE_NAME']} OWNER {postgres['POSTGRES_USER']};" in init
    assert any(
        "postgres-init.sql:/docker-entrypoint-initdb.d/" in v
        for v in services["postgres"]["volumes"]
    )

    pin = _make_variable("LABEL_STUDIO")
    assert pin == LABEL_STUDIO_REQUIREMENT == "label-studio==1.23.2"
    # the Makefile and ensure_venv install the same pins (sentry-sdk 3 stops 1.23.2)
    assert _make_variable("LS_QUOTED").split() == list(LABEL_STUDIO_REQUIREMENTS)
    assert "sentry-sdk<3" in LABEL_STUDIO_REQUIREMENTS
    assert service["image"].endswith(":" + pin.split("==")[1])
    assert service["build"]["dockerfile"] == "deployments/docker/Dockerfile.labelstudio"
    runs = _run_lines(DOCKER / "Dockerfile.labelstudio")
    assert any(line.startswith("make labelstudio ") for line in runs)  # the Makefile's pin
    assert "--enable-legacy-api-token" in (DOCKER / "Dockerfile.labelstudio").read_text()


def test_the_engine_image_installs_what_make_setup_installs() -> None:
    dockerfile = DOCKER / "Dockerfile"
    assert dockerfile.read_text().startswith("#") and "FROM python:3.11-slim" in (
        dockerfile.read_text()
    )
    apt_packages = _make_variable("APT_PACKAGES").split()
    assert {"ffmpeg", "espeak-ng", "sox"} <= set(apt_packages)
    runs = _run_lines(dockerfile)
    installed: list[str] = []
    for line in runs:
        for part in line.split("&&"):
            words = shlex.split(part)
            if words[:2] == ["apt-get", "install"]:
                installed += [w for w in words[2:] if not w.startswith("-")]
            if words[:2] == ["make", "system"]:
                # what that `make system` installs, as make itself expands it
                dry = _make("-n", *words[1:])
                installed += dry.split("for p in ", 1)[1].split("; do", 1)[0].split()
    assert set(installed) - {"make"} == set(apt_packages) - {"make"}
    assert "make" in apt_packages  # the bootstrap package is one of the Makefile's
    assert "postgresql" not in installed  # a test dependency, not the engine's
    assert "postgresql" in _make_variable("APT_TEST_PACKAGES").split()
    assert any(line.startswith("make .venv/bin/.installed") for line in runs)
    assert (DOCKER / "Dockerfile.dockerignore").read_text().count(".venv\n") == 1


def test_nonfree_sources_takes_the_missing_list_as_make_system_builds_it() -> None:
    # `make system` passes the packages it lacks one per line (its shell's $(for ...)); on a
    # fresh machine that broke the recipe ("Syntax error: end of file unexpected"). Packages
    # that are installed have an install candidate, so nothing is written.
    wanted = "\n".join(_make_variable("APT_PACKAGES").split()[:3])
    assert _make("nonfree-sources", f"WANTED={wanted}") == ""


def test_every_wait_has_a_health_check_or_an_exit(compose: dict[str, Any]) -> None:
    services = compose["services"]
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"minio-init", "deploy"}
    for name, service in services.items():
        if name not in one_shot:
            assert "healthcheck" in service, f"{name} has no health check"
            assert service.get("restart") == "unless-stopped", name
        for needed, condition in (service.get("depends_on") or {}).items():
            assert needed in services, f"{name} waits for a missing service {needed}"
            wanted = condition["condition"]
            if wanted == "service_healthy":
                assert "healthcheck" in services[needed], f"{name} waits on {needed}'s health"
            else:
                assert wanted == "service_completed_successfully" and needed in one_shot
    assert set(services["worker"]["depends_on"]) == {"deploy", "minio-init", "label-studio"}


def test_files_the_compose_file_names_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context == REPO, name
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes") or []:
            if isinstance(volume, str) and volume.startswith("./"):
                assert (DEPLOY / volume.split(":")[0]).is_file(), (name, volume)
            elif isinstance(volume, dict) and volume.get("type") == "bind":
                # the operator's sources.csv: compose refuses to start without it
                assert volume["bind"]["create_host_path"] is False
                assert volume["source"] == "./sources.csv"
    assert "deployments/.env" in (DOCKER / "Dockerfile.dockerignore").read_text()


def _dockerfile_cmd(dockerfile: Path) -> list[str]:
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    (line,) = [line for line in text.splitlines() if line.startswith("CMD ")]
    command: list[str] = json.loads(line[4:])
    return command


@pytest.mark.slow
def test_label_studio_runs_on_postgresql_as_the_compose_file_configures_it(
    compose: dict[str, Any],
    tmp_path: Path,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pinned Label Studio, the image's command and the compose environment, on PostgreSQL.

    The database is set up as the postgres image does it (POSTGRES_USER with its
    password, POSTGRES_DB) plus docker/postgres-init.sql; only the host and port
    change (127.0.0.1 instead of the compose network). The engine's review sync
    then runs against it twice with the token the compose file gives the worker.
    About 3 minutes: the first start creates Label Studio's tables.
    """
    from convoice.flows.review import review_sync_flow
    from convoice.review import server as review_server

    services = compose["services"]
    postgres = _service_env(services["postgres"])
    env = _service_env(services["label-studio"])
    user, password = postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"]
    setup = [
        f"CREATE USER {user} PASSWORD '{password}'",
        f"CREATE DATABASE {postgres['POSTGRES_DB']} OWNER {user}",
        (DOCKER / "postgres-init.sql").read_text(),
    ]
    command = _dockerfile_cmd(DOCKER / "Dockerfile.labelstudio")
    assert command[:2] == ["label-studio", "start"]
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    command[command.index("--internal-host") + 1] = "127.0.0.1"  # the container's 0.0.0.0
    program = review_server.ensure_venv()  # the same pin, installed once
    data = tmp_path / "label-studio"
    data.mkdir()
    with postgres_cluster(setup) as pg_port:
        env.update(
            POSTGRE_HOST="127.0.0.1",
            POSTGRE_PORT=str(pg_port),
            LABEL_STUDIO_BASE_DATA_DIR=str(data),
            LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(data),
            LABEL_STUDIO_HOST=f"http://127.0.0.1:{port}",
            LATEST_VERSION_CHECK="false",
            COLLECT_ANALYTICS="false",
        )
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        with (data / "server.log").open("wb") as log:
            proc = subprocess.Popen(
                [str(program), *command[1:]],
                env=base | env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=data,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 900
            while not review_server.healthy(url):
                assert proc.poll() is None, review_server.tail(data / "server.log", 30)
                assert time.monotonic() < deadline, review_server.tail(data / "server.log", 30)
                time.sleep(2)
            token = env["LABEL_STUDIO_USER_TOKEN"]
            projects = httpx.get(f"{url}/api/projects", headers={"Authorization": f"Token {token}"})
            assert projects.status_code == 200, projects.text[:500]
            wrong = httpx.get(f"{url}/api/projects", headers={"Authorization": "Token " + "0" * 40})
            assert wrong.status_code == 401
            _sync_twice(compose, url, data / "store", monkeypatch, review_sync_flow)
        finally:
            review_server.stop_process(proc.pid)
        # Its tables went to PostgreSQL, not to a SQLite file in the data folder.
        tables = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(pg_port),
                "-U",
                user,
                "-d",
                env["POSTGRE_NAME"],
                "-Atc",
                "SELECT email FROM htx_user",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert tables.stdout.split() == [env["LABEL_STUDIO_USERNAME"]]
    assert not list(data.glob("*.sqlite3"))


def _sync_twice(
    compose: dict[str, Any], url: str, home: Path, monkeypatch: pytest.MonkeyPatch, sync: Any
) -> None:
    """review_sync_flow with the worker's review settings: a push, then nothing new."""
    store = Store(home)  # under Label Studio's local-files document root
    ingest(store, "rec_a", ["spk_1", "spk_2"], np.random.default_rng(3))  # one clip to review
    silence = np.zeros(60 * SAMPLE_RATE, dtype=np.float32)
    store.write_flac(Store.recording_audio_key("rec_a"), silence, SAMPLE_RATE)
    worker = _service_env(compose["services"]["worker"])
    monkeypatch.setenv("CONVOICE_REVIEW__URL", url)  # the compose value names its network
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", worker["LABEL_STUDIO_API_KEY"])
    first = sync(home=str(home))
    assert first.pull is not None and first.pull.project_id is None  # nothing pushed yet
    assert first.push is not None and (first.push.pushed, first.push.remaining) == (1, 0)
    versions = store.table_versions()
    again = sync(home=str(home))
    assert again.push.pushed == 0 and again.push.already_in_project == 1
    assert again.pull.tasks_read == 0 and store.table_versions() == versions

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["review-sync"]))
        )
    assert len(artifacts) == 2  # one per run, each saying what the halves did
    assert all("**push**: " in str(a.data) and "tasks pushed" in str(a.data) for a in artifacts)


def test_every_deployment_parameter_is_a_parameter_of_its_flow() -> None:
    import importlib
    import inspect

    prefect_yaml = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    for deployment in prefect_yaml["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        module = importlib.import_module("convoice." + path.removesuffix(".py").replace("/", "."))
        accepted = inspect.signature(getattr(module, name).fn).parameters
        unknown = set(deployment.get("parameters") or {}) - set(accepted)
        assert not unknown, f"{deployment['name']}: {unknown} are not parameters of {name}"
    loop = next(d for d in prefect_yaml["deployments"] if d["name"] == "loop")
    assert loop["parameters"]["retranscribe"] is True  # the retraining loop runs round two
