"""Scale-out: the label flow on a Dask LocalCluster, structured logs, the store lock.

Real parts throughout: the served sample corpus, real models in real Dask
worker processes, real Prefect flow runs, concurrency limits and Delta tables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convoice import logs
from convoice.config import RunnerSettings
from convoice.flows.ingest import ingest_flow
from convoice.models.run_summary import IngestReport
from convoice.orchestration.store_lock import STORE_LIMIT
from convoice.storage import Store
from convoice.synth.serve import write_sources_csv

pytestmark = pytest.mark.usefixtures("prefect_harness")

COLUMNS = [
    "clip_id", "recording_id", "start", "end", "speaker_id", "recording_speaker", "text",
    "status", "review_reasons", "audio_uri",
]  # fmt: skip


def _dataset(home: Path) -> dict[str, Any]:
    store = Store(str(home))
    clips = store.clips().sort_by("clip_id")
    return {
        "clips": clips.select(COLUMNS).to_pylist(),
        "embeddings": np.stack(clips["embedding"].to_numpy(zero_copy_only=False)),
        "speakers": sorted((s.speaker_id, s.n_clips, s.n_recordings) for s in store.speakers()),
        "recordings": sorted(
            (r["recording_id"], r["duration"], r["audio_uri"])
            for r in store.recordings().to_pylist()
        ),
    }


@contextlib.contextmanager
def _info_logs() -> Iterator[None]:
    """Prefect's loggers at INFO, the flow's at DEBUG, for a while (tests run at WARNING)."""
    levels = {"prefect": logging.INFO, "prefect.flow_runs": logging.DEBUG}
    before = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _store_limit() -> Iterator[None]:
    """The ``convoice-store`` limit (one slot) on the test server, removed afterwards."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=STORE_LIMIT, limit=1)
        )
    try:
        yield
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(STORE_LIMIT)


@dataclass
class Runs:
    home: Path
    voices: int
    single: IngestReport
    single_log: list[dict[str, Any]]
    dask: IngestReport
    active_slots_after: int


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, small_corpus, served_corpus) -> Runs:  # type: ignore[no-untyped-def]
    """Two episodes (one voice in both) labelled twice: in this process (JSON logs, no
    store limit), then on a two-worker LocalCluster holding a real ``convoice-store`` limit."""
    from prefect.client.orchestration import get_client

    home = tmp_path_factory.mktemp("scale")
    two = dataclasses.replace(small_corpus, episodes=small_corpus.episodes[:2])
    sources = write_sources_csv(two, served_corpus, home / "sources.csv")
    err = io.StringIO()
    try:
        with _info_logs(), contextlib.redirect_stderr(err):
            single = ingest_flow(
                sources_file=str(sources),
                home=str(home / "single"),
                runner_settings=RunnerSettings(kind="threads", workers=1),
                log_format="json",
            )
    finally:
        logs.configure_logging("text")
    lines = [json.loads(x) for x in err.getvalue().splitlines() if x.startswith("{")]
    with _store_limit():
        dask = ingest_flow(
            sources_file=str(sources),
            home=str(home / "dask"),
            runner_settings=RunnerSettings(kind="dask-local", workers=2),
        )
        with get_client(sync_client=True) as client:
            active = client.read_global_concurrency_limit_by_name(STORE_LIMIT).active_slots
    voices = len({v for e in two.episodes for v in e.speakers})
    return Runs(home, voices, single, lines, dask, active)


def test_a_local_dask_cluster_gives_the_single_process_dataset(runs: Runs) -> None:
    single, dask = runs.single, runs.dask
    assert len(single.recordings) == len(dask.recordings) == 2
    assert not single.skipped and not dask.skipped
    assert len(dask.workers) == 2, dask.workers  # both worker processes prepared recordings
    assert not any(w.endswith(f":{os.getpid()}") for w in dask.workers)  # none ran here
    assert single.workers == [w for w in single.workers if w.endswith(f":{os.getpid()}")]
    a, b = _dataset(runs.home / "single"), _dataset(runs.home / "dask")
    assert len(a["clips"]) >= 8
    assert a["clips"] == b["clips"]  # ids, speakers, texts, statuses, reasons, audio keys
    assert a["speakers"] == b["speakers"] and len(a["speakers"]) == runs.voices == 3
    assert a["recordings"] == b["recordings"]
    np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=1e-4)
    for uri in [c["audio_uri"] for c in b["clips"]] + [r[2] for r in b["recordings"]]:
        assert (runs.home / "dask" / uri).is_file()
    assert set(dask.stage_seconds) >= {"download", "segment", "embed", "transcribe", "commit"}


def test_json_log_lines_carry_the_run_and_recording_ids(runs: Runs) -> None:
    lines, report = runs.single_log, runs.single
    assert lines, "no JSON log lines"
    mine = [x for x in lines if x["logger"].startswith(("prefect.flow_runs", "prefect.task_runs"))]
    assert len(mine) >= 10
    assert all(x["flow_run_id"] == report.run_id for x in mine), mine[:3]
    recording_ids = {r.recording_id for r in report.recordings}
    seen = {x["recording_id"] for x in mine if x["recording_id"]}
    assert seen == recording_ids
    per_recording = [x for x in mine if (x.get("task_run_name") or "").startswith(
        ("prepare-recording", "download", "decode", "segment", "embed", "transcribe", "commit")
    )]  # fmt: skip
    assert per_recording and all(x["recording_id"] in recording_ids for x in per_recording)
    summaries = [x for x in mine if " clips (" in x["message"] and x["recording_id"]]
    assert len(summaries) == 2  # the per-recording outcome lines
    clips = Store(str(runs.home / "single")).clips().to_pylist()
    about_clips = {x["clip_id"]: x["recording_id"] for x in mine if x["clip_id"]}
    assert about_clips == {c["clip_id"]: c["recording_id"] for c in clips}  # one debug line each


def test_a_missing_store_limit_is_said_once_and_a_real_one_is_released(runs: Runs) -> None:
    said = [x for x in runs.single_log if STORE_LIMIT in x["message"]]
    assert len(said) == 1 and said[0]["flow_run_id"] == runs.single.run_id
    assert said[0]["level"] == "INFO"  # the store's lock file keeps commits apart: no warning
    assert "lock file on this machine" in said[0]["message"]
    assert runs.active_slots_after == 0


def test_runner_settings_choose_the_task_runner_and_bad_ones_are_refused() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from convoice.config import ConfigError
    from convoice.orchestration import runner

    assert isinstance(runner.task_runner(RunnerSettings(workers=3)), ThreadPoolTaskRunner)
    remote = runner.task_runner(RunnerSettings(kind="dask", address="tcp://10.0.0.5:8786"))
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = runner.task_runner(RunnerSettings(kind="dask-local", workers=2))
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 2
    assert runner.model_threads(RunnerSettings(kind="dask-local", workers=2), cores=8) == 4
    assert runner.model_threads(RunnerSettings(kind="dask-local", workers=1), cores=8) == 8
    for bad in (
        RunnerSettings(kind="spark"),
        RunnerSettings(kind="dask"),  # no address
        RunnerSettings(kind="dask-local", workers=0),
    ):
        with pytest.raises(ConfigError):
            runner.task_runner(bad)
