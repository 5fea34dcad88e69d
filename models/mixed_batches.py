"""Whisper's packed windows of several languages in the same batches.

A recording's clips are transcribed one language at a time (each window is told
its language), and with faster-whisper's ``BatchedInferencePipeline`` each
language is a call of its own: a recording whose clips Whisper hears in four
languages sent four batches of one window each through the encoder and the
decoder, where one batch of four would do (on the tuning half, 32 windows in 25
language groups over 12 recordings). Batching costs less per window on this CPU
(a decoder step of one window is mostly overhead).

:func:`transcribe_windows` runs the windows of every language in shared batches,
each window with its own language token in its prompt, as the pipeline's own
``multilingual`` mode does with languages it detects; word timestamps are
aligned per language (the alignment's start sequence names the language). Each
window's numbers do not depend on its batch neighbours (CTranslate2's encoder,
greedy decoder and alignment give bit-identical results per item,
``tests/test_engine.py`` checks the transcripts against one call per language),
so the transcripts are those of one pipeline call per language.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.models.packing import FloatArray, Packing

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.transcribe import Segment


@dataclass(frozen=True)
class WindowRequest:
    """One language's packed clips and what Whisper is told about them."""

    language: str
    packing: Packing


@dataclass(frozen=True)
class _Window:
    group: int  # index of its WindowRequest
    features: FloatArray  # (n_mels, 3000): the window's log-mel, padded to 30 s
    offset: float  # start in the packed audio (s)
    duration: float  # (s)


def _options(model: WhisperModel, request: WindowRequest, **kwargs: Any) -> Any:
    """The pipeline's own ``TranscriptionOptions`` for these arguments (its generator not run)."""
    from faster_whisper import BatchedInferencePipeline

    sample = request.packing.audio[:16000]  # features of 1 s: the options alone are wanted
    _, info = BatchedInferencePipeline(model).transcribe(
        sample, clip_timestamps=[{"start": 0.0, "end": len(sample) / 16000}], **kwargs
    )
    return info.transcription_options


def _windows(model: WhisperModel, requests: Sequence[WindowRequest]) -> list[_Window]:
    """Every window's features, as the pipeline cuts and computes them for ``clip_timestamps``."""
    from faster_whisper.audio import pad_or_trim

    rate = model.feature_extractor.sampling_rate
    out: list[_Window] = []
    for g, request in enumerate(requests):
        for w in request.packing.windows:
            start, end = int(w.start * rate), int(w.end * rate)
            chunk = request.packing.audio[start:end]
            features = model.feature_extractor(chunk)[..., :-1]
            out.append(_Window(g, pad_or_trim(features), start / rate, (end - start) / rate))
    return out


def transcribe_windows(
    model: WhisperModel,
    requests: Sequence[WindowRequest],
    batch_size: int,
    **kwargs: Any,
) -> list[list[Segment]]:
    """Each request's segments (with words), its windows batched with other languages' windows.

    ``kwargs``: what ``BatchedInferencePipeline.transcribe`` is given besides the
    audio, its clip timestamps, the language and the batch size (``beam_size``,
    ``word_timestamps``, ``hotwords``, ...). The model must be multilingual.
    """
    from faster_whisper.tokenizer import Tokenizer

    if not requests:
        return []
    if not model.model.is_multilingual:
        raise ValueError("mixed-language batches need a multilingual Whisper model")
    options = _options(model, requests[0], language=requests[0].language, **kwargs)
    tokenizers = [
        Tokenizer(model.hf_tokenizer, True, task="transcribe", language=r.language)
        for r in requests
    ]
    windows = _windows(model, requests)
    last_speech = [0.0] * len(requests)  # the pipeline's ``last_speech_timestamp``, per call
    out: list[list[Segment]] = [[] for _ in requests]
    for s in range(0, len(windows), batch_size):
        batch = windows[s : s + batch_size]
        found = _forward(model, batch, tokenizers, options, last_speech)
        for window, segments in zip(batch, found, strict=True):
            out[window.group] += segments
    return out


