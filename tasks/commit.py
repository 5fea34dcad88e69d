"""The commit of one ingested recording as a task: its rows, the done marker last.

Called by the sequential step of an ingest (:mod:`convoice.orchestration.sequential`),
one recording at a time, holding the ``convoice-store`` concurrency limit.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from convoice.config import PIPELINE_VERSION, Settings
from convoice.engines import loaders
from convoice.models.licence import attribution_line
from convoice.records import Clip, MediaItem, Provenance, Recording, Speaker, now
from convoice.storage import Store
from convoice.tasks.prepare import Prepared
from convoice.training import encoder


def _provenance(settings: Settings) -> Provenance:
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


def _recording_row(item: MediaItem, prepared: Prepared, run_id: str) -> Recording:
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
        attribution=attribution_line(
            item.title, item.uploader, item.attribution_link, item.license
        ),
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
    recording = _recording_row(item, prepared, run_id)
    return store.commit_recording(recording, clips, speakers, _provenance(settings), run_id)
