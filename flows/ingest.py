"""The labelling flow: sources in, labelled clips in the store out.

It only composes: the stages live in :mod:`convoice.tasks.stages` (and, as one
task per recording, :mod:`convoice.tasks.prepare`), the computations in
:mod:`convoice.models`, the writes in :mod:`convoice.storage`.

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

import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from convoice import logs
from convoice.config import PIPELINE_VERSION, RunnerSettings, Settings, load_settings
from convoice.engines import loaders
from convoice.flows.release import STORE_LIMIT
from convoice.media.download import remove_download
from convoice.media.errors import IngestError
from convoice.media.sources import read_sources
from convoice.models import labelling
from convoice.models.licence import attribution_line
from convoice.models.run_summary import IngestReport, RecordingOutcome, StageClock
from convoice.records import Clip, MediaItem, Provenance, Recording, SkippedItem, Source, Speaker
from convoice.storage import Store, calibration
from convoice.tasks import runner, stages
from convoice.tasks.prepare import (
    WORKER_STAGES,
    Prepared,
    forget_prefetched,
    prefetch,
    prepare_recording,
)
from convoice.training import encoder


@dataclass
class Registry:
    """The speaker registry as this run sees it (read again when the table changed)."""

    speakers: dict[str, Speaker]
    version: int | None = None

    def matrix(self) -> tuple[list[str], stages.FloatArray]:
        import numpy as np

        ids = sorted(self.speakers)
        if not ids:
            return [], np.zeros((0, 0), dtype=np.float32)
        return ids, np.stack([self.speakers[i].centroid for i in ids]).astype(np.float32)

    def refresh(self, store: Store) -> None:
        """Read the registry again if another run (or this one) committed since."""
        version = store.tables.version("speakers")
        if version != self.version or version is None:
            self.speakers = {s.speaker_id: s for s in store.speakers()}
            self.version = version


def provenance(settings: Settings) -> Provenance:
    models = {
        "segmentation": settings.diarization.segmentation_model or loaders.SEGMENTATION_NAME,
        "embedding": encoder.encoder_name(settings.encoder.use),
        "asr": loaders.whisper_name(settings.asr.model),  # a clip's row names its own
        "language_id": loaders.whisper_name(settings.asr.model),
        "vad": "silero-vad (faster-whisper 1.2.1)",
        "identity": settings.identity.encoder,  # the embedding clustering and registry use
    }
    if settings.identity.encoder == "campplus":
        models["speaker_embedding"] = encoder.campplus_name(settings.encoder.campplus)
    return Provenance(PIPELINE_VERSION, models, settings.model_settings())


@task(name="commit", cache_policy=NO_CACHE)
def commit(
    store: Store,
    item: MediaItem,
    prepared: Prepared,
    clips: list[Clip],
    speakers: list[Speaker],
    settings: Settings,
    run_id: str,
) -> bool:
    """Write the recording's rows (the done marker last); its audio is in the store already.

    Returns False when another run committed the recording first.
    """
    rid = item.recording_id
    for clip in clips:
        uri = prepared.clip_audio.get(clip.clip_id)
        if uri is None:
            raise RuntimeError(f"no audio was written for clip {clip.clip_id} of {rid}")
        clip.audio_uri = uri
    recording = Recording(
        recording_id=rid,
        url=item.url,
        source_url=item.source_url,
        title=item.title,
        uploader=item.uploader,
        uploader_url=item.uploader_url,
        upload_date=item.upload_date,
        license=item.license,
        license_raw=item.license_raw,
        license_origin=item.license_origin,
        attribution=attribution_line(item.title, item.uploader, item.url, item.license),
        duration=round(prepared.duration, 3),
        sample_rate=prepared.sample_rate,
        audio_uri=prepared.audio_uri,
        run_id=run_id,
        ingested_at=stages.now(),
        source_audio=prepared.source_audio,
    )
    return store.commit_recording(recording, clips, speakers, provenance(settings), run_id)


def label_prepared(
    item: MediaItem,
    prepared: Prepared,
    store: Store,
    registry: Registry,
    settings: Settings,
    run_id: str,
    clock: StageClock,
    locked: bool = True,
) -> RecordingOutcome | None:
    """Identify, route and commit one prepared recording; None when another run did it.

    With ``locked``, holds the ``convoice-store`` concurrency limit and reads the
    registry inside it, so concurrent ingests match against each other's speakers.
    """
    from prefect.concurrency.sync import concurrency

    rid = item.recording_id
    with concurrency(STORE_LIMIT, occupy=1) if locked else contextlib.nullcontext():
        with clock.stage("identify"):
            registry.refresh(store)
            ids, centroids = registry.matrix()
            scale = settings.similarity_scale()
            matches = labelling.identify(rid, prepared.speakers, ids, centroids, scale)
        with clock.stage("route"):
            vectors = prepared.vectors
            clips = labelling.build_clips(
                rid, prepared.seg, prepared.speakers, matches, vectors.clips,
                prepared.transcripts, settings.routing, scale,
                vectors.identity_clips if vectors.separate_identity else None,
                calibration.current(store.location),
            )  # fmt: skip
            touched = labelling.update_registry(
                rid, clips, matches, registry.speakers, stages.now()
            )
        with clock.stage("commit"):
            written = commit(store, item, prepared, clips, touched, settings, run_id)
        if not written:
            return None
        registry.speakers.update({s.speaker_id: s for s in touched})
        if locked:  # nobody else wrote the registry since we read it: no need to read it again
            registry.version = store.tables.version("speakers")
    logger = get_run_logger()
    if logger.isEnabledFor(logging.DEBUG):
        for clip in clips:
            logger.debug(
                "clip %s: %s, %s %s",
                clip.clip_id,
                clip.speaker_id,
                clip.status,
                ",".join(str(r) for r in clip.review_reasons),
                extra={"recording_id": rid, "clip_id": clip.clip_id},
            )
    remove_download(prepared.download_path)  # the store keeps the recording as FLAC now
    return RecordingOutcome.of(item, prepared.duration, clips, matches)


def _sources(
    urls: list[str], sources_file: str | None, store: Store, run_id: str, report: IngestReport
) -> list[Source]:
    """The sources to expand; a bad row of the sources file is recorded as skipped."""
    sources = [Source(u) for u in urls]
    rejected: list[SkippedItem] = []
    if sources_file:
        read = read_sources(sources_file, run_id)
        sources += read.sources
        rejected = read.rejected
    if not sources and not rejected:
        raise ValueError("nothing to ingest: give URLs or a sources file")
    if rejected:
        store.record_skipped(rejected)
    for skipped in rejected:
        _report_skip(report, skipped)
    return sources


def _report_skip(report: IngestReport, skipped: SkippedItem, **extra: str) -> None:
    """Count an expected skip and say so in ONE warning line: item, reason code, reason."""
    report.skip(skipped)
    where = f"{skipped.source_url}, line {skipped.line}: " if skipped.line is not None else ""
    item = skipped.url or skipped.source_url or "(no url)"
    get_run_logger().warning(
        "skipped %s%s: %s: %s", where, item, skipped.reason_code, skipped.reason, extra=extra
    )


def _plan(
    sources: list[Source],
    store: Store,
    settings: Settings,
    run_id: str,
    report: IngestReport,
    clock: StageClock,
) -> list[MediaItem]:
    """Expand every source; record skips; the items still to label, in order, once each."""
    logger = get_run_logger()
    done = store.done_recording_ids()
    todo: dict[str, MediaItem] = {}
    expanded: dict[tuple[str, str | None], list[MediaItem | SkippedItem]] = {}
    for source in sources:
        key = (source.url, source.declared_license)
        if key not in expanded:  # a URL listed again is not asked for again
            with clock.stage("expand"):
                expanded[key] = stages.expand(source, settings, run_id)
        for entry in expanded[key]:
            if isinstance(entry, SkippedItem):
                entry = dataclasses.replace(entry, line=source.line)
                store.record_skipped([entry])
                _report_skip(report, entry)
                continue
            rid = entry.recording_id
            if rid in done or rid in todo:
                report.already_done += 1
                logger.info(
                    "already labelled: %s (%s)", entry.title, rid, extra={"recording_id": rid}
                )
                continue
            todo[rid] = entry
    return list(todo.values())


def _consolidate(store: Store, settings: Settings, run_id: str, locked: bool) -> None:
    """Heal the registry as a whole (models/consolidate.py); a clash waits for the next run."""
    from prefect.concurrency.sync import concurrency

    from convoice.storage.store import ConcurrentCommitError
    from convoice.tasks.consolidate import consolidate_store

    logger = get_run_logger()
    with concurrency(STORE_LIMIT, occupy=1) if locked else contextlib.nullcontext():
        try:
            done = consolidate_store(store, settings.consolidation, run_id)
        except ConcurrentCommitError as err:
            logger.warning("registry not consolidated this run (%s); the next run will", err)
            return
    logger.info(done.summary())


def store_limit_exists() -> bool:
    """Whether the Prefect server has the ``convoice-store`` limit; warns once when not."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(STORE_LIMIT)
        except ObjectNotFound:
            get_run_logger().warning(
                "no %r concurrency limit on the Prefect server: commits are not kept apart "
                "from other ingests and releases (`convoice deploy` creates it)",
                STORE_LIMIT,
            )
            return False
    return True


