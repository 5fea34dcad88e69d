"""Transcribe clips with faster-whisper's batched pipeline, each clip in its own language.

Every clip's language is detected first (:mod:`convoice.models.language`),
unless ``language`` pins one. Clips of one language are packed into windows
of up to 30 s (:mod:`convoice.models.packing`) and go through
``BatchedInferencePipeline`` as its ``clip_timestamps``, told that language,
with the Whisper model chosen for it; every word comes back with a time, which
says which clip it belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from convoice.engines import encoder_tally
from convoice.engines.lanes import side_by_side, workers_for
from convoice.models.language import DetectOptions, LanguageGuess, detect_languages
from convoice.models.packing import GAP_S, WINDOW_S, Packing, pack, window_groups
from convoice.records import SAMPLE_RATE, Region, Samples, Transcript, Word

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

__all__ = ["AsrOptions", "Packing", "pack", "transcribe_clips"]

# language -> (model name for provenance, model); "" = the detecting model
ModelFor = Callable[[str], "tuple[str, WhisperModel]"]
Stats = tuple[float, float, float]  # avg_logprob, compression_ratio, no_speech_prob

GROUP_S = 600.0
"""At most this much packed audio goes to Whisper at once (rounded to whole batches of
windows): the packed audio, its windows and their log-mel features of a long recording
are held ten minutes at a time, not all at once (three hours of dense speech: 1.5 GB)."""


@dataclass(frozen=True)
class AsrOptions:
    batch_size: int = 4  # as [asr] batch_size
    beam_size: int = 1
    language: str = ""  # "" = detect per clip; else every clip is this language
    detect: DetectOptions = field(default_factory=DetectOptions)
    hotwords: str = ""  # words Whisper is told to expect (a channel's vocabulary), or ""
    initial_prompt: str = ""  # or the same as a previous-text prompt (README "Vocabulary")
    # windows encoded at their own length (one that loops again at 30 s); False: every window
    # padded to 30 s, as faster-whisper does (:mod:`convoice.engines.whisper_windows`)
    own_length: bool = True


def transcribe_clips(
    model: WhisperModel,
    samples: Samples,
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
    by_language = {
        language: [i for i, g in enumerate(guesses) if g.language == language]
        for language in sorted({g.language for g in guesses})
    }
    found = _transcribe_by_language(model, samples, clips, options, model_for, by_language)
    for members, (name, words_stats) in zip(by_language.values(), found, strict=True):
        for i, (words, stats) in zip(members, words_stats, strict=True):
            if words:
                out[i] = _transcript(words, stats, guesses[i], name)
    again = options.detect.decode_runner_up or options.detect.decode_below
    if languages is None and not options.language and again:
        _decode_alternatives(model, samples, clips, options, model_for, guesses, out)
    return out


# The runner-up's words must be likelier by this much (mean log word probability): at 0 it
# broke clips that were right on the tuning half; fitted there (README "Languages").
DECODE_MARGIN = 0.3
LOOP_RATIO = 2.4  # Whisper's own threshold: text this compressible is a repetition loop


def alternatives(guess: LanguageGuess, options: DetectOptions) -> list[tuple[str, float]]:
    """The languages (and their probabilities) a clip is transcribed in besides its own: its
    runner-up when that has at least ``decode_runner_up``; its ``alternatives`` when its own
    probability is under ``decode_below``."""
    out: dict[str, float] = {}
    if options.decode_below and guess.probability < options.decode_below:
        out.update(guess.alternatives)
    runner_up = guess.runner_up_probability >= options.decode_runner_up
    if options.decode_runner_up and guess.runner_up and runner_up:
        out[guess.runner_up] = guess.runner_up_probability
    out.pop(guess.language, None)
    return list(out.items())


def _decode_alternatives(
    model: WhisperModel,
    samples: Samples,
    clips: list[Region],
    options: AsrOptions,
    model_for: ModelFor | None,
    guesses: list[LanguageGuess],
    out: list[Transcript | None],
) -> None:
    """Unsure clips (:func:`alternatives`) are transcribed in their other languages too; a
    clip takes the one whose words Whisper reads likeliest (``out`` in place, method
    "decoded"), by :data:`DECODE_MARGIN` in the mean log word probability (:func:`word_score`)
    over the language it had, unless that transcript is a repetition loop. Only the kept
    transcript is stored: the clip's own language is not decoded again."""
    others = {i: alternatives(g, options.detect) for i, g in enumerate(guesses)}
    others = {i: a for i, a in others.items() if a and out[i] is not None}
    best = {i: word_score(t.words) + DECODE_MARGIN for i, t in enumerate(out) if t is not None}
    by_language = {
        language: [i for i, a in others.items() if language in dict(a)]
        for language in sorted({lang for a in others.values() for lang, _ in a})
    }
    found = _transcribe_by_language(model, samples, clips, options, model_for, by_language)
    for (language, members), (name, words_stats) in zip(by_language.items(), found, strict=True):
        for i, (words, stats) in zip(members, words_stats, strict=True):
            g = guesses[i]
            if not words:
                continue
            guess = LanguageGuess(language, dict(others[i])[language], "decoded", g.language,
                                  g.probability)  # fmt: skip
            second = _transcript(words, stats, guess, name)
            if second.compression_ratio > LOOP_RATIO:  # a loop ("0. 0. 0."), not evidence
                continue
            if word_score(words) > best[i]:
                out[i], best[i] = second, word_score(words)


