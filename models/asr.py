"""Transcribe clips with faster-whisper's batched pipeline, packed into 30 s windows.

Whisper's encoder always processes 30 s, so transcribing 1-8 s clips one by
one would waste most of its work. Clips are laid end to end (in time order,
with a short silence between them) into windows of up to 30 s; the windows
go through ``BatchedInferencePipeline`` as its ``clip_timestamps``; every
word comes back with a time, which says which clip it belongs to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from convoice.models.records import Region, Transcript, Word

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

FloatArray = npt.NDArray[np.float32]
SAMPLE_RATE = 16000
GAP_S = 0.4  # silence between packed clips
WINDOW_S = 29.0


@dataclass(frozen=True)
class AsrOptions:
    batch_size: int = 8
    beam_size: int = 1
    language: str = ""


@dataclass(frozen=True)
class Packing:
    audio: FloatArray  # all windows end to end
    windows: list[Region]  # window extents in ``audio``
    offsets: list[float]  # where each clip starts in ``audio``


def pack(samples: FloatArray, clips: list[Region], window_s: float = WINDOW_S) -> Packing:
    """Lay clips end to end with ``GAP_S`` of silence, in windows of at most ``window_s``."""
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    pieces: list[FloatArray] = []
    windows: list[Region] = []
    offsets: list[float] = []
    cursor = 0.0
    window_start = 0.0
    for clip in clips:
        audio = samples[int(clip.start * SAMPLE_RATE) : int(clip.end * SAMPLE_RATE)]
        length = len(audio) / SAMPLE_RATE
        if cursor > window_start and cursor + length - window_start > window_s:
            windows.append(Region(window_start, cursor))
            window_start = cursor
        pieces += [gap, audio]
        cursor += GAP_S
        offsets.append(cursor)
        cursor += length
    if clips:
        windows.append(Region(window_start, cursor + GAP_S))
        pieces.append(gap)
    audio_all = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return Packing(audio_all.astype(np.float32), windows, offsets)


def transcribe_clips(
    model: WhisperModel, samples: FloatArray, clips: list[Region], options: AsrOptions
) -> list[Transcript | None]:
    """One transcript per clip (None when Whisper heard no words in it)."""
    from faster_whisper import BatchedInferencePipeline

    if not clips:
        return []
    packing = pack(samples, clips)
    pipeline = BatchedInferencePipeline(model)
    segments, info = pipeline.transcribe(
        packing.audio,
        clip_timestamps=[{"start": w.start, "end": w.end} for w in packing.windows],
        batch_size=options.batch_size,
        beam_size=options.beam_size,
        language=options.language or None,
        word_timestamps=True,
        vad_filter=False,
    )
    words_by_clip: list[list[Word]] = [[] for _ in clips]
    stats_by_clip: list[list[tuple[float, float, float]]] = [[] for _ in clips]
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
            word = Word(w.word, round(start, 3), round(end, 3), round(w.probability, 4))
            words_by_clip[i].append(word)
            stats_by_clip[i].append((seg.avg_logprob, seg.compression_ratio, seg.no_speech_prob))
    out: list[Transcript | None] = []
    for words, stats in zip(words_by_clip, stats_by_clip, strict=True):
        if not words:
            out.append(None)
            continue
        logprob, ratio, no_speech = (float(np.mean([s[k] for s in stats])) for k in range(3))
        out.append(
            Transcript(
                text=_join(words),
                language=info.language,
                language_probability=round(float(info.language_probability), 4),
                words=tuple(words),
                avg_logprob=round(logprob, 4),
                compression_ratio=round(ratio, 4),
                no_speech_prob=round(no_speech, 4),
            )
        )
    return out


def _join(words: list[Word]) -> str:
    return re.sub(r"\s+", " ", "".join(w.word for w in words)).strip()