def _watch_dask(task_runner: Any, progress: logs.Progress) -> None:
    """Forward the stage events Dask workers publish to ``progress``."""
    client = getattr(task_runner, "client", None)
    if client is None or not hasattr(client, "subscribe_topic"):
        return

    def handler(event: tuple[float, dict[str, str]]) -> None:
        msg = event[1]
        progress.event(msg["recording_id"], msg["stage"], msg["what"])

    client.subscribe_topic(logs.DASK_TOPIC, handler)


@flow(name="convoice-ingest", log_prints=True)
def ingest_flow(
    urls: list[str] | None = None,
    sources_file: str | None = None,
    home: str | None = None,
    config: str | None = None,
    runner_settings: RunnerSettings | None = None,
    log_format: str | None = None,
) -> IngestReport:
    """Ingest and label every Creative Commons item behind ``urls`` and ``sources_file``.

    ``runner_settings`` replaces the ``[runner]`` settings (where per-recording
    work runs); ``log_format`` (``text`` or ``json``) the ``$CONVOICE_LOG_FORMAT``.
    """
    fmt = logs.configure_logging(log_format)
    logger = get_run_logger()
    settings = load_settings(config, home=home)
    if runner_settings is not None:
        settings = dataclasses.replace(settings, runner=runner_settings)
    runner.check(settings.runner)
    store = Store.open(settings)
    settings = encoder.pin_encoder(settings, store)  # one encoder for the whole run
    settings = encoder.pin_identity(settings, store)  # and the registry's embedding space
    run_id = str(flow_run.get_id() or stages.now())
    report = IngestReport(run_id=run_id, home=store.root)
    clock = StageClock()
    started = time.perf_counter()
    with logs.log_context(flow_run_id=run_id):
        sources = _sources(urls or [], sources_file, store, run_id, report)
        # Models load while the sources expand (network); joined before any is used.
        loading = threading.Thread(target=loaders.preload, args=(settings,), daemon=True)
        if settings.runner.kind == "threads":
            loading.start()
        try:
            items = _plan(sources, store, settings, run_id, report, clock)
        finally:
            if loading.is_alive():
                loading.join()
        if items:
            _label_all(items, store, settings, run_id, fmt, report, clock)
            if settings.consolidation.enabled:
                with clock.stage("consolidate"):
                    _consolidate(store, settings, run_id, store_limit_exists())
    report.finish(time.perf_counter() - started, clock)
    logger.info(report.summary())
    create_markdown_artifact(
        report.markdown(), key="ingest-report", description="Ingest run summary"
    )
    return report


