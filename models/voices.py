"""Two voices in one clip: compare the parts of a clip with its speaker and the others.

The segmentation model sometimes gives two similar voices one local label, so
a clip cut from one "turn" can hold the end of one person and the start of
the next. Each clip's identity embedding is the sum of embeddings of short
windows (see :func:`convoice.models.embed.embed_regions_campplus`); those
windows come for free, and a window that sounds like another speaker of the
recording, or two windows that sound like two different people, mark the clip.

Two voices of one engine (espeak's en and de women, say) can fall into one
recording speaker, and then no window is closer to another speaker and single
1 s windows vary as much within a voice as between the two. People change
turns in pauses, so the clip is also cut at each pause inside it
(:func:`pause_cuts`) and the two parts, embedded whole, are compared: a voice
stays like itself across a pause (tuning half: single-voice clips >= 0.54, all
but one >= 0.66), two voices merged this way do not (0.49-0.63).
Pure computation on arrays.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from convoice.records import FloatArray, Region


@dataclass(frozen=True)
class TwoVoiceRule:
    """When a clip's windows say it holds two voices (cosines of the identity encoder)."""

    switch_margin: float  # a window closer to another speaker than to its own by this much
    min_window_similarity: float  # two windows of one clip less similar than this
    min_part_similarity: float = -1.0  # the parts before and after a pause less similar than this


def pause_cuts(
    pieces: Sequence[Region], clip: Region, min_pause_s: float, min_part_s: float
) -> list[float]:
    """Where a clip may change voice: the middle of each pause of ``min_pause_s`` or more
    between the speech ``pieces`` inside it, with ``min_part_s`` of the clip on both sides."""
    inside = [p for p in pieces if p.end > clip.start and p.start < clip.end]
    cuts = []
    for before, after in itertools.pairwise(inside):
        if after.start - before.end < min_pause_s:
            continue
        cut = (before.end + after.start) / 2
        if cut - clip.start >= min_part_s and clip.end - cut >= min_part_s:
            cuts.append(cut)
    return cuts


def least_part(
    befores: FloatArray, afters: FloatArray, cuts: Sequence[float]
) -> tuple[float, float]:
    """The least cosine between a clip's part before a pause and its part after it (unit
    rows, one pair per cut in ``cuts``; a zero row, too short to embed, counts as alike), and
    that pause: (1.0, nan) with no cut."""
    least, where = 1.0, math.nan
    for a, b, cut in zip(befores, afters, cuts, strict=True):
        if not (a.any() and b.any()):
            continue
        similarity = float(a @ b)
        if math.isnan(where) or similarity < least:
            least, where = similarity, cut
    return least, where


def window_evidence(windows: FloatArray, own: int, centroids: FloatArray) -> tuple[float, float]:
    """(largest "other speaker minus own speaker" over the windows, least window-pair cosine).

    ``windows``: (k, dim) unit rows of one clip; ``centroids``: (num_speakers, dim).
    With one window (or one speaker) the missing figure is -1 (resp. 1).
    """
    switch = -1.0
    if centroids.shape[0] > 1:
        sims = windows @ centroids.T  # shape: (k, num_speakers)
        others = np.delete(sims, own, axis=1).max(axis=1)
        switch = float((others - sims[:, own]).max())
    pair = 1.0
    if windows.shape[0] > 1:
        pair = float((windows @ windows.T).min())
    return switch, pair


@dataclass(frozen=True)
class VoiceEvidence:
    """What the identity encoder's windows and parts say of one clip (see :class:`TwoVoiceRule`)."""

    switch: float  # largest "other speaker minus own speaker" over its windows (-1: one window)
    pair: float  # least cosine of two of its windows (1: one window)
    part: float  # least cosine of its parts across a pause (1: no pause compared)


def voice_evidence(
    clip_windows: Sequence[FloatArray],
    labels: npt.NDArray[np.int64],
    centroids: FloatArray,
    part_similarity: Sequence[float] | None = None,
) -> list[VoiceEvidence]:
    """Per clip, its :class:`VoiceEvidence` (a clip with no speaker, or one window: the
    neutral -1 / 1 figures)."""
    parts = [1.0] * len(clip_windows) if part_similarity is None else list(part_similarity)
    out = []
    for windows, label, part in zip(clip_windows, labels.tolist(), parts, strict=True):
        switch, pair = -1.0, 1.0
        if label >= 0 and windows.shape[0] >= 2:
            switch, pair = window_evidence(windows, label, centroids)
        out.append(VoiceEvidence(switch, pair, part))
    return out


def two_voice_flags(
    clip_windows: Sequence[FloatArray],
    labels: npt.NDArray[np.int64],
    centroids: FloatArray,
    rule: TwoVoiceRule,
    part_similarity: Sequence[float] | None = None,
) -> npt.NDArray[np.bool_]:
    """Which clips hold two voices; clips with no speaker are never flagged, nor by their
    windows clips with one window. ``part_similarity``: per clip, the least similarity of
    its parts across a pause (:func:`least_part`; None: not compared)."""
    return flags_of(voice_evidence(clip_windows, labels, centroids, part_similarity), labels, rule)


def flags_of(
    evidence: Sequence[VoiceEvidence], labels: npt.NDArray[np.int64], rule: TwoVoiceRule
) -> npt.NDArray[np.bool_]:
    """Per clip, whether its ``evidence`` says two voices by ``rule`` (never for a clip with
    no speaker, ``labels`` -1)."""
    return np.array(
        [
            label >= 0 and flagged(e, rule)
            for e, label in zip(evidence, labels.tolist(), strict=True)
        ],
        dtype=bool,
    )


def flagged(evidence: VoiceEvidence, rule: TwoVoiceRule) -> bool:
    """Whether ``evidence`` says two voices by ``rule``."""
    return (
        evidence.part < rule.min_part_similarity
        or evidence.switch > rule.switch_margin
        or evidence.pair < rule.min_window_similarity
    )
