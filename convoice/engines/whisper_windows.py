"""Whisper's encoder given each batch of packed windows at their own length.

faster-whisper's batched pipeline pads every window's log-mel features to 30 s, so a
window of 8 s of clips costs a whole 30 s encoder pass (about 1.3 CPU s for Whisper base
int8 on a 2-core AVX2 machine), and the flow's windows are about a third full: clips are
packed per recording and per language (README "Where the time goes", session 36).
CTranslate2 encodes shorter inputs too: :class:`OwnLengthPipeline` cuts each batch's
features after its longest window, rounded up to a whole second (the frames
faster-whisper's word alignment reads, ``ceil(duration) * 100``), and Whisper decodes
and aligns over that.

Whisper was trained on 30 s inputs, and on a short input it can fall into a repetition
loop ("The The The a a a about about ..."). A window whose words look like one (a
segment's gzip compression ratio above :data:`LOOP_COMPRESSION_RATIO`, Whisper's own
fallback threshold, or the token budget used up) is decoded again padded to 30 s, as
faster-whisper decodes every window, and that answer is kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from faster_whisper import BatchedInferencePipeline

from convoice.engines import encoder_tally

LOOP_COMPRESSION_RATIO = 2.4  # faster-whisper's compression_ratio_threshold; routing's default


def own_frames(durations: list[float], frames_per_second: int, padded: int) -> int:
    """The frames a batch of windows of ``durations`` seconds is encoded at: the longest
    rounded up to a whole second (never more than ``padded``)."""
    if not durations:
        raise ValueError("a batch needs at least one window")
    longest = max(durations)
    if longest < 0:
        raise ValueError(f"a window cannot last {longest} s")
    return min(padded, max(1, math.ceil(longest - 1e-9)) * frames_per_second)


def looped(segments: list[dict[str, Any]], max_new_tokens: int | None) -> bool:
    """Whether one window's decoded segments look like a repetition loop."""
    if any(s["compression_ratio"] > LOOP_COMPRESSION_RATIO for s in segments):
        return True
    tokens = sum(len(s["tokens"]) for s in segments)
    return max_new_tokens is not None and tokens >= max_new_tokens


class OwnLengthPipeline(BatchedInferencePipeline):
    """faster-whisper's batched pipeline, each batch encoded at its longest window's length;
    a window that loops there is decoded again padded to 30 s."""

    last_speech_timestamp: float  # faster-whisper's: where the last batch's speech ended

    def forward(
        self,
        features: np.ndarray,
        tokenizer: Any,
        chunks_metadata: list[dict[str, Any]],
        options: Any,
    ) -> list[list[dict[str, Any]]]:
        padded, fps = features.shape[-1], self.model.frames_per_second
        frames = own_frames([m["duration"] for m in chunks_metadata], fps, padded)
        before = self.last_speech_timestamp
        found: list[list[dict[str, Any]]] = super().forward(
            features[..., :frames], tokenizer, chunks_metadata, options
        )
        encoder_tally.add(encoder_tally.ENCODED, len(found), len(found) * frames / fps)
        again = [i for i, segs in enumerate(found) if looped(segs, options.max_new_tokens)]
        if not again or frames == padded:
            return found
        after = self.last_speech_timestamp
        self.last_speech_timestamp = before
        redone = super().forward(
            features[again], tokenizer, [chunks_metadata[i] for i in again], options
        )
        encoder_tally.add(encoder_tally.AGAIN, len(again), len(again) * padded / fps)
        for i, segs in zip(again, redone, strict=True):
            found[i] = segs
        if again[-1] != len(found) - 1:
            self.last_speech_timestamp = after  # the batch's last window kept its own words
        return found
