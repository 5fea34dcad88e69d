"""From the engine's raw scores to probabilities that a label is right (pure computation).

A :class:`Curve` is a monotone (non-decreasing) piecewise-linear map from a raw
score to a probability, fitted by isotonic regression (pool-adjacent-violators,
:func:`fit_curve`) on clips whose truth is known, each block's rate pulled
towards the overall rate by ``prior_weight`` pseudo-clips so that a handful of
right clips never claims certainty. :func:`fit_logistic` is the candidate with
fewer degrees of freedom (three parameters, each recording speaker weighing
one); which of them carries over to voices it was not fitted on is measured by
leaving one recording out (:mod:`convoice.models.calibration_loro`);
:func:`keep_top` keeps a curve where it reaches the target precision and puts one
rate below it (what shipped as ``shipped-3`` to ``shipped-8``; ``shipped-9`` is the
isotonic curve again, fitted on a tuning half with real people, README "Confidence and
review"). A
:class:`Calibration` holds one curve for speaker labels and transcript curves
per language (with one for all languages as a fallback), its version, the rule
that made it and the reliability table of the clips it was judged on (never by
a curve fitted on them: :func:`holdout_half`, or leaving one recording out).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from convoice.records import ALL_LANGUAGES, Bin, Calibration, CalibrationError, Curve

PRIOR_WEIGHT = 1.0
MIN_LANGUAGE_CLIPS = 30  # fewer clips of a language: its transcripts use the all-language curve
RIDGE = 0.03  # the logistic's pull towards the overall rate (best held-out Brier, tuning half)
HINGE = 1.0  # raw speaker score where the logistic's slope may change (the score's own kink)
GRID = tuple(round(0.025 * i, 4) for i in range(81))  # raw 0..2: the speaker curve's knots


def _pav(y: np.ndarray, w: np.ndarray) -> list[tuple[int, int, float, float]]:
    """Pool adjacent violators: blocks (first, last, weight, mean) of a non-decreasing fit."""
    blocks: list[list[float]] = []  # first, last, weight, sum
    for i, (value, weight) in enumerate(zip(y, w, strict=True)):
        blocks.append([i, i, float(weight), float(value * weight)])
        while len(blocks) > 1 and blocks[-2][3] / blocks[-2][2] >= blocks[-1][3] / blocks[-1][2]:
            last = blocks.pop()
            blocks[-1][1] = last[1]
            blocks[-1][2] += last[2]
            blocks[-1][3] += last[3]
    return [(int(a), int(b), wt, s / wt) for a, b, wt, s in blocks]


def check_judged(
    scores: Sequence[float],
    right: Sequence[bool],
    groups: Sequence[str] | None = None,
    purpose: str = "calibrate",
) -> None:
    """Raise :class:`CalibrationError` unless there is one ``right`` (and group) per score
    and at least 2 judged clips to ``purpose``."""
    if len(right) != len(scores) or (groups is not None and len(groups) != len(scores)):
        what = "scores and right" if groups is None else "scores, right and groups"
        raise CalibrationError(f"{what} must have the same length")
    if len(scores) < 2:
        raise CalibrationError(
            f"at least 2 judged clips are needed to {purpose}, got {len(scores)}"
        )


def fit_curve(
    scores: Sequence[float], right: Sequence[bool], prior_weight: float = PRIOR_WEIGHT
) -> Curve:
    """Isotonic regression of ``right`` on ``scores``, shrunk towards the overall rate.

    Clips with equal scores are pooled first (a tie cannot be ordered). Each
    block's probability is ``(right + prior_weight * rate) / (clips + prior_weight)``,
    which keeps the map monotone; the knots are the block's lowest and highest scores.
    """
    check_judged(scores, right)
    x = np.asarray(scores, dtype=np.float64)
    ok = np.asarray(right, dtype=np.float64)
    values, inverse = np.unique(x, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    hits = np.bincount(inverse, weights=ok)
    rate = float(ok.mean())
    xs: list[float] = []
    ys: list[float] = []
    for first, last, weight, _ in _pav(hits / counts, counts):
        k = float(hits[first : last + 1].sum())
        p = (k + prior_weight * rate) / (weight + prior_weight)
        for knot in dict.fromkeys((float(values[first]), float(values[last]))):
            xs.append(knot)
            ys.append(p)
    ys = [float(y) for y in np.maximum.accumulate(np.asarray(ys))]  # keep the order exact
    return Curve(tuple(xs), tuple(round(y, 6) for y in ys), len(x), int(ok.sum()))


def keep_top(curve: Curve, scores: Sequence[float], right: Sequence[bool], target: float) -> Curve:
    """``curve`` from the knot where it reaches ``target`` up (what it accepts is unchanged),
    and one probability below it: the share right of the judged clips it does not accept.

    The raw speaker score below the acceptance does not order right from wrong on recordings
    a curve was not fitted on (an isotonic refit of that part of the tuning clips had a
    held-out ECE worse than one rate); the top is kept because no tuning corpus has the
    clips to move a 99.5 % decision. The curve between the last knot below and the first at
    ``target`` stays a straight line, as in ``curve``.
    """
    check_judged(scores, right, purpose="fit the rate below the target")
    top = next((i for i, y in enumerate(curve.ys) if y >= target), None)
    if top is None or top == 0:
        raise CalibrationError(f"the curve must rise from below {target:g} to {target:g}")
    below = [bool(ok) for x, ok in zip(scores, right, strict=True) if curve(x) < target]
    if not below:
        raise CalibrationError("no judged clip below the target to fit the rate on")
    rate = round(min(sum(below) / len(below), curve.ys[top]), 6)
    xs = (*dict.fromkeys((curve.xs[0], curve.xs[top - 1])), *curve.xs[top:])
    ys = (rate,) * (len(xs) - len(curve.xs) + top) + curve.ys[top:]
    return Curve(xs, ys, len(scores), int(sum(bool(ok) for ok in right)))


def group_weights(groups: Sequence[str]) -> np.ndarray:
    """Each clip's weight: 1 / clips of its group, so that each group counts once."""
    counts = Counter(groups)
    return np.asarray([1.0 / counts[g] for g in groups], dtype=np.float64)


