"""The registry-independent work on one recording, as one task a worker runs.

Download, decode, segment, embed, cluster the recording's own speakers,
write its audio (the recording and its clips) into the store, then
transcribe the clips from their own samples. The downloaded WAV is read a
block or a clip at a time (:class:`~convoice.media.audio.StreamedAudio`): no
stage holds the whole recording, so memory does not grow with its length.
What it hands back is small (no samples), so a Dask worker sends little to
the flow, which then matches speakers against the registry and commits the
rows one recording at a time, in order.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from convoice import logs
from convoice.config import Settings
from convoice.engines import lanes
from convoice.media import download
from convoice.media.audio import AnyAudio
from convoice.media.clips import clips_only
from convoice.models import pitch
from convoice.models.clip_embeddings import Embeddings
from convoice.models.diarize import Segmentation
from convoice.models.from_settings import own_speakers
from convoice.models.labelling import RecordingSpeakers
from convoice.orchestration import pipeline
from convoice.orchestration.memory import release_freed_memory
from convoice.orchestration.prefetch import take_prefetched
from convoice.records import MediaItem, Transcript
from convoice.storage import Store
from convoice.storage.channel_vocabulary import channel_words
from convoice.storage.clip_audio import write_audio
from convoice.tasks import stages
from convoice.tasks.retranscribe import ingest_round_two
from convoice.training import encoder

WORKER_STAGES = ["download", "decode", "segment", "embed", "identify", "commit", "transcribe"]
"""Stage names a worker reports (``identify``: the recording's own speakers;
``commit``: its audio files), the names :class:`~convoice.models.run_summary.StageClock` uses."""


@dataclass(frozen=True)
class Prepared:
    """One recording, labelled as far as it goes without the speaker registry."""

    download_path: Path
    duration: float
    sample_rate: int
    audio_uri: str  # the recording's FLAC in the store
    seg: Segmentation
    vectors: Embeddings
    speakers: RecordingSpeakers
    transcripts: list[Transcript | None]
    clip_audio: dict[str, str]  # clip id -> its FLAC in the store
    stage_seconds: dict[str, float]
    worker: str  # host:pid of the process that did the work
    source_audio: str = ""  # the original's audio track that was decoded
    stage_spans: tuple[tuple[str, float, float], ...] = ()  # (stage, start, end), epoch s
    clip_f0: tuple[float, ...] = ()  # per clip region of ``seg``, its median F0 (Hz; NaN unknown)


def _download(item: MediaItem, workdir: Path, settings: Settings) -> Path:
    started = take_prefetched(item.recording_id)
    if started is not None:
        return started.result()  # its error, if any, is this recording's
    return stages.fetch(item, workdir, settings)


def _embed(
    audio: AnyAudio, seg: Segmentation, settings: Settings
) -> tuple[Segmentation, Embeddings]:
    """The clips' embeddings, with the store's encoders (fine-tuned ones when promoted), and
    the clips cut where their voice changes (``[identity] two_voice_cut``)."""
    store = Store.open(settings)
    weights = encoder.encoder_weights(settings, store)
    return stages.embed_and_cut(
        audio, seg, settings, weights, encoder.identity_weights(settings, store)
    )


@task(name="prepare-recording", cache_policy=NO_CACHE)
def prepare_recording(
    item: MediaItem, settings: Settings, workdir: Path, run_id: str, log_format: str = "text"
) -> Prepared:
    """Everything about ``item`` that does not need the registry; audio goes to the store.

    Transcription waits for the recording's turn (:data:`~convoice.orchestration.pipeline.TURNS`,
    when the flow queued it), and the compute before it for the previous recording to
    reach Whisper: what comes before it overlaps the previous recording's transcription.
    """
    logs.configure_logging(log_format)  # a Dask worker process starts with Prefect's
    try:
        return _prepare(item, settings, workdir, run_id)
    finally:
        pipeline.TURNS.leave(item.recording_id)  # failed before its turn: the next one goes


def _prepare(item: MediaItem, settings: Settings, workdir: Path, run_id: str) -> Prepared:
    rid = item.recording_id
    seconds: dict[str, float] = {}
    spans: list[tuple[str, float, float]] = []
    with logs.log_context(flow_run_id=run_id, recording_id=rid):
        with logs.stage(rid, "download", seconds, spans):
            path = _download(item, workdir, settings)
        pipeline.TURNS.prepare_after(rid)  # the one before it has both cores until Whisper
        # The compute stages run as plain calls inside this task: a nested Prefect task
        # run costs time per call and its state keeps its result (the whole
        # recording's samples) alive until this task ends, whatever is deleted here.
        with logs.stage(rid, "decode", seconds, spans):
            audio = stages.load_audio.fn(path)
        with logs.stage(rid, "segment", seconds, spans):
            seg = stages.segment.fn(audio, settings)
        with logs.stage(rid, "embed", seconds, spans):
            seg, vectors = _embed(audio, seg, settings)
            f0 = pitch.clip_f0(audio.samples, [c.region for c in seg.clips])  # ~0.4 % of it
        with logs.stage(rid, "identify", seconds, spans):  # the recording's own speakers
            speakers = own_speakers(seg, vectors, settings)
        with logs.stage(rid, "commit", seconds, spans):  # the audio files; rows come in order
            uri, clip_audio = write_audio(Store.open(settings), rid, audio, seg, speakers, vectors)
        duration, rate = audio.duration, audio.sample_rate
        # The clips wait for Whisper's turn on disk (a float32 WAV, the same values), read
        # back clip by clip: a long recording held ahead of the one transcribed keeps no
        # samples in memory, so two of them fit the memory of one.
        clips_path = workdir / f"{rid}.clips.wav"
        try:
            clips_audio, clips_seg = clips_only(audio, seg, clips_path)
            del audio  # transcription needs the clips only (a decoded non-WAV is let go here)
            release_freed_memory()  # what segment and embed freed, before Whisper's peak
            alone = lanes.alone(clips_audio.duration)  # a long one: memory
            with pipeline.TURNS.turn(rid, alone), logs.stage(rid, "transcribe", seconds, spans):
                words, taught = channel_words(item, settings)
                transcripts = stages.transcribe.fn(
                    clips_audio, clips_seg, settings, speakers.clip_labels, words
                )
                if words:
                    transcripts = ingest_round_two(transcripts, settings, words, taught)
        finally:
            clips_path.unlink(missing_ok=True)
    return Prepared(
        download_path=path,
        duration=duration,
        sample_rate=rate,
        audio_uri=uri,
        seg=seg,
        vectors=vectors,
        speakers=speakers,
        transcripts=transcripts,
        clip_audio=clip_audio,
        stage_seconds=seconds,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        source_audio=download.source_audio(path),
        stage_spans=tuple(spans),
        clip_f0=f0,
    )
