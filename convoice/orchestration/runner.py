"""Where per-recording work runs: the Prefect task runner the ``[runner]`` settings name.

``threads``: a thread pool in the flow's process. ``dask-local``: a Dask
``LocalCluster`` of ``workers`` processes started for the run and stopped
after it. ``dask``: an existing Dask scheduler at ``address`` (its workers
need this package, the models and access to the store).

Models are loaded once per process (:mod:`convoice.engines.loaders` caches
them), so each Dask worker loads them on its first recording and keeps them.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from convoice.config import ConfigError, RunnerKind, RunnerSettings
from convoice.orchestration.pipeline import SLOTS

KINDS = tuple(RunnerKind)


def check(cfg: RunnerSettings) -> None:
    """ConfigError when the runner settings cannot work."""
    if cfg.kind not in KINDS:
        raise ConfigError(f"runner.kind must be one of {', '.join(KINDS)}, not {cfg.kind!r}")
    if cfg.workers < 1 or cfg.threads_per_worker < 1:
        raise ConfigError(
            f"runner.workers and runner.threads_per_worker must be >= 1, "
            f"not {cfg.workers} and {cfg.threads_per_worker}"
        )
    if cfg.kind == "dask" and not cfg.address:
        raise ConfigError("runner.kind = 'dask' needs runner.address (tcp://host:8786)")


def model_threads(cfg: RunnerSettings, cores: int | None = None) -> int:
    """Threads each worker process gives torch and CTranslate2: the cores shared out.

    One local worker uses every core, like the single-process run; two share
    them, so the machine is not oversubscribed.
    """
    cores = cores or os.cpu_count() or 1
    if cfg.kind == "threads":
        return cores
    return max(1, cores // (cfg.workers * cfg.threads_per_worker))


def pipelined(cfg: RunnerSettings) -> bool:
    """Whether the next recording is prepared beside this one's transcription (threads)."""
    return cfg.kind == "threads" and cfg.pipeline


def _pipeline_threads(cfg: RunnerSettings) -> int:
    """Threads a pipelined runner has besides its workers': one per extra Whisper slot, and
    one that prepares the next recording."""
    return SLOTS if pipelined(cfg) else 0


def in_flight(cfg: RunnerSettings) -> int:
    """Recordings submitted ahead of the sequential step (bounds memory: audio is large).

    Pipelined, :data:`~convoice.orchestration.pipeline.SLOTS` more: the recordings
    transcribed side by side, and one submitted while the first of them is committed, so
    it starts (its download ahead, then its compute beside their transcription) as soon
    as a thread is free, not after the commit; it waits in the pool's queue until then,
    and its compute waits for the ones before it to reach Whisper
    (:mod:`convoice.orchestration.pipeline`), so at most one recording's clips wait.
    """
    return 2 * cfg.workers * cfg.threads_per_worker + _pipeline_threads(cfg)


def task_runner(cfg: RunnerSettings) -> TaskRunner[Any]:
    """A new, not yet started, task runner for ``cfg`` (enter it with ``with``)."""
    check(cfg)
    if cfg.kind == "threads":
        # Pipelined: recordings transcribed side by side, and one more thread prepares the
        # next recording meanwhile.
        threads = cfg.workers * cfg.threads_per_worker + _pipeline_threads(cfg)
        return ThreadPoolTaskRunner(max_workers=threads)
    from prefect_dask import DaskTaskRunner

    if cfg.kind == "dask":
        return DaskTaskRunner(address=cfg.address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster", cluster_kwargs=local_cluster_kwargs(cfg)
    )


def local_cluster_kwargs(cfg: RunnerSettings) -> dict[str, Any]:
    """Arguments of the ``distributed.LocalCluster`` a ``dask-local`` runner starts."""
    threads = str(model_threads(cfg))
    return {
        "n_workers": cfg.workers,
        "threads_per_worker": cfg.threads_per_worker,
        "processes": True,
        "dashboard_address": None,  # no web server; machines are shared
        "env": {"CONVOICE_TORCH_THREADS": threads, "OMP_NUM_THREADS": threads},
    }
