"""The labelling flow: sources in, labelled clips in the store out.

It only composes: the stages live in :mod:`convoice.tasks.stages`, the
computations in :mod:`convoice.models`, the writes in :mod:`convoice.storage`.
Each item succeeds or fails on its own; a recording is committed in one
idempotent step, so a killed run started again finishes without duplicates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from convoice.config import PIPELINE_VERSION, Settings, load_settings
from convoice.flows.report import IngestReport, RecordingOutcome, StageClock
from convoice.models import labelling
from convoice.models.licence import attribution_line
from convoice.models.records import (
    Clip,
    MediaItem,
    Provenance,
    Recording,
    SkippedItem,
    Source,
    Speaker,
)
from convoice.storage import Store
from convoice.tasks import loaders, stages
from convoice.tasks.audio import Audio
from convoice.tasks.download import IngestError, read_sources


@dataclass
class Registry:
    """The speaker registry as this run sees it (updated after every recording)."""

    speakers: dict[str, Speaker]

    def matrix(self) -> tuple[list[str], stages.FloatArray]:
        import numpy as np

        ids = sorted(self.speakers)
        if not ids:
            return [], np.zeros((0, 256), dtype=np.float32)
        return ids, np.stack([self.speakers[i].centroid for i in ids]).astype(np.float32)


def provenance(settings: Settings) -> Provenance:
    models = {
        "segmentation": settings.diarization.segmentation_model or loaders.SEGMENTATION_NAME,
        "embedding": loaders.EMBEDDING_NAME,
        "asr": settings.asr.model or loaders.WHISPER_NAME,
        "vad": "silero-vad (faster-whisper 1.2.1)",
    }
    return Provenance(PIPELINE_VERSION, models, settings.model_settings())


@task(name="commit", cache_policy=NO_CACHE)
def commit(
    store: Store,
    item: MediaItem,
    audio: Audio,
    clips: list[Clip],
    speakers: list[Speaker],
    settings: Settings,
    run_id: str,
) -> Recording:
    """Write the recording's and clips' audio, then its rows (the done marker last)."""
    rid = item.recording_id
    for clip in clips:
        piece = audio.samples[
            int(clip.start * audio.sample_rate) : int(clip.end * audio.sample_rate)
        ]
        clip.audio_uri = store.write_flac(
            store.clip_audio_key(rid, clip.clip_id), piece, audio.sample_rate
        )
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
        duration=round(audio.duration, 3),
        sample_rate=audio.sample_rate,
        audio_uri=store.write_flac(
            store.recording_audio_key(rid), audio.samples, audio.sample_rate
        ),
        run_id=run_id,
        ingested_at=stages.now(),
    )
    store.commit_recording(recording, clips, speakers, provenance(settings), run_id)
    return recording


def label_item(
    item: MediaItem,
    store: Store,
    registry: Registry,
    settings: Settings,
    workdir: Path,
    run_id: str,
    clock: StageClock,
) -> RecordingOutcome:
    """Download, segment, embed, identify, transcribe, route and commit one item."""
    rid = item.recording_id
    with clock.stage("download"):
        path = stages.fetch(item, workdir, settings)
    with clock.stage("decode"):
        audio = stages.load_audio(path)
    with clock.stage("segment"):
        seg = stages.segment(audio, settings)
    with clock.stage("embed"):
        vectors = stages.embed_speakers(audio, seg)
    with clock.stage("identify"):
        ids, centroids = registry.matrix()
        speakers, matches = stages.identify(rid, seg, vectors, ids, centroids, settings)
    with clock.stage("transcribe"):
        transcripts = stages.transcribe(audio, seg, settings)
    with clock.stage("route"):
        clips = labelling.build_clips(
            rid, seg, speakers, matches, vectors.clips, transcripts, settings.routing
        )
        touched = labelling.update_registry(rid, clips, matches, registry.speakers, stages.now())
    with clock.stage("commit"):
        commit(store, item, audio, clips, touched, settings, run_id)
    path.unlink(missing_ok=True)  # the store keeps the recording as FLAC now
    registry.speakers.update({s.speaker_id: s for s in touched})
    return RecordingOutcome.of(item, audio.duration, clips, matches)


def _sources(urls: list[str], sources_file: str | None) -> list[Source]:
    sources = [Source(u) for u in urls]
    if sources_file:
        sources += read_sources(sources_file)
    if not sources:
        raise ValueError("nothing to ingest: give URLs or a sources file")
    return sources


@flow(name="convoice-ingest", log_prints=True)
def ingest_flow(
    urls: list[str] | None = None,
    sources_file: str | None = None,
    home: str | None = None,
    config: str | None = None,
) -> IngestReport:
    """Ingest and label every Creative Commons item behind ``urls`` and ``sources_file``."""
    logger = get_run_logger()
    settings = load_settings(config, home=home) if home else load_settings(config)
    store = Store.open(settings)
    run_id = str(flow_run.get_id() or stages.now())
    workdir = loaders.cache_dir() / "downloads"
    report = IngestReport(run_id=run_id, home=store.root)
    clock = StageClock()
    started = time.perf_counter()
    done = store.done_recording_ids()
    registry = Registry({s.speaker_id: s for s in store.speakers()})
    for source in _sources(urls or [], sources_file):
        with clock.stage("expand"):
            found = stages.expand(source, settings, run_id)
        for entry in found:
            if isinstance(entry, SkippedItem):
                store.record_skipped([entry])
                report.skip(entry)
                logger.info("skipped %s: %s", entry.url or entry.source_url, entry.reason)
                continue
            if entry.recording_id in done:
                report.already_done += 1
                logger.info("already labelled: %s (%s)", entry.title, entry.recording_id)
                continue
            logger.info("labelling %s (%s)", entry.title, entry.url)
            try:
                outcome = label_item(entry, store, registry, settings, workdir, run_id, clock)
            except Exception as err:  # one bad item never stops the batch
                skipped = _as_skipped(entry, err, run_id)
                store.record_skipped([skipped])
                report.skip(skipped)
                logger.warning("skipped %s: %s", entry.url, skipped.reason)
                continue
            done.add(entry.recording_id)
            report.add(outcome)
            logger.info(outcome.summary())
    report.finish(time.perf_counter() - started, clock)
    logger.info(report.summary())
    create_markdown_artifact(
        report.markdown(), key="ingest-report", description="Ingest run summary"
    )
    return report


def _as_skipped(item: MediaItem, err: Exception, run_id: str) -> SkippedItem:
    if isinstance(err, IngestError):
        code, reason = err.reason_code, err.reason
    else:
        code, reason = "labelling_failed", f"{type(err).__name__}: {err}"
    return SkippedItem(item.source_url, item.url, item.title, code, reason, run_id, stages.now())