def _hinge(x: np.ndarray, knot: float) -> np.ndarray:
    return np.stack([np.ones_like(x), np.minimum(x, knot), np.maximum(x - knot, 0.0)], axis=1)


def _newton(features: np.ndarray, y: np.ndarray, w: np.ndarray, prior: np.ndarray,
            ridge: float) -> np.ndarray:  # fmt: skip
    """Weighted logistic regression, ridge ``ridge`` towards ``prior`` (Newton steps; a
    floor of 1e-6 keeps a slope with no clips on its side of the hinge at its prior)."""
    ridge = max(ridge, 1e-6)
    theta = prior.copy()
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(features @ theta)))
        grad = features.T @ (w * (y - p)) - ridge * (theta - prior)
        hess = (features.T * (w * p * (1 - p))) @ features + ridge * np.eye(len(theta))
        step = np.linalg.solve(hess, grad)
        theta = theta + step
        if float(np.abs(step).max()) < 1e-10:
            break
    return theta


def fit_logistic(
    scores: Sequence[float],
    right: Sequence[bool],
    groups: Sequence[str] | None = None,
    ridge: float = RIDGE,
    knot: float = HINGE,
) -> Curve:
    """P(right) = sigmoid(a + b * min(raw, knot) + c * max(raw - knot, 0)), b, c >= 0.

    Each of ``groups`` (recording speakers; default: each clip its own) weighs
    one in total; the ridge pulls the slopes to 0 and the intercept to the
    overall rate's logit. The curve is the logistic at :data:`GRID` (flat outside).
    """
    check_judged(scores, right, groups)
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(right, dtype=np.float64)
    w = group_weights(list(groups) if groups is not None else [str(i) for i in range(len(x))])
    rate = min(max(float((w * y).sum() / w.sum()), 0.01), 0.99)
    prior = np.asarray([math.log(rate / (1 - rate)), 0.0, 0.0])
    theta = _newton(_hinge(x, knot), y, w, prior, ridge)
    theta[1:] = np.maximum(theta[1:], 0.0)  # never less sure with a higher score
    grid = np.asarray(GRID)
    ys = 1.0 / (1.0 + np.exp(-(_hinge(grid, knot) @ theta)))
    ys = np.maximum.accumulate(np.round(ys, 6))
    return Curve(GRID, tuple(float(v) for v in ys), len(x), int(y.sum()))