def _label_all(
    items: list[MediaItem],
    store: Store,
    settings: Settings,
    run_id: str,
    log_format: str,
    report: IngestReport,
    clock: StageClock,
) -> None:
    """Prepare up to a few recordings ahead on the runner; finish them here, in order."""
    logger = get_run_logger()
    registry = Registry({})
    locked = store_limit_exists()
    workdir = loaders.cache_dir() / "downloads"
    queue = iter(items)
    pending: deque[tuple[MediaItem, PrefectFuture[Prepared]]] = deque()
    # With threads, downloads run ahead in a thread of their own: the next recording's
    # download overlaps this one's compute (Dask workers download for themselves).
    ahead = settings.runner.kind == "threads"
    prefetcher = ThreadPoolExecutor(1, thread_name_prefix="convoice-download") if ahead else None
    with logs.Progress(logger) as progress, runner.task_runner(settings.runner) as task_runner:
        progress.plan([(i.recording_id, i.title) for i in items], WORKER_STAGES)
        logs.add_stage_listener(progress.event)
        _watch_dask(task_runner, progress)
        logger.info(
            "labelling %d recordings on %s (%d workers)",
            len(items), settings.runner.kind, settings.runner.workers,
        )  # fmt: skip

        def submit_next() -> bool:
            item = next(queue, None)
            if item is None:
                return False
            parameters = {
                "item": item, "settings": settings, "workdir": workdir, "run_id": run_id,
                "log_format": log_format,
            }  # fmt: skip
            with logs.log_context(recording_id=item.recording_id):
                if prefetcher is not None:
                    prefetch(prefetcher, item, workdir, settings)
                pending.append((item, task_runner.submit(prepare_recording, parameters)))
            return True

        try:
            while len(pending) < runner.in_flight(settings.runner) and submit_next():
                pass
            while pending:
                item, future = pending.popleft()
                with logs.log_context(recording_id=item.recording_id):
                    _finish_one(
                        item, future, store, registry, settings, run_id, report, clock, locked
                    )
                    progress.finish(item.recording_id, "done")
                del future  # the worker may drop the recording's results now
                submit_next()
        finally:
            logs.remove_stage_listener(progress.event)
            if prefetcher is not None:
                prefetcher.shutdown(wait=True, cancel_futures=True)
                forget_prefetched([i.recording_id for i in items])


