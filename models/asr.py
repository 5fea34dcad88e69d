"""Transcribe clips with faster-whisper's batched pipeline, each clip in its own language.

Every clip's language is detected first (:mod:`convoice.models.language`),
unless ``language`` pins one. Clips of one language are packed into windows
of up to 30 s (:mod:`convoice.models.packing`), each window told its language,
with the Whisper model chosen for it; the windows of every language a model
transcribes share its batches (:mod:`convoice.models.mixed_batches`, the same
transcripts as one ``BatchedInferencePipeline`` call per language). Every word
comes back with a time, which says which clip it belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from convoice.models.language import DetectOptions, LanguageGuess, detect_languages
from convoice.models.mixed_batches import WindowRequest, transcribe_windows
from convoice.models.packing import GAP_S, FloatArray, Packing, pack
from convoice.records import Region, Transcript, Word

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.transcribe import Segment

__all__ = ["AsrOptions", "Packing", "pack", "transcribe_clips"]

# language -> (model name for provenance, model); "" = the detecting model
ModelFor = Callable[[str], "tuple[str, WhisperModel]"]
Stats = tuple[float, float, float]  # avg_logprob, compression_ratio, no_speech_prob


@dataclass(frozen=True)
class AsrOptions:
    batch_size: int = 8
    beam_size: int = 1
    language: str = ""  # "" = detect per clip; else every clip is this language
    detect: DetectOptions = field(default_factory=DetectOptions)
    hotwords: str = ""  # words Whisper is told to expect (a channel's vocabulary), or ""
    initial_prompt: str = ""  # or the same as a previous-text prompt (README "Vocabulary")


def transcribe_clips(
    model: WhisperModel,
    samples: FloatArray,
    clips: list[Region],
    options: AsrOptions,
    model_for: ModelFor | None = None,
    speakers: Sequence[int] | None = None,
    languages: Sequence[LanguageGuess] | None = None,
) -> list[Transcript | None]:
    """One transcript per clip (None when Whisper heard no words in it).

    ``model`` detects the languages (unsure clips lean on their recording
    speaker, ``speakers[i]``, when given); ``model_for(language)`` names and
    gives the model that transcribes clips of that language (default: ``model``).
    ``languages``: the clips' languages when they were detected already.
    """
    if not clips:
        return []
    if languages is not None:
        guesses = list(languages)
    elif options.language:
        guesses = [LanguageGuess(options.language, 1.0, "pinned")] * len(clips)
    else:
        guesses = detect_languages(model, samples, clips, options.detect, speakers)
    out: list[Transcript | None] = [None] * len(clips)
    by_model: dict[int, list[tuple[str, str, WhisperModel, list[int]]]] = {}
    for language in sorted({g.language for g in guesses}):
        members = [i for i, g in enumerate(guesses) if g.language == language]
        name, whisper = model_for(language) if model_for else ("", model)
        by_model.setdefault(id(whisper), []).append((language, name, whisper, members))
    for groups in by_model.values():
        whisper = groups[0][2]
        found = _transcribe_languages(
            whisper,
            samples,
            [(lang, [clips[i] for i in mine]) for lang, _, _, mine in groups],
            options,
        )
        for (_, name, _, members), words_stats in zip(groups, found, strict=True):
            for i, (words, stats) in zip(members, words_stats, strict=True):
                if words:
                    out[i] = _transcript(words, stats, guesses[i], name)
    return out


def _transcribe_languages(
    model: WhisperModel,
    samples: FloatArray,
    groups: list[tuple[str, list[Region]]],
    options: AsrOptions,
) -> list[list[tuple[list[Word], list[Stats]]]]:
    """The words of each group's clips (each group told its language), the windows of all
    groups in shared batches (:mod:`convoice.models.mixed_batches`) when the model is
    multilingual; otherwise one pipeline call per language."""
    if len(groups) == 1 or not model.model.is_multilingual:
        return [_transcribe_packed(model, samples, clips, options, lang) for lang, clips in groups]
    packings = [pack(samples, clips) for _, clips in groups]
    requests = [WindowRequest(lang, p) for (lang, _), p in zip(groups, packings, strict=True)]
    segments = transcribe_windows(
        model,
        requests,
        options.batch_size,
        beam_size=options.beam_size,
        word_timestamps=True,
        vad_filter=False,
        hotwords=options.hotwords or None,
        initial_prompt=options.initial_prompt or None,
    )
    return [
        _assign(p, clips, segs)
        for p, (_, clips), segs in zip(packings, groups, segments, strict=True)
    ]


def _transcribe_packed(
    model: WhisperModel,
    samples: FloatArray,
    clips: list[Region],
    options: AsrOptions,
    language: str,
) -> list[tuple[list[Word], list[Stats]]]:
    """The words of each clip, all clips told ``language``, packed into windows."""
    from faster_whisper import BatchedInferencePipeline

    packing = pack(samples, clips)
    segments, _ = BatchedInferencePipeline(model).transcribe(
        packing.audio,
        clip_timestamps=[{"start": w.start, "end": w.end} for w in packing.windows],
        batch_size=options.batch_size,
        beam_size=options.beam_size,
        language=language,
        word_timestamps=True,
        vad_filter=False,
        hotwords=options.hotwords or None,
        initial_prompt=options.initial_prompt or None,
    )
    return _assign(packing, clips, segments)


def _assign(
    packing: Packing, clips: list[Region], segments: Iterable[Segment]
) -> list[tuple[list[Word], list[Stats]]]:
    """Each packed clip's words (and its segments' statistics), by where each word lies."""
    found: list[tuple[list[Word], list[Stats]]] = [([], []) for _ in clips]
    starts = np.array(packing.offsets)
    # Each clip owns half of the silence on either side: Whisper's word times
    # drift by a few tens of ms, and a clip's first word must not be lost.
    bounds = starts - GAP_S / 2
    for seg in segments:
        for w in seg.words or []:
            i = int(np.searchsorted(bounds, (w.start + w.end) / 2, side="right")) - 1
            if i < 0:
                continue
            limit = clips[i].duration
            start = min(max(w.start - starts[i], 0.0), limit)
            end = min(max(w.end - starts[i], start), limit)
            found[i][0].append(
                Word(w.word, round(start, 3), round(end, 3), round(w.probability, 4))
            )
            found[i][1].append((seg.avg_logprob, seg.compression_ratio, seg.no_speech_prob))
    return found


def _transcript(
    words: list[Word], stats: list[Stats], guess: LanguageGuess, model: str
) -> Transcript:
    logprob, ratio, no_speech = (float(np.mean([s[k] for s in stats])) for k in range(3))
    return Transcript(
        text=_join(words),
        language=guess.language,
        language_probability=round(float(guess.probability), 4),
        words=tuple(words),
        avg_logprob=round(logprob, 4),
        compression_ratio=round(ratio, 4),
        no_speech_prob=round(no_speech, 4),
        model=model,
    )


def _join(words: list[Word]) -> str:
    return re.sub(r"\s+", " ", "".join(w.word for w in words)).strip()
