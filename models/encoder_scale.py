"""An encoder's similarity scale: the thresholds of its parent, moved to where its cosines are.

Fine-tuning moves an encoder's cosines (the first CAM++ round on the reporting
half: same voice 0.756 -> 0.713, different voices 0.144 -> 0.021), so the
thresholds fitted for the parent (``[identity]``) are wrong for the child. A
:class:`ScaleMap` is the affine map ``child = offset + slope * parent`` that
sends the parent's mean same-speaker and mean different-speaker pair cosine,
on the same clips, to the child's; levels (thresholds, fit ramps) go through
it, differences (margins) are multiplied by the slope.

The clips it is fitted on are clips people labelled that the child never
trained on; the round judges with thresholds fitted on the other fold of them
(:func:`fold`, cross-fitting), so no clip is judged by thresholds it shaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from convoice.models.calibration import holdout_half
from convoice.records import FloatArray
from convoice.settings import IdentitySettings, SimilarityScale

MIN_SEPARATION = 0.05  # parent's same minus different mean below this: no map (identity)
SLOPES = (0.5, 2.0)  # a slope outside this range is not believed (identity map)
LEVELS = (
    "cluster_threshold", "match_threshold", "new_threshold", "fit_low", "fit_high",
    "absorb_threshold", "two_voice_min_similarity",
)  # fmt: skip
DIFFERENCES = ("margin", "fit_margin", "refine_margin")


@dataclass(frozen=True)
class ScaleMap:
    """``child cosine = offset + slope * parent cosine``, and what it was fitted on."""

    offset: float = 0.0
    slope: float = 1.0
    clips: int = 0
    same_pairs: int = 0
    other_pairs: int = 0
    parent_means: tuple[float, float] = (float("nan"), float("nan"))  # same, different
    child_means: tuple[float, float] = (float("nan"), float("nan"))
    why: str = "not fitted"

    @property
    def fitted(self) -> bool:
        return self.same_pairs > 0 and self.other_pairs > 0 and self.why == ""

    def apply(self, scale: SimilarityScale) -> SimilarityScale:
        """``scale`` (the parent's thresholds) on the child's similarity scale."""
        moved = {
            name: round(
                float(np.clip(self.offset + self.slope * getattr(scale, name), -1.0, 1.0)), 4
            )
            for name in LEVELS
        }
        moved |= {name: round(self.slope * getattr(scale, name), 4) for name in DIFFERENCES}
        return SimilarityScale(**moved)

    def line(self) -> str:
        if not self.fitted:
            return f"thresholds kept as the parent's ({self.why})"
        return (
            f"thresholds moved by cosine -> {self.offset:+.3f} + {self.slope:.3f} x cosine "
            f"(same voice {self.parent_means[0]:.3f} -> {self.child_means[0]:.3f}, different "
            f"{self.parent_means[1]:.3f} -> {self.child_means[1]:.3f}; {self.same_pairs} same / "
            f"{self.other_pairs} different pairs of {self.clips} clips)"
        )


def scale_dict(scale: SimilarityScale) -> dict[str, float]:
    return {k: float(v) for k, v in asdict(scale).items()}


def scale_from_dict(data: dict[str, float]) -> SimilarityScale:
    """The scale stored in ``data`` (a field stored before it existed: its default)."""
    return SimilarityScale(
        **{f.name: float(data[f.name]) for f in fields(SimilarityScale) if f.name in data}
    )


def identity_on(identity: IdentitySettings, scale: Mapping[str, float]) -> IdentitySettings:
    """``[identity]`` with an encoder's stored thresholds ({}: as it is)."""
    if not scale:
        return identity
    moved: dict[str, Any] = {  # a field stored before it existed keeps [identity]'s
        f.name: float(scale[f.name]) for f in fields(SimilarityScale) if f.name in scale
    }
    return replace(identity, **moved)


def pair_means(embeddings: FloatArray, speakers: Sequence[str]) -> tuple[float, float, int, int]:
    """Mean cosine of same-speaker and of different-speaker pairs of unit rows, and their counts."""
    if len(speakers) != embeddings.shape[0]:
        raise ValueError(f"{len(speakers)} speakers but {embeddings.shape[0]} embeddings")
    sims = embeddings.astype(np.float64) @ embeddings.T.astype(np.float64)
    i, j = np.triu_indices(len(speakers), k=1)
    labels = np.asarray(speakers)
    same = labels[i] == labels[j]
    values = sims[i, j]
    n_same, n_other = int(same.sum()), int((~same).sum())
    mean_same = float(values[same].mean()) if n_same else float("nan")
    mean_other = float(values[~same].mean()) if n_other else float("nan")
    return mean_same, mean_other, n_same, n_other


def fit_map(parent: FloatArray, child: FloatArray, speakers: Sequence[str]) -> ScaleMap:
    """The map from ``parent``'s cosines to ``child``'s (the same clips, rows of each)."""
    p_same, p_other, n_same, n_other = pair_means(parent, speakers)
    c_same, c_other, _, _ = pair_means(child, speakers)
    base = ScaleMap(
        clips=len(speakers), same_pairs=n_same, other_pairs=n_other,
        parent_means=(p_same, p_other), child_means=(c_same, c_other),
    )  # fmt: skip
    if n_same == 0 or n_other == 0:
        return _keep(base, f"{n_same} same-speaker and {n_other} different-speaker pairs")
    if p_same - p_other < MIN_SEPARATION:
        return _keep(base, f"the parent separates voices by {p_same - p_other:.3f} only")
    slope = (c_same - c_other) / (p_same - p_other)
    if not SLOPES[0] <= slope <= SLOPES[1]:
        return _keep(base, f"a slope of {slope:.2f} is outside {SLOPES}")
    return ScaleMap(
        round(c_same - slope * p_same, 4), round(slope, 4), base.clips, n_same, n_other,
        base.parent_means, base.child_means, "",
    )  # fmt: skip


def _keep(found: ScaleMap, why: str) -> ScaleMap:
    return ScaleMap(
        0.0, 1.0, found.clips, found.same_pairs, found.other_pairs,
        found.parent_means, found.child_means, why,
    )  # fmt: skip


def fold(clip_id: str, salt: str = "convoice-encoder-scale-1") -> int:
    """The cross-fitting fold (0 or 1) of a judged clip: a stable half by hash of its id."""
    return int(holdout_half(clip_id, salt))