def _finish_one(
    item: MediaItem,
    future: PrefectFuture[Prepared],
    store: Store,
    registry: Registry,
    settings: Settings,
    run_id: str,
    report: IngestReport,
    clock: StageClock,
    locked: bool,
) -> None:
    """Wait for ``item``'s worker result, then identify, route and commit it (or skip it)."""
    logger = get_run_logger()
    rid = item.recording_id
    extra = {"recording_id": rid}
    try:
        prepared = future.result()
        report.worked_on(prepared.worker)
        for name, seconds in prepared.stage_seconds.items():
            clock.add(name, seconds)
        outcome = label_prepared(item, prepared, store, registry, settings, run_id, clock, locked)
    except IngestError as err:  # expected (no speech, truncated, ...): one line, no traceback
        skipped = _as_skipped(item, err, run_id)
        store.record_skipped([skipped])
        _report_skip(report, skipped, **extra)
        return
    except Exception as err:  # a real crash: its traceback, and the batch goes on
        logger.error("crashed on %s", item.url, exc_info=True, extra=extra)
        skipped = _as_skipped(item, err, run_id)
        store.record_skipped([skipped])
        report.skip(skipped)
        return
    if outcome is None:
        report.already_done += 1
        logger.info("already labelled by another run: %s (%s)", item.title, rid, extra=extra)
        return
    report.add(outcome)
    logger.info("%s", outcome.summary(), extra=extra)


def _as_skipped(item: MediaItem, err: Exception, run_id: str) -> SkippedItem:
    if isinstance(err, IngestError):
        code, reason = err.reason_code, err.reason
    else:
        code, reason = "labelling_failed", f"{type(err).__name__}: {err}"
    return SkippedItem(item.source_url, item.url, item.title, code, reason, run_id, stages.now())