def kind_level(judged: Sequence[Judged], kind: str, prior_weight: float = PRIOR_WEIGHT) -> Curve:
    """One probability for every speaker label of ``kind`` (a flat curve): the share right of
    the judged clips of that kind, pulled towards the share right of all judged clips by
    ``prior_weight`` clips. The raw score does not order right from wrong inside a kind on
    the tuning half, so the kind gets its rate, not a curve of the raw score."""
    spk = speaker_judged(judged)
    mine = [bool(j.speaker_right) for j in spk if j.speaker_kind == kind]
    if not mine:
        raise CalibrationError(f"no judged clip of kind {kind!r} to fit its level on")
    rate = sum(bool(j.speaker_right) for j in spk) / len(spk)
    p = round((sum(mine) + prior_weight * rate) / (len(mine) + prior_weight), 6)
    return Curve((0.0, 2.0), (p, p), len(mine), sum(mine))


def operating_point(
    probability: Sequence[float], right: Sequence[bool], target: float, levels: Sequence[float]
) -> tuple[float, float]:
    """``(target, lowest probability accepted)``: the lowest of ``levels`` (the kinds' own
    probabilities) such that the judged clips from it up are right at least ``target`` of
    the time, counted and by their mean probability alike (the precision of what is accepted
    as a whole); ``target`` itself when none is (each clip reaching it is accepted anyway).
    Only the kinds' levels are candidates: a point between two knots of a curve would rest
    on the handful of clips that happen to fall there."""
    check_judged(probability, right, purpose="choose an operating point")
    p = np.asarray(probability, dtype=np.float64)
    ok = np.asarray(right, dtype=np.float64)
    lowest = target
    for level in sorted(set(levels), reverse=True):
        taken = p >= level
        if level < lowest and taken.any() and min(ok[taken].mean(), p[taken].mean()) >= target:
            lowest = float(level)
    return target, round(lowest, 6)


def reliability_bins(
    probability: Sequence[float], right: Sequence[bool], bins: int = 10
) -> tuple[Bin, ...]:
    """Equal-width probability bins (the last one includes 1.0), empty bins left out."""
    p = np.asarray(probability, dtype=np.float64)
    ok = np.asarray(right, dtype=bool)
    index = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            out.append(
                Bin(b / bins, (b + 1) / bins, int(inside.sum()),
                    round(float(p[inside].mean()), 4), round(float(ok[inside].mean()), 4))
            )  # fmt: skip
    return tuple(out)


def ece(table: Sequence[Bin]) -> float:
    """Expected calibration error: the clip-weighted gap between probability and rate right."""
    total = sum(b.clips for b in table)
    return sum(b.clips * abs(b.right - b.mean_probability) for b in table) / total if total else 0.0


def holdout_half(key: str, salt: str = "convoice-calibration-1") -> bool:
    """Whether a clip (or recording) is held out for judging a refit: a stable half by hash."""
    return hashlib.sha256(f"{salt}\x1f{key}".encode()).digest()[0] % 2 == 1


