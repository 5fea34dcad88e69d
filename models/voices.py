"""Two voices in one clip: compare the parts of a clip with its speaker and the others.

The segmentation model sometimes gives two similar voices one local label, so
a clip cut from one "turn" can hold the end of one person and the start of
the next. Each clip's identity embedding is the sum of embeddings of short
windows (see :func:`convoice.models.embed.embed_regions_campplus`); those
windows come for free, and a window that sounds like another speaker of the
recording, or two windows that sound like two different people, mark the clip.
Pure computation on arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from convoice.records import FloatArray


@dataclass(frozen=True)
class TwoVoiceRule:
    """When a clip's windows say it holds two voices (cosines of the identity encoder)."""

    switch_margin: float  # a window closer to another speaker than to its own by this much
    min_window_similarity: float  # two windows of one clip less similar than this


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


def two_voice_flags(
    clip_windows: Sequence[FloatArray],
    labels: npt.NDArray[np.int64],
    centroids: FloatArray,
    rule: TwoVoiceRule,
) -> npt.NDArray[np.bool_]:
    """Which clips hold two voices; clips with one window or no speaker are never flagged."""
    flags = np.zeros(len(clip_windows), dtype=bool)
    for i, (windows, label) in enumerate(zip(clip_windows, labels.tolist(), strict=True)):
        if label < 0 or windows.shape[0] < 2:
            continue
        switch, pair = window_evidence(windows, label, centroids)
        flags[i] = switch > rule.switch_margin or pair < rule.min_window_similarity
    return flags
