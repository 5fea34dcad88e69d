"""Lay short clips end to end into windows of at most 30 s, Whisper's input length.

Whisper's encoder always processes 30 s, so running 1-8 s clips one by one
would waste most of its work. Clips are laid end to end (with a short silence
between them) into windows of up to ``WINDOW_S``; ``offsets`` say where each
clip landed, so a time in the packed audio says which clip it belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from convoice.records import SAMPLE_RATE, FloatArray, Region, Samples, sample_index

GAP_S = 0.4  # silence between packed clips
WINDOW_S = 29.0


@dataclass(frozen=True)
class Packing:
    audio: FloatArray  # all windows end to end
    windows: list[Region]  # window extents in ``audio``
    offsets: list[float]  # where each clip starts in ``audio``
    window_of: list[int]  # the window each clip lies in


def pack(samples: Samples, clips: list[Region], window_s: float = WINDOW_S) -> Packing:
    """Lay clips end to end with ``GAP_S`` of silence, in windows of at most ``window_s``
    (:func:`window_of_lengths` says which window each clip goes in)."""
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    audios = [samples[sample_index(clip.start) : sample_index(clip.end)] for clip in clips]
    window_of = window_of_lengths([len(audio) / SAMPLE_RATE for audio in audios], window_s)
    pieces: list[FloatArray] = []
    windows: list[Region] = []
    offsets: list[float] = []
    cursor = 0.0
    window_start = 0.0
    for i, audio in enumerate(audios):
        if i and window_of[i] != window_of[i - 1]:
            windows.append(Region(window_start, cursor))
            window_start = cursor
        pieces += [gap, audio]
        cursor += GAP_S
        offsets.append(cursor)
        cursor += len(audio) / SAMPLE_RATE
    if clips:
        windows.append(Region(window_start, cursor + GAP_S))
        pieces.append(gap)
    audio_all = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return Packing(audio_all.astype(np.float32), windows, offsets, window_of)


def window_of_lengths(lengths: Sequence[float], window_s: float = WINDOW_S) -> list[int]:
    """The window each clip of these lengths (seconds) is packed in: clips go end to end,
    each after ``GAP_S`` of silence, and a clip that would end more than ``window_s`` after
    its window's start opens the next window (unless it is the window's first)."""
    where: list[int] = []
    windows, cursor, window_start = 0, 0.0, 0.0
    for length in lengths:
        if cursor > window_start and cursor + length - window_start > window_s:
            windows += 1
            window_start = cursor
        where.append(windows)
        cursor += GAP_S
        cursor += length  # two steps, as pack places the clip: the same float sums
    return where


def window_groups(
    num_samples: int, clips: list[Region], windows_per_group: int, window_s: float = WINDOW_S
) -> list[tuple[int, int]]:
    """Clip ranges ``[lo, hi)`` that each fill ``windows_per_group`` windows of :func:`pack`.

    Cut at window boundaries, so :func:`pack` of one range lays out its windows as
    the pack of all clips does (the last window of a range gets the trailing
    ``GAP_S`` of silence the last window always gets). Reads no samples: only
    the clips' lengths, as slicing ``num_samples`` samples would give them.
    """
    if windows_per_group < 1:
        raise ValueError(f"windows_per_group must be at least 1, got {windows_per_group}")
    lengths = [
        len(range(*slice(sample_index(c.start), sample_index(c.end)).indices(num_samples)))
        / SAMPLE_RATE
        for c in clips
    ]
    where = window_of_lengths(lengths, window_s)
    groups: list[tuple[int, int]] = []
    lo = 0
    for i in range(1, len(clips)):
        if where[i] != where[i - 1] and where[i] % windows_per_group == 0:
            groups.append((lo, i))
            lo = i
    if clips:
        groups.append((lo, len(clips)))
    return groups


def window_audio(packing: Packing, index: int) -> FloatArray:
    window = packing.windows[index]
    return packing.audio[sample_index(window.start) : sample_index(window.end)]
