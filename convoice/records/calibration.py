"""Calibration records: from raw scores to probabilities (fitted in models/calibration.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

ALL_LANGUAGES = "*"
"""The transcript curve for every language without its own."""


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


@dataclass(frozen=True)
class Bin:
    """Judged clips whose probability falls in [low, high): how sure, and how often right."""

    low: float
    high: float
    clips: int
    mean_probability: float
    right: float


@dataclass(frozen=True)
class SpeakerModel:
    """A logistic regression of "speaker label right" on a clip's evidence, for the labels
    whose curve probability is under ``below``: it orders them (the review queue puts the
    least sure first) and gives their probability, at most ``cap``.

    ``features``: the evidence's names (``routing.SPEAKER_FEATURES``); ``mean`` and
    ``scale`` standardise each; ``weights``: the intercept, then one per feature.
    ``below``: the curve's probability from which the curve rules (the acceptance bar of
    the target it was fitted for, so a label it would accept is the curve's to accept).
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    below: float
    cap: float
    clips: int  # how many judged clips it was fitted on (those under ``below``)
    right: int

    def __post_init__(self) -> None:
        n = len(self.features)
        if not n or len(self.mean) != n or len(self.scale) != n or len(self.weights) != n + 1:
            raise CalibrationError(
                "a speaker model needs a mean, a scale and a weight per feature, and an intercept"
            )
        if any(s <= 0.0 for s in self.scale):
            raise CalibrationError("a speaker model's scales must be positive")
        if not 0.0 < self.cap <= self.below <= 1.0:
            raise CalibrationError(
                f"a speaker model needs 0 < cap <= below <= 1, not cap {self.cap} below "
                f"{self.below}"
            )

    def __call__(self, evidence: Mapping[str, float]) -> float:
        """The probability that the label is right, at most ``cap``."""
        terms = zip(self.features, self.mean, self.scale, self.weights[1:], strict=True)
        z = self.weights[0] + sum(
            w * (float(evidence.get(name, 0.0)) - m) / s for name, m, s, w in terms
        )
        p = 1.0 / (1.0 + math.exp(-min(30.0, max(-30.0, z))))
        return round(min(p, self.cap), 4)


def _pair(value: Any) -> tuple[float, float] | None:
    """An operating point read back (JSON has lists), None when there is none."""
    if value is None:
        return None
    target, lowest = value
    return float(target), float(lowest)


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
    # Per kind of speaker evidence (routing.speaker_kind, e.g. "uncertain"), a curve of its
    # own over the main one; and the operating point (target, lowest probability accepted):
    # at that target, a label is accepted from that probability up (the accepted clips it
    # was fitted on were right at least ``target`` of the time as a whole).
    speaker_kinds: dict[str, Curve] = field(default_factory=dict)
    operating_point: tuple[float, float] | None = None
    # Below the acceptance bar, the probability from the clip's evidence (None: the curve's)
    speaker_model: SpeakerModel | None = None

    def speaker_probability(
        self, raw: float, kind: str = "", evidence: Mapping[str, float] | None = None
    ) -> float:
        """The kind's curve when it has one, else the main speaker curve; where that is
        under the :attr:`speaker_model`'s ``below`` and the clip's ``evidence`` is given,
        the model's probability instead."""
        p = self.speaker_kinds.get(kind, self.speaker)(raw)
        model = self.speaker_model
        if model is None or evidence is None or p >= model.below:
            return p
        return model(evidence)

    def speaker_bar(self, target: float) -> float:
        """The lowest speaker probability accepted at ``target``: the operating point's when
        it was chosen for this target, else ``target`` itself (each clip on its own)."""
        if self.operating_point is not None and abs(self.operating_point[0] - target) < 1e-9:
            return self.operating_point[1]
        return target

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
                speaker_kinds={k: curve(v) for k, v in dict(data.get("speaker_kinds", {})).items()},
                operating_point=_pair(data.get("operating_point")),
                speaker_model=_model(data.get("speaker_model")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CalibrationError(f"malformed calibration: {err!r}") from err


def _model(data: Mapping[str, Any] | None) -> SpeakerModel | None:
    """A speaker model read back (JSON has lists), None when there is none."""
    if data is None:
        return None
    return SpeakerModel(
        features=tuple(str(f) for f in data["features"]),
        mean=tuple(float(v) for v in data["mean"]),
        scale=tuple(float(v) for v in data["scale"]),
        weights=tuple(float(v) for v in data["weights"]),
        below=float(data["below"]),
        cap=float(data["cap"]),
        clips=int(data["clips"]),
        right=int(data["right"]),
    )