def word_score(words: Sequence[Word]) -> float:
    """The mean log-probability of ``words`` (the log of their geometric mean)."""
    return float(np.mean([np.log(max(w.probability, 1e-6)) for w in words])) if words else -np.inf


# Whisper's decoder stops at 448 tokens (its prompt included) per 30 s window: about 15 tokens a
# second. A window of a few seconds that Whisper hears as a repetition loop ("Bus-Bus-Bus-...")
# ran to those 448 tokens, and the word alignment over them, at several times the cost of the
# window's encoder pass (README "Where the time goes"). Its budget is twice that rate over its own
# length: at Whisper's rate itself a short window of accented Latvian (its long vowels cost a
# token each) lost its last words on the tuning half; at twice it none did.
TOKENS_PER_S = 2 * 448 / 30
TOKEN_MARGIN = 16
MAX_TOKENS = 448
PROMPT_TOKENS = 228  # the longest prompt faster-whisper builds: half the context, plus 4 specials
SPECIAL_TOKENS = 8  # sot, language, task, no-timestamps, with room to spare


def token_budget(window_s: float, prompted: bool) -> int | None:
    """At most how many tokens Whisper may decode for windows of at most ``window_s`` seconds:
    ``TOKENS_PER_S`` of them, plus ``TOKEN_MARGIN``; None (Whisper's own limit) when that is no
    less than what the prompt leaves of Whisper's context (``prompted``: hotwords or an initial
    prompt, up to :data:`PROMPT_TOKENS` long)."""
    if window_s < 0:
        raise ValueError(f"window_s must not be negative, got {window_s}")
    budget = int(np.ceil(window_s * TOKENS_PER_S)) + TOKEN_MARGIN
    room = MAX_TOKENS - (PROMPT_TOKENS if prompted else SPECIAL_TOKENS)
    return budget if budget < room else None


ClipWords = list[tuple[list[Word], list[Stats]]]  # per clip: its words and their stats


@dataclass(frozen=True)
class _Call:
    """Clips of one language packed for one Whisper call (a group of their windows)."""

    whisper: WhisperModel
    packing: Packing
    clips: list[Region]
    language: str


def _transcribe_by_language(
    model: WhisperModel,
    samples: Samples,
    clips: list[Region],
    options: AsrOptions,
    model_for: ModelFor | None,
    by_language: dict[str, list[int]],
) -> list[tuple[str, ClipWords]]:
    """Per language of ``by_language`` (language -> clip indices): the Whisper model's name
    and the words of each of its clips, all told that language, packed into windows.

    Whisper takes a language's windows :data:`GROUP_S` at a time (whole batches of
    windows, so every batch holds the windows it holds when all go at once); each group
    is a Whisper call of its own, and the calls run side by side
    (:func:`convoice.engines.lanes.side_by_side`; one at a time for more than
    :data:`~convoice.engines.lanes.ALONE_S` of clips): the same words either way.
    """
    names: list[str] = []
    calls: list[tuple[WhisperModel, list[Region], str]] = []
    for language, members in by_language.items():
        name, whisper = model_for(language) if model_for else ("", model)
        names.append(name)
        calls.append((whisper, [clips[i] for i in members], language))
    found: list[ClipWords] = [[] for _ in calls]
    jobs = (
        (n, _Call(whisper, pack(samples, mine[lo:hi]), mine[lo:hi], language))
        for n, (whisper, mine, language) in enumerate(calls)
        for lo, hi in window_groups(len(samples), mine, _windows_per_group(options))
    )
    workers = workers_for(len(samples) / SAMPLE_RATE)
    done = side_by_side(jobs, lambda job: (job[0], _transcribe_windows(job[1], options)), workers)
    for n, words in done:
        found[n] += words
    return list(zip(names, found, strict=True))


def _windows_per_group(options: AsrOptions) -> int:
    """Windows per Whisper call: :data:`GROUP_S` of them, in whole batches."""
    return max(1, int(GROUP_S / WINDOW_S) // options.batch_size) * options.batch_size


def _transcribe_windows(call: _Call, options: AsrOptions) -> ClipWords:
    """The words of ``call``'s clips: its windows in one Whisper call."""
    from faster_whisper import BatchedInferencePipeline

    from convoice.engines.whisper_windows import OwnLengthPipeline

    model, packing, clips, language = call.whisper, call.packing, call.clips, call.language
    longest = max(w.duration for w in packing.windows)
    prompted = bool(options.hotwords or options.initial_prompt)
    pipeline = OwnLengthPipeline if options.own_length else BatchedInferencePipeline
    segments, _ = pipeline(model).transcribe(
        packing.audio,
        clip_timestamps=[{"start": w.start, "end": w.end} for w in packing.windows],
        batch_size=options.batch_size,
        beam_size=options.beam_size,
        language=language,
        word_timestamps=True,
        vad_filter=False,
        hotwords=options.hotwords or None,
        initial_prompt=options.initial_prompt or None,
        max_new_tokens=token_budget(longest, prompted),
    )
    speech_s = sum(c.duration for c in clips)
    encoder_tally.add(encoder_tally.WINDOWS, len(packing.windows), speech_s)
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
