"""The sequential step of an ingest: match a prepared recording against the registry, commit it.

Runs in the flow's process, one recording at a time in item order, holding
the ``convoice-store`` concurrency limit and reading the registry afresh, so
two ingests see each other's new speakers. A recording is committed in one
idempotent step (its rows, the done marker last).
"""

from __future__ import annotations

import logging

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from convoice.config import PIPELINE_VERSION, Settings
from convoice.engines import loaders
from convoice.media.download import remove_download
from convoice.models import labelling
from convoice.models.licence import attribution_line
from convoice.models.registry import SpeakerMatch
from convoice.models.run_summary import RecordingOutcome
from convoice.orchestration.store_lock import store_lock
from convoice.records import Clip, MediaItem, Provenance, Recording, Speaker, now
from convoice.storage import Store, calibration
from convoice.tasks.ingest_run import IngestRun
from convoice.tasks.prepare import Prepared
from convoice.training import encoder


def provenance(settings: Settings) -> Provenance:
    """The pipeline version, the models and the settings every row of the run names."""
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


def recording_row(item: MediaItem, prepared: Prepared, run_id: str) -> Recording:
    """The recording's row: where it came from, its licence, its audio in the store."""
    return Recording(
        recording_id=item.recording_id,
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
        ingested_at=now(),
        source_audio=prepared.source_audio,
    )


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
    recording = recording_row(item, prepared, run_id)
    return store.commit_recording(recording, clips, speakers, provenance(settings), run_id)


def identify_and_route(
    rid: str, prepared: Prepared, run: IngestRun
) -> tuple[list[SpeakerMatch], list[Clip], list[Speaker]]:
    """Match the recording's speakers to the registry, build and route its clips.

    Returns the matches, the clips and the registry speakers they touch.
    """
    settings, registry, clock = run.settings, run.registry, run.clock
    with clock.stage("identify"):
        registry.refresh(run.store)
        ids, centroids = registry.matrix()
        scale = settings.similarity_scale()
        matches = labelling.identify(rid, prepared.speakers, ids, centroids, scale)
    with clock.stage("route"):
        vectors = prepared.vectors
        clips = labelling.build_clips(
            rid, prepared.seg, prepared.speakers, matches, vectors.clips,
            prepared.transcripts, settings.routing, scale,
            vectors.identity_clips if vectors.separate_identity else None,
            calibration.current(run.store.location),
        )  # fmt: skip
        touched = labelling.update_registry(rid, clips, matches, registry.speakers, now())
    return matches, clips, touched


def label_prepared(item: MediaItem, prepared: Prepared, run: IngestRun) -> RecordingOutcome | None:
    """Identify, route and commit one prepared recording; None when another run did it.

    With ``run.locked``, holds the ``convoice-store`` concurrency limit and reads the
    registry inside it, so concurrent ingests match against each other's speakers.
    """
    rid = item.recording_id
    with store_lock(run.locked):
        matches, clips, touched = identify_and_route(rid, prepared, run)
        with run.clock.stage("commit"):
            written = commit(run.store, item, prepared, clips, touched, run.settings, run.run_id)
        if not written:
            return None
        run.registry.committed(run.store, touched, run.locked)
    _log_clips(rid, clips)
    remove_download(prepared.download_path)  # the store keeps the recording as FLAC now
    return RecordingOutcome.of(item, prepared.duration, clips, matches)


def _log_clips(rid: str, clips: list[Clip]) -> None:
    """One debug line per clip: its speaker, status and review reasons."""
    logger = get_run_logger()
    if not logger.isEnabledFor(logging.DEBUG):
        return
    for clip in clips:
        logger.debug(
            "clip %s: %s, %s %s",
            clip.clip_id,
            clip.speaker_id,
            clip.status,
            ",".join(str(r) for r in clip.review_reasons),
            extra={"recording_id": rid, "clip_id": clip.clip_id},
        )
