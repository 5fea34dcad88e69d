"""From the engine's raw scores to probabilities that a label is right (pure computation).

A :class:`Curve` is a monotone (non-decreasing) map from a raw score to a
probability, fitted by isotonic regression (pool-adjacent-violators) on clips
whose truth is known, each block's rate pulled towards the overall rate by
``prior_weight`` pseudo-clips so that a handful of right clips never claims
certainty. A :class:`Calibration` holds one curve for speaker labels and
transcript curves per language (with one for all languages as a fallback),
its version, the rule that made it and the reliability table of the clips it
was judged on (never the clips it was fitted on: :func:`holdout_half`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PRIOR_WEIGHT = 1.0
ALL_LANGUAGES = "*"
MIN_LANGUAGE_CLIPS = 30  # fewer clips of a language: its transcripts use the all-language curve


class CalibrationError(ValueError):
    """A calibration cannot be fitted or read (too few clips, a malformed file)."""


@dataclass(frozen=True)
class Curve:
    """A monotone piecewise-linear map: ``np.interp(score, xs, ys)``, flat outside."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    clips: int  # how many clips it was fitted on
    right: int  # how many of them were right

    def __post_init__(self) -> None:
        if not self.xs or len(self.xs) != len(self.ys):
            raise CalibrationError("a curve needs as many probabilities as scores, at least one")
        if any(b < a for a, b in zip(self.xs, self.xs[1:], strict=False)):
            raise CalibrationError("a curve's scores must be sorted")
        if any(b < a for a, b in zip(self.ys, self.ys[1:], strict=False)):
            raise CalibrationError("a curve must be monotone (non-decreasing)")
        if not all(0.0 <= y <= 1.0 for y in self.ys):
            raise CalibrationError("a curve's probabilities must lie in [0, 1]")

    def __call__(self, score: float) -> float:
        return round(float(np.interp(float(score), self.xs, self.ys)), 4)


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


def fit_curve(
    scores: Sequence[float], right: Sequence[bool], prior_weight: float = PRIOR_WEIGHT
) -> Curve:
    """Isotonic regression of ``right`` on ``scores``, shrunk towards the overall rate.

    Clips with equal scores are pooled first (a tie cannot be ordered). Each
    block's probability is ``(right + prior_weight * rate) / (clips + prior_weight)``,
    which keeps the map monotone; the knots are the block's lowest and highest scores.
    """
    if len(scores) != len(right):
        raise CalibrationError("scores and right must have the same length")
    if len(scores) < 2:
        raise CalibrationError(
            f"at least 2 judged clips are needed to calibrate, got {len(scores)}"
        )
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


@dataclass(frozen=True)
class Bin:
    """Judged clips whose probability falls in [low, high): how sure, and how often right."""

    low: float
    high: float
    clips: int
    mean_probability: float
    right: float


@dataclass(frozen=True)
class Calibration:
    """The maps of one calibration version, and how it was made and judged."""

    version: str
    rule: str  # what it was fitted on, and how
    speaker: Curve
    transcript: dict[str, Curve] = field(default_factory=dict)  # language (or "*") -> curve
    judged_on: str = ""  # the held-out clips its table and ECE come from
    speaker_reliability: tuple[Bin, ...] = ()
    speaker_ece: float | None = None

    def speaker_probability(self, raw: float) -> float:
        return self.speaker(raw)

    def transcript_probability(self, raw: float, language: str) -> float:
        """The language's curve when it has one, else the all-language curve (else ``raw``)."""
        curve = self.transcript.get(language) or self.transcript.get(ALL_LANGUAGES)
        return round(float(raw), 4) if curve is None else curve(raw)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        try:

            def curve(d: Mapping[str, Any]) -> Curve:
                return Curve(tuple(d["xs"]), tuple(d["ys"]), int(d["clips"]), int(d["right"]))

            return cls(
                version=str(data["version"]),
                rule=str(data["rule"]),
                speaker=curve(data["speaker"]),
                transcript={k: curve(v) for k, v in dict(data.get("transcript", {})).items()},
                judged_on=str(data.get("judged_on", "")),
                speaker_reliability=tuple(Bin(**b) for b in data.get("speaker_reliability", [])),
                speaker_ece=data.get("speaker_ece"),
            )
        except (KeyError, TypeError) as err:
            raise CalibrationError(f"malformed calibration: {err!r}") from err


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


def fit_calibration(
    judged: Sequence[Judged], version: str, rule: str, judge_on: Sequence[Judged] = ()
) -> Calibration:
    """Fit the speaker curve and transcript curves (per language with enough clips).

    ``judge_on`` (clips the fit never saw) gives the reliability table and ECE it ships with.
    """
    spk = [j for j in judged if j.speaker_raw is not None and j.speaker_right is not None]
    speaker = fit_curve([j.speaker_raw or 0.0 for j in spk], [bool(j.speaker_right) for j in spk])
    text = [j for j in judged if j.transcript_raw is not None and j.transcript_right is not None]
    transcript: dict[str, Curve] = {}
    if len(text) >= 2:
        transcript[ALL_LANGUAGES] = fit_curve(
            [j.transcript_raw or 0.0 for j in text], [bool(j.transcript_right) for j in text]
        )
    for lang in sorted({j.language for j in text if j.language}):
        mine = [j for j in text if j.language == lang]
        if len(mine) >= MIN_LANGUAGE_CLIPS and len({j.transcript_right for j in mine}) == 2:
            transcript[lang] = fit_curve(
                [j.transcript_raw or 0.0 for j in mine], [bool(j.transcript_right) for j in mine]
            )
    out = Calibration(version, rule, speaker, transcript)
    held = [j for j in judge_on if j.speaker_raw is not None and j.speaker_right is not None]
    if not held:
        return out
    table = reliability_bins(
        [out.speaker_probability(j.speaker_raw or 0.0) for j in held],
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