def _forward(
    model: WhisperModel,
    batch: list[_Window],
    tokenizers: list[Any],
    options: Any,
    last_speech: list[float],
) -> list[list[Segment]]:
    """``BatchedInferencePipeline.forward`` and ``generate_segment_batched`` on one batch,
    each window with its own language's prompt and alignment."""
    import ctranslate2
    from faster_whisper.transcribe import Segment, Word, get_compression_ratio

    encoder_output = model.encode(np.stack([w.features for w in batch]))
    prompts = [
        model.get_prompt(
            tokenizers[w.group],
            previous_tokens=(
                tokenizers[w.group].encode(options.initial_prompt)
                if options.initial_prompt is not None
                else []
            ),
            without_timestamps=options.without_timestamps,
            hotwords=options.hotwords,
        )
        for w in batch
    ]
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("prompts of one batch must have one length")
    if options.max_new_tokens is not None:
        max_length = len(prompts[0]) + options.max_new_tokens
    else:
        max_length = model.max_length
    results = model.model.generate(
        encoder_output,
        prompts,
        beam_size=options.beam_size,
        patience=options.patience,
        length_penalty=options.length_penalty,
        max_length=max_length,
        suppress_blank=options.suppress_blank,
        suppress_tokens=options.suppress_tokens,
        return_scores=True,
        return_no_speech_prob=True,
        sampling_temperature=options.temperatures[0],
        repetition_penalty=options.repetition_penalty,
        no_repeat_ngram_size=options.no_repeat_ngram_size,
    )
    segmented: list[list[dict[str, Any]]] = []
    sizes: list[int] = []
    for window, result in zip(batch, results, strict=True):
        tokenizer = tokenizers[window.group]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * (len(tokens) ** options.length_penalty) / (len(tokens) + 1)
        size = int(ceil(window.duration) * model.frames_per_second)
        sizes.append(size)
        subsegments, _, _ = model._split_segments_by_timestamps(
            tokenizer=tokenizer,
            tokens=tokens,
            time_offset=window.offset,
            segment_size=size,
            segment_duration=window.duration,
            seek=0,
        )
        segmented.append(
            [
                {
                    "text": tokenizer.decode(sub["tokens"]),
                    "avg_logprob": avg_logprob,
                    "no_speech_prob": result.no_speech_prob,
                    "tokens": sub["tokens"],
                    "start": sub["start"],
                    "end": sub["end"],
                    "compression_ratio": get_compression_ratio(tokenizer.decode(sub["tokens"])),
                    "seek": int(window.offset * model.frames_per_second),
                }
                for sub in subsegments
            ]
        )
    if options.word_timestamps:
        groups = sorted({w.group for w in batch})
        encoded = None if len(groups) == 1 else np.asarray(encoder_output)
        for g in groups:
            mine = [i for i, w in enumerate(batch) if w.group == g]
            output = (
                encoder_output
                if encoded is None
                else ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[mine]))
            )
            last_speech[g] = model.add_word_timestamps(
                [segmented[i] for i in mine],
                tokenizers[g],
                output,
                [sizes[i] for i in mine],
                options.prepend_punctuations,
                options.append_punctuations,
                last_speech[g],
            )
    return [
        [
            Segment(
                seek=seg["seek"],
                id=0,
                text=seg["text"],
                start=round(seg["start"], 3),
                end=round(seg["end"], 3),
                words=(
                    None if not options.word_timestamps else [Word(**word) for word in seg["words"]]
                ),
                tokens=seg["tokens"],
                avg_logprob=seg["avg_logprob"],
                no_speech_prob=seg["no_speech_prob"],
                compression_ratio=seg["compression_ratio"],
                temperature=options.temperatures[0],
            )
            for seg in window_segments
        ]
        for window_segments in segmented
    ]
