"""The settings as the arguments of model calls.

``[asr]`` as the options of :func:`convoice.models.asr.transcribe_clips` (with the
words of a vocabulary), ``[diarization]`` and ``[identity]`` as the clustering of a
recording's own speakers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from convoice.config import Settings
from convoice.models import asr, labelling, language
from convoice.models.clip_embeddings import Embeddings
from convoice.models.diarize import Segmentation
from convoice.models.labelling import RecordingSpeakers


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
        vectors.part_similarity or None,
        cfg.cluster_unit,
    )


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
    detect = language.DetectOptions(
        method=cfg.language_detection,
        min_probability=cfg.language_min_probability,
        candidates=tuple(c.strip() for c in cfg.languages if c.strip()),
        batch_size=cfg.language_batch_size,
        min_s=cfg.language_min_clip_s,
        pool_speakers=cfg.language_pool_speakers,
        speaker_weight=cfg.language_speaker_weight,
        window_s=cfg.language_window_s,
        weights=tuple(sorted(cfg.language_weights.items())),
        decode_runner_up=cfg.language_decode_runner_up,
        decode_below=cfg.language_decode_below,
        decode_top=cfg.language_decode_top,
        decode_speaker=cfg.language_decode_speaker,
    )
    return asr.AsrOptions(
        cfg.batch_size, cfg.beam_size, cfg.language, detect, own_length=cfg.windows_at_own_length
    )
