"""A refit of the speaker curve from people's labels that cannot make accepted labels wrong.

People label the review queue: clips the machine was unsure of, a few
recording speakers, most of them confirmed. A plain isotonic fit on those
clips once mapped a raw score of 0.52 to 0.998 (22 clips, nearly all right)
and accepted labels that were wrong. The rule here (pure computation):

- **evidence is counted in recording speakers, not clips**: errors cluster
  by recording speaker (one voice given another's id is wrong in all its
  clips), so each clip weighs ``1 / clips of its recording speaker``;
- **the current curve is the prior**: each block of the isotonic fit blends
  the labels with the current curve, which counts as ``prior_evidence``
  recording speakers;
- **no region rises above what the labels support**: a block may go above
  the current curve only up to the Wilson lower bound (one-sided, ``z``) of
  its share right on its effective evidence. Lowering is free (it sends
  labels to people, it never accepts a wrong one);
- :func:`accepted_precision` lets the caller refuse a refit whose accepted
  labels, on the judged half, are right less often than the target (or than
  the current calibration's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from convoice.models.calibration import _pav, check_judged, group_weights
from convoice.records import Curve

PRIOR_EVIDENCE = 10.0  # the current curve counts as this many recording speakers
CONFIDENCE_Z = 1.645  # one-sided 95 % Wilson lower bound
MIN_FIT_SPEAKERS = 6  # distinct recording speakers to fit on
MIN_JUDGE_SPEAKERS = 4  # distinct recording speakers to judge on


def wilson_lower(right: float, n: float, z: float = CONFIDENCE_Z) -> float:
    """The Wilson lower bound of a share right (``right`` of ``n``, both may be fractional)."""
    if n <= 0:
        return 0.0
    p = min(max(right / n, 0.0), 1.0)
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - margin) / (1 + z2 / n))


def refit_curve(
    scores: Sequence[float],
    right: Sequence[bool],
    groups: Sequence[str],
    current: Curve,
    prior_evidence: float = PRIOR_EVIDENCE,
    z: float = CONFIDENCE_Z,
) -> Curve:
    """The current curve moved by people's labels as far as their evidence goes (module docs).

    Outside the scores people labelled the current curve stays (then the map is
    made monotone by lowering, never by raising).
    """
    check_judged(scores, right, groups, purpose="refit")
    x = np.asarray(scores, dtype=np.float64)
    ok = np.asarray(right, dtype=np.float64)
    values, inverse = np.unique(x, return_inverse=True)
    weight = np.bincount(inverse, weights=group_weights(groups))
    hits = np.bincount(inverse, weights=group_weights(groups) * ok)
    knots: dict[float, float] = {
        c: y for c, y in zip(current.xs, current.ys, strict=True)
        if c < values[0] or c > values[-1]
    }  # fmt: skip
    for first, last, n, _ in _pav(hits / weight, weight):
        k = float(hits[first : last + 1].sum())
        lo, hi = float(values[first]), float(values[last])
        bound = wilson_lower(k, n, z)
        # where the rule's kinks fall (the current curve at bound, k / n, blend == bound)
        kinks = (bound, k / n, (bound * (n + prior_evidence) - k) / prior_evidence)
        inside = [c for c in current.xs if lo < c < hi]
        inside += [a for level in kinks for a in _crossings(current, level, lo, hi)]
        for at in {lo, hi, *inside}:
            prior = float(np.interp(at, current.xs, current.ys))
            blend = (k + prior_evidence * prior) / (n + prior_evidence)
            knots[at] = min(blend, max(prior, bound))
    xs = sorted(knots)
    ys = np.minimum.accumulate(np.asarray([knots[a] for a in xs])[::-1])[::-1]
    ys = np.clip(ys, 0.0, 1.0)
    return Curve(tuple(xs), tuple(round(float(y), 6) for y in ys), len(x), int(ok.sum()))


def _crossings(curve: Curve, level: float, lo: float, hi: float) -> list[float]:
    """The scores in (lo, hi) where ``curve`` crosses ``level``."""
    out = []
    for x0, x1, y0, y1 in zip(curve.xs, curve.xs[1:], curve.ys, curve.ys[1:], strict=False):
        if y0 < level < y1 and x1 > x0:
            at = x0 + (level - y0) / (y1 - y0) * (x1 - x0)
            if lo < at < hi:
                out.append(float(at))
    return out


def accepted_precision(
    probability: Sequence[float], right: Sequence[bool], target: float
) -> tuple[int, float | None]:
    """How many clips reach ``target`` and the share of them right (None when none does)."""
    taken = [ok for p, ok in zip(probability, right, strict=True) if p >= target]
    return len(taken), (sum(taken) / len(taken) if taken else None)


def precision_floor(current: float | None, target: float) -> float:
    """What a refit's accepted labels must reach on the judged half: the target, or the
    current calibration's accepted precision there when that is lower."""
    return target if current is None else min(target, current)