@dataclass(frozen=True)
class Judged:
    """One clip whose truth is known: its raw scores and whether each label is right."""

    key: str  # what the held-out half is drawn by (recording id: its clips are not independent)
    speaker_raw: float | None
    speaker_right: bool | None
    transcript_raw: float | None = None
    transcript_right: bool | None = None
    language: str = ""
    clip_id: str = ""
    group: str = ""  # the recording speaker (errors cluster by it); "" when not known
    duration: float = 0.0  # seconds of speech (the held-out check's share of speech accepted)
    voice: str = ""  # the true speaker, where a benchmark knows it
    speaker_kind: str = ""  # routing.speaker_kind of its evidence ("" in rows made before it)
    # routing.evidence_features of the clip (None: unknown), what a speaker model reads
    speaker_evidence: Mapping[str, float] | None = None


def speaker_judged(judged: Sequence[Judged]) -> list[Judged]:
    """The clips whose speaker label has a raw score and is judged right or wrong."""
    return [j for j in judged if j.speaker_raw is not None and j.speaker_right is not None]


def judged_probability(calibration: Calibration, j: Judged) -> float:
    """The speaker probability ``calibration`` gives a judged clip (its kind's curve, or its
    speaker model under the bar when the clip's evidence is known)."""
    return calibration.speaker_probability(j.speaker_raw or 0.0, j.speaker_kind, j.speaker_evidence)


def fit_transcript_curves(judged: Sequence[Judged], per_language: bool = True) -> dict[str, Curve]:
    """Transcript curves (:func:`fit_curve`): one for all languages, and (``per_language``) one
    for each language with ``MIN_LANGUAGE_CLIPS`` judged transcripts, right and wrong among them."""
    text = [j for j in judged if j.transcript_raw is not None and j.transcript_right is not None]
    transcript: dict[str, Curve] = {}
    if len(text) >= 2:
        transcript[ALL_LANGUAGES] = fit_curve(
            [j.transcript_raw or 0.0 for j in text], [bool(j.transcript_right) for j in text]
        )
    for lang in sorted({j.language for j in text if j.language and per_language}):
        mine = [j for j in text if j.language == lang]
        if len(mine) >= MIN_LANGUAGE_CLIPS and len({j.transcript_right for j in mine}) == 2:
            transcript[lang] = fit_curve(
                [j.transcript_raw or 0.0 for j in mine], [bool(j.transcript_right) for j in mine]
            )
    return transcript


def fit_calibration(
    judged: Sequence[Judged],
    version: str,
    rule: str,
    judge_on: Sequence[Judged] = (),
    per_language: bool = True,
) -> Calibration:
    """Fit the speaker curve and transcript curves (``per_language``: also one per language
    with enough clips, see :func:`fit_transcript_curves`).

    ``judge_on`` (clips the fit never saw) gives the reliability table and ECE it ships with.
    """
    spk = speaker_judged(judged)
    speaker = fit_curve([j.speaker_raw or 0.0 for j in spk], [bool(j.speaker_right) for j in spk])
    transcript = fit_transcript_curves(judged, per_language)
    out = Calibration(version, rule, speaker, transcript)
    held = speaker_judged(judge_on)
    if not held:
        return out
    table = reliability_bins(
        [judged_probability(out, j) for j in held],
        [bool(j.speaker_right) for j in held],
    )
    return Calibration(
        version, rule, speaker, transcript,
        judged_on=f"{len(held)} held-out clips", speaker_reliability=table,
        speaker_ece=round(ece(table), 4),
    )  # fmt: skip


def render_table(table: Sequence[Bin]) -> list[str]:
    """The reliability diagram as text: one line per bin, with a bar of the rate right."""
    lines = ["  probability      clips  mean p  right"]
    for b in table:
        bar = "#" * round(b.right * 20)
        lines.append(
            f"  [{b.low:.1f}, {b.high:.1f}{']' if b.high >= 1 else ')'}  {b.clips:9d}  "
            f"{b.mean_probability:6.3f}  {b.right:5.3f} {bar}"
        )
    return lines
