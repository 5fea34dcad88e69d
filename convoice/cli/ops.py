"""Running Con Voice as a service: ``convoice deploy`` and ``convoice dataset report``.

``deploy`` registers the Prefect deployments of ``deployments/prefect.yaml``
(nightly ingest, review sync every 5 minutes, weekly release, weekly
retraining loop) against the server at ``$PREFECT_API_URL``,
after making the ``convoice`` process work pool, its ``convoice-store`` queue
and the ``convoice-store`` global concurrency limit when they are missing.
Heavy libraries (Prefect, matplotlib) are imported inside the commands.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import convoice
from convoice.cli.common import HomeOption, fail
from convoice.orchestration.store_lock import STORE_LIMIT  # the queue and the limit share the name

ops_app = typer.Typer(
    no_args_is_help=True,
    help="Run Con Voice as a service: Prefect deployments, release reports.",
)
console = Console()

POOL = "convoice"
PREFECT_FILE = Path("deployments", "prefect.yaml")
HEALTH_TIMEOUT_S = 10.0


class DeployError(RuntimeError):
    """The deployments could not be registered; the message says what to do."""


@dataclass(frozen=True)
class DeployTarget:
    """What ``convoice deploy`` registers, where, for which store."""

    api_url: str
    repo: Path  # the checkout holding deployments/prefect.yaml and flows/
    home: str  # the store the deployments' runs use
    sources: str  # the CSV the nightly ingest and the loop read


def default_repo() -> Path:
    """The checkout this package runs from (``convoice/`` lives in its root)."""
    return convoice.checkout()


def resolve_api_url(api_url: str | None) -> str:
    """``api_url``, else Prefect's own setting (env or profile); DeployError when none."""
    if not api_url:
        from prefect.settings import PREFECT_API_URL

        api_url = PREFECT_API_URL.value()
    if not api_url:
        raise DeployError(
            "no Prefect server is configured: start one (`prefect server start`) and set"
            " PREFECT_API_URL=http://127.0.0.1:4200/api, or pass --api-url"
        )
    return str(api_url).rstrip("/")


def check_server(api_url: str) -> None:
    """DeployError unless a Prefect API answers ``/health`` at ``api_url``."""
    import httpx

    try:
        response = httpx.get(f"{api_url}/health", timeout=HEALTH_TIMEOUT_S)
    except httpx.HTTPError as err:
        raise DeployError(
            f"no Prefect server answers at {api_url} ({type(err).__name__}: {err}); start one"
            " with `prefect server start` or fix PREFECT_API_URL"
        ) from err
    if response.status_code != 200:
        raise DeployError(
            f"{api_url}/health answered HTTP {response.status_code}: is {api_url} a Prefect API"
            " URL? It ends in /api, e.g. http://127.0.0.1:4200/api"
        )


def ensure_pool(api_url: str, pool: str = POOL, limit_name: str = STORE_LIMIT) -> list[str]:
    """Create the process work pool, its limit-1 queue and the global limit; what was made."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    made = []
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        try:
            found = client.read_work_pool(pool)
            if found.type != ProcessWorker.type:
                raise DeployError(
                    f"work pool {pool!r} exists with type {found.type!r}, not process"
                )
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=pool, type=ProcessWorker.type, base_job_template=template)
            )
            made.append(f"work pool {pool} (process)")
        try:
            queue = client.read_work_queue_by_name(limit_name, work_pool_name=pool)
            if queue.concurrency_limit != 1:
                client.update_work_queue(queue.id, concurrency_limit=1)
                made.append(f"limit 1 on work queue {limit_name}")
        except ObjectNotFound:
            client.create_work_queue(limit_name, work_pool_name=pool, concurrency_limit=1)
            made.append(f"work queue {limit_name} (one run at a time)")
        try:
            client.read_global_concurrency_limit_by_name(limit_name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=limit_name, limit=1)
            )
            made.append(f"global concurrency limit {limit_name} (1 slot)")
    return made


def prefect_command() -> list[str]:
    """The ``prefect`` CLI of this interpreter's environment."""
    script = Path(sys.executable).with_name("prefect")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "prefect"]


def run_deploy(target: DeployTarget) -> None:
    """``prefect --no-prompt deploy --all`` from the repository root (output shown as it comes)."""
    prefect_file = target.repo / PREFECT_FILE
    if not prefect_file.is_file():
        raise DeployError(f"{prefect_file} not found: pass --repo, a checkout of Con Voice")
    env = {
        **os.environ,
        "PREFECT_API_URL": target.api_url,
        "CONVOICE_HOME": target.home,
        "CONVOICE_SOURCES": target.sources,
    }
    command = [*prefect_command(), "--no-prompt", "deploy", "--all"]
    command += ["--prefect-file", str(PREFECT_FILE)]
    done = subprocess.run(command, cwd=target.repo, env=env, check=False)
    if done.returncode != 0:
        raise DeployError(f"`{' '.join(command)}` failed (exit {done.returncode}); see above")


def deploy_target(
    api_url: str, home: str | None, sources: str | None, repo: Path | None
) -> DeployTarget:
    """Absolute paths for everything a worker elsewhere must find."""
    from convoice.config import default_home
    from convoice.storage.location import is_local_root

    root = home or default_home()
    if is_local_root(root):
        root = str(Path(root).expanduser().resolve())
    if sources is None:
        sources = str(Path(root, "sources.csv")) if is_local_root(root) else "sources.csv"
    elif is_local_root(sources):
        sources = str(Path(sources).expanduser().resolve())
    return DeployTarget(api_url, (repo or default_repo()).resolve(), root, sources)


@ops_app.command("deploy")
def deploy_command(
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url", help="Prefect API, e.g. http://127.0.0.1:4200/api (default: its setting)."
        ),
    ] = None,
    home: HomeOption = None,
    sources: Annotated[
        str | None,
        typer.Option(
            "--sources",
            envvar="CONVOICE_SOURCES",
            help="CSV (url,license[,note]) the ingest and loop read (default: HOME/sources.csv).",
        ),
    ] = None,
    repo: Annotated[
        Path | None, typer.Option(help="Checkout holding deployments/prefect.yaml.")
    ] = None,
) -> None:
    """Register the engine's deployments (deployments/prefect.yaml) on a Prefect server."""
    try:
        url = resolve_api_url(api_url)
        check_server(url)
        target = deploy_target(url, home, sources, repo)
        for what in ensure_pool(url):
            console.print(f"created {what}")
        run_deploy(target)
    except DeployError as err:
        fail(err, 1)
    console.print(
        f"[bold]deployed[/] to {url} for the store {target.home}; start a worker where the code"
        f" and the store are:\n  PREFECT_API_URL={url} prefect worker start --pool {POOL}"
    )


@ops_app.command("report")
def report_command(
    version: Annotated[str, typer.Argument(help="v3, 3 or a tag.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file (default: ./report-<version>.html).")
    ] = None,
    home: HomeOption = None,
    samples: Annotated[int, typer.Option(help="Clips shown with audio and spectrograms.")] = 4,
) -> None:
    """Write an HTML report of a release: hours, confidences, review rates, embeddings, audio."""
    from convoice.config import load_settings
    from convoice.release_page import release_reliability, write_report
    from convoice.storage import Store, UnknownReleaseError

    store = Store.open(load_settings(home=home))
    try:
        release = store.resolve(version)
    except UnknownReleaseError as err:
        fail(err)
    path = write_report(store, release, out or Path(f"report-{release.name}.html"), samples)
    console.print(release_reliability(store, release), markup=False)
    console.print(f"report of {release.name} ({release.n_clips} clips) written to {path}")
