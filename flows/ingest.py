"""The labelling flow: sources in, labelled clips in the store out.

It only composes: its plan is :mod:`convoice.flows.ingest_run`, the order
the recordings flow in :mod:`convoice.flows.ingest_pipeline`; the tasks live in
:mod:`convoice.tasks` (the per-recording work in :mod:`~convoice.tasks.prepare`,
the commit in :mod:`~convoice.tasks.commit`), the Prefect plumbing (task runner,
store lock, sequential step) in :mod:`convoice.orchestration`, the computations
in :mod:`convoice.models`, the writes in :mod:`convoice.storage`.

The registry-independent work on each recording (download, decode, segment,
embed, its own speakers, transcribe, its audio files) runs in parallel on the
task runner the ``[runner]`` settings name (threads, a local Dask cluster or a
Dask scheduler). Matching speakers against the registry, routing and the
commit of the rows then run here, one recording at a time in item order,
holding the ``convoice-store`` concurrency limit and reading the registry
afresh: so the dataset is the same whatever the runner, and two ingests see
each other's new speakers. Each item succeeds or fails on its own; a
recording is committed in one idempotent step, so a killed run started again
finishes without duplicates.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Failed, State

from convoice import logs
from convoice.config import RunnerSettings, load_settings
from convoice.flows import ingest_run
from convoice.flows.ingest_pipeline import downloads_ahead, first_downloads, label_all
from convoice.models.run_summary import IngestReport
from convoice.orchestration import runner
from convoice.orchestration.claims import Claims
from convoice.orchestration.disk_space import low_space_warning
from convoice.orchestration.prefetch import download_dir
from convoice.orchestration.preload import preloading
from convoice.orchestration.run import IngestRun
from convoice.records import now
from convoice.storage import Store
from convoice.tasks.consolidate import consolidate
from convoice.training import encoder


@flow(name="convoice-ingest", log_prints=True)
def ingest_flow(
    urls: list[str] | None = None,
    sources_file: str | None = None,
    home: str | None = None,
    config: str | None = None,
    runner_settings: RunnerSettings | None = None,
    log_format: str | None = None,
) -> IngestReport | State[IngestReport]:
    """Ingest and label every Creative Commons item behind ``urls`` and ``sources_file``.

    ``runner_settings`` replaces the ``[runner]`` settings (where per-recording
    work runs); ``log_format`` (``text`` or ``json``) the ``$CONVOICE_LOG_FORMAT``.
    The flow run ends Completed with the report, or Failed, the report its data, when
    the engine crashed on some item or a full disk stopped it (exit codes 1 and 3), so
    the Prefect UI and its automations see it. Call :func:`run_ingest` for the report
    either way.
    """
    fmt = logs.configure_logging(log_format)
    settings = load_settings(config, home=home)
    if runner_settings is not None:
        settings = dataclasses.replace(settings, runner=runner_settings)
    runner.check(settings.runner)
    store = Store.open(settings)
    settings = encoder.pin_encoder(settings, store)  # one encoder for the whole run
    settings = encoder.pin_identity(settings, store)  # and the registry's embedding space
    run_id = str(flow_run.get_id() or now())
    report = IngestReport(run_id=run_id, home=store.root)
    claims = Claims(download_dir(store.root))  # recordings another ingest labels: left to it
    run = IngestRun(store, settings, run_id, report, log_format=fmt, claims=claims)
    started = time.perf_counter()
    with logs.log_context(flow_run_id=run_id):
        if warning := low_space_warning(run.places()):  # seen before a full disk stops it
            get_run_logger().warning("%s", warning)
        labelled = False
        with ingest_run.stopping_when_full(run):  # a full disk stops the run: exit code 3
            sources = ingest_run.sources(urls or [], sources_file, run)
            prefetcher = downloads_ahead(run)  # the first downloads start as items are planned
            planned = ingest_run.Planned(
                ingest_run.plan(sources, run, first_downloads(prefetcher, run))
            )
            try:
                with preloading(settings):  # the first few listed while the models load
                    planned.ahead(runner.in_flight(settings.runner))
                labelled = bool(planned.items)
                if planned.items:
                    label_all(planned, run, prefetcher)  # later sources expand as it goes
            finally:
                if prefetcher is not None:
                    prefetcher.close([])
                claims.release_all()
        if labelled and settings.consolidation.enabled and not report.stopped:
            with run.clock.stage("consolidate"):
                consolidate(
                    store, settings.consolidation, run_id, run.locked,
                    settings.identity.pitch_veto_semitones,
                )  # fmt: skip
    report.finish(time.perf_counter() - started, run.clock)
    get_run_logger().info(report.summary())
    create_markdown_artifact(
        report.markdown(), key="ingest-report", description="Ingest run summary"
    )
    if report.exit_code:
        return Failed(message=report.failure(), data=report)
    return report


def run_ingest(**parameters: Any) -> IngestReport:
    """Run :func:`ingest_flow` with ``parameters``; its report, also when the run is Failed
    (an item crashed, a full disk stopped it: ``report.exit_code`` says which)."""
    state = ingest_flow(**parameters, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, IngestReport):
        return result
    if isinstance(result, BaseException):  # the flow itself failed: its error
        raise result
    raise RuntimeError(f"the ingest flow ended {state.name}: {state.message}")
