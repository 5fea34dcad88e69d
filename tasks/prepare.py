"""The registry-independent work on one recording, as one task a worker runs.

Download, decode, segment, embed, cluster the recording's own speakers,
write its audio (the recording and its clips) into the store, then
transcribe the clips from their own samples (the whole recording is let go
first: a long one is not held twice). What it hands back is small (no
samples), so a Dask worker sends little to the flow, which then matches
speakers against the registry and commits the rows one recording at a time,
in order.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import socket
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from convoice import logs
from convoice.config import Settings
from convoice.media import download
from convoice.media.audio import Audio
from convoice.models import labelling
from convoice.models.clip_embeddings import Embeddings
from convoice.models.diarize import ClipRegion, Segmentation
from convoice.models.labelling import RecordingSpeakers
from convoice.records import MediaItem, Region, Transcript
from convoice.storage import Store
from convoice.tasks import stages
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


_PREFETCHED: dict[str, Future[Path]] = {}
"""Downloads the flow started ahead in this process (threads runner), by recording id."""


def prefetch(executor: Executor, item: MediaItem, workdir: Path, settings: Settings) -> None:
    """Start ``item``'s download (the ``download`` task, retries and all) on ``executor``.

    The flow calls this when it submits the recording, so the next recording's
    download overlaps the current one's compute; :func:`prepare_recording` then
    waits for it instead of downloading. Only for workers in this process.
    """
    context = contextvars.copy_context()  # the flow run's, so the task run belongs to it
    future = executor.submit(context.run, stages.fetch, item, workdir, settings)
    _PREFETCHED[item.recording_id] = future


def forget_prefetched(recording_ids: list[str]) -> None:
    """Drop downloads started ahead that no worker took (a run that stopped early)."""
    for rid in recording_ids:
        _PREFETCHED.pop(rid, None)


def _download(item: MediaItem, workdir: Path, settings: Settings) -> Path:
    started = _PREFETCHED.pop(item.recording_id, None)
    if started is not None:
        return started.result()  # its error, if any, is this recording's
    return stages.fetch(item, workdir, settings)


def _with_worker_threads(settings: Settings) -> Settings:
    """Give CTranslate2 the threads this worker process was given (``CONVOICE_TORCH_THREADS``)."""
    threads = int(os.environ.get("CONVOICE_TORCH_THREADS", "0"))
    if settings.asr.cpu_threads or not threads:
        return settings
    return dataclasses.replace(settings, asr=dataclasses.replace(settings.asr, cpu_threads=threads))


def write_audio(
    store: Store, recording_id: str, audio: Audio, seg: Segmentation, speakers: RecordingSpeakers,
    vectors: Embeddings,
) -> tuple[str, dict[str, str]]:  # fmt: skip
    """Write the recording's FLAC and one FLAC per clip that will be kept."""
    rate = audio.sample_rate
    clip_audio: dict[str, str] = {}
    for region, emb, vec, label in zip(
        seg.clips, vectors.clips, vectors.identity_clips, speakers.clip_labels.tolist(),
        strict=True,
    ):  # fmt: skip
        if not labelling.keeps_clip(label, emb, vec):  # build_clips leaves these out
            continue
        start, end = region.region.start, region.region.end
        cid = labelling.clip_id(recording_id, start, end)
        piece = audio.samples[int(round(start, 3) * rate) : int(round(end, 3) * rate)]
        clip_audio[cid] = store.write_flac(store.clip_audio_key(recording_id, cid), piece, rate)
    uri = store.write_flac(store.recording_audio_key(recording_id), audio.samples, rate)
    return uri, clip_audio


def clips_only(audio: Audio, seg: Segmentation) -> tuple[Audio, Segmentation]:
    """The clips' samples end to end, and ``seg`` with its clip regions moved onto them.

    What transcription needs of a recording: for three hours of audio with ten
    minutes of clips, 40 MB instead of 690 MB, so the whole recording need not be
    held while Whisper runs. The clips' own lengths and order are kept.
    """
    rate = audio.sample_rate
    guard = np.zeros(rate // 100, dtype=np.float32)  # 10 ms apart: no sample bleeds over
    pieces: list[stages.FloatArray] = []
    clips: list[ClipRegion] = []
    cursor = 0
    for clip in seg.clips:
        piece = audio.samples[int(clip.region.start * rate) : int(clip.region.end * rate)]
        start = cursor / rate
        clips.append(dataclasses.replace(clip, region=Region(start, start + len(piece) / rate)))
        pieces += [piece, guard]
        cursor += len(piece) + len(guard)
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return Audio(samples.astype(np.float32, copy=False), rate), dataclasses.replace(
        seg, clips=clips
    )


def channel_vocabulary(item: MediaItem, settings: Settings) -> list[str]:
    """The words learned for ``item``'s channel (and the whole store): a new ingest uses them."""
    from convoice.models.vocabulary import active_for
    from convoice.records import channel_of
    from convoice.storage.vocabulary import read_terms

    channel = channel_of(item.uploader, item.uploader_url, item.source_url)
    return active_for(read_terms(Store.open(settings)), channel, settings.asr.vocabulary_size)


def _embed(audio: Audio, seg: Segmentation, settings: Settings) -> Embeddings:
    """The clips' embeddings, with the store's encoders (fine-tuned ones when promoted)."""
    store = Store.open(settings)
    weights = encoder.encoder_weights(settings, store)
    return stages.embed_speakers.fn(
        audio, seg, weights, settings.identity.encoder, encoder.identity_weights(settings, store)
    )


@task(name="prepare-recording", cache_policy=NO_CACHE)
def prepare_recording(
    item: MediaItem, settings: Settings, workdir: Path, run_id: str, log_format: str = "text"
) -> Prepared:
    """Everything about ``item`` that does not need the registry; audio goes to the store."""
    logs.configure_logging(log_format)  # a Dask worker process starts with Prefect's
    rid = item.recording_id
    settings = _with_worker_threads(settings)
    seconds: dict[str, float] = {}
    with logs.log_context(flow_run_id=run_id, recording_id=rid):
        with logs.stage(rid, "download", seconds):
            path = _download(item, workdir, settings)
        # The compute stages run as plain calls inside this task: a nested Prefect task
        # run costs time per call and its state keeps its result (the whole
        # recording's samples) alive until this task ends, whatever is deleted here.
        with logs.stage(rid, "decode", seconds):
            audio = stages.load_audio.fn(path)
        with logs.stage(rid, "segment", seconds):
            seg = stages.segment.fn(audio, settings)
        with logs.stage(rid, "embed", seconds):
            vectors = _embed(audio, seg, settings)
        with logs.stage(rid, "identify", seconds):  # the recording's own speakers
            speakers = stages.own_speakers(seg, vectors, settings)
        with logs.stage(rid, "commit", seconds):  # the audio files; rows come later, in order
            uri, clip_audio = write_audio(Store.open(settings), rid, audio, seg, speakers, vectors)
        duration, rate = audio.duration, audio.sample_rate
        clips_audio, clips_seg = clips_only(audio, seg)
        del audio  # the whole recording is in the store now: transcription needs its clips only
        with logs.stage(rid, "transcribe", seconds):
            words = channel_vocabulary(item, settings)
            transcripts = stages.transcribe.fn(
                clips_audio, clips_seg, settings, speakers.clip_labels, words
            )
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
    )
