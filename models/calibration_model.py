"""A speaker model: the probability of the labels a calibration curve does not accept, from
the clip's evidence (pure computation).

The raw speaker score puts every label on one axis, and the curve maps it to a probability.
Above the acceptance bar that is enough (the labels accepted there are right 0.995 of the
time on voices the curve never saw). Below it the raw score hardly orders the labels: on
the tuning half, held out by voice, the shipped curve puts a wrong label below a right one
59 % of the time, and the first quarter of the review queue holds 28 % of the wrong
labels. A logistic regression on the evidence the raw score is made of (each part on its
own, :data:`convoice.models.routing.SPEAKER_FEATURES`) orders them far better (README,
"Confidence and review", session 48). It never reaches the bar: the curve alone decides what
is accepted, so routing does not change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from convoice.models.calibration import Judged, ece, reliability_bins, speaker_judged
from convoice.models.calibration_loro import LeaveOut, leave_out_keys
from convoice.records import Bin, CalibrationError, Curve, SpeakerModel

RIDGE = 10.0  # the pull of each standardised weight towards 0 (tuning half, held out by voice)
CAP = 0.99  # the highest probability the model gives
NEWTON_STEPS = 50


def fit_speaker_model(
    evidence: Sequence[Mapping[str, float]],
    right: Sequence[bool],
    features: Sequence[str],
    below: float,
    ridge: float = RIDGE,
    cap: float = CAP,
) -> SpeakerModel:
    """A ridge logistic regression of ``right`` on the ``features`` of ``evidence`` (each
    standardised; Newton's method), for labels whose curve probability is under ``below``."""
    if len(evidence) != len(right):
        raise CalibrationError("evidence and right must have the same length")
    y = np.asarray(right, dtype=np.float64)
    if len(y) < len(features) + 2 or y.min() == y.max():
        raise CalibrationError(
            f"a speaker model needs right and wrong labels, at least {len(features) + 2} "
            f"clips; got {len(y)} ({int(y.sum())} right)"
        )
    x = np.array([[float(e.get(f, 0.0)) for f in features] for e in evidence])
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 1e-9, x.std(axis=0), 1.0)
    z = np.column_stack([np.ones(len(y)), (x - mean) / scale])
    pull = ridge * np.diag([0.0] + [1.0] * len(features))
    w = np.zeros(z.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(z @ w)))
        gradient = z.T @ (p - y) + pull @ w
        hessian = (z * (p * (1.0 - p))[:, None]).T @ z + pull
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    return SpeakerModel(
        features=tuple(features),
        mean=tuple(round(float(v), 6) for v in mean),
        scale=tuple(round(float(v), 6) for v in scale),
        weights=tuple(round(float(v), 6) for v in w),
        below=below,
        cap=min(cap, below),
        clips=len(y),
        right=int(y.sum()),
    )


def under_the_curve(judged: Sequence[Judged], curve: Curve, below: float) -> list[Judged]:
    """The judged speaker labels with evidence whose ``curve`` probability is under ``below``."""
    return [
        j
        for j in speaker_judged(judged)
        if j.speaker_evidence is not None and curve(j.speaker_raw or 0.0) < below
    ]


def fit_under(
    judged: Sequence[Judged], curve: Curve, features: Sequence[str], below: float
) -> SpeakerModel:
    """:func:`fit_speaker_model` on the judged labels ``curve`` leaves under ``below``."""
    under = under_the_curve(judged, curve, below)
    return fit_speaker_model(
        [j.speaker_evidence or {} for j in under], [bool(j.speaker_right) for j in under],
        features, below,
    )  # fmt: skip


@dataclass(frozen=True)
class ModelHeldOut:
    """The curve alone against the curve with a speaker model, each clip judged by the model
    fitted without its recording (or voice); the curve is the same for both."""

    unit: LeaveOut
    units: int
    clips: int  # every judged clip
    under: int  # of them under the bar: what the model speaks for
    wrong_under: int
    ece: tuple[float, float]  # all clips: curve alone, with the model
    table: tuple[Bin, ...]  # all clips' reliability table, with the model
    brier: tuple[float, float]
    order: tuple[float, float]  # under the bar: how often a wrong label is below a right one
    first_quarter: tuple[int, int]  # wrong labels in the least sure quarter of those under it

    def render(self) -> list[str]:
        return [
            f"speaker model held out (leave one {self.unit} out, {self.units} {self.unit}s, "
            f"{self.clips} clips): ECE {self.ece[0]:.4f} -> {self.ece[1]:.4f}, Brier "
            f"{self.brier[0]:.4f} -> {self.brier[1]:.4f} (the curve alone -> with the model)",
            f"  under the bar ({self.under} clips, {self.wrong_under} wrong): a wrong label "
            f"below a right one {self.order[0]:.3f} -> {self.order[1]:.3f} of the time; wrong "
            f"labels in the least sure quarter {self.first_quarter[0]} -> "
            f"{self.first_quarter[1]}",
        ]


def held_out_model(
    judged: Sequence[Judged], curve: Curve, features: Sequence[str], below: float, unit: LeaveOut
) -> ModelHeldOut:
    """Each clip's probability by ``curve``, and under ``below`` by the speaker model fitted
    on the clips of the other recordings (or voices): how far the model carries over."""
    spk = speaker_judged(judged)
    keys = leave_out_keys(spk, unit)
    by_curve: list[float] = []
    by_model: list[float] = []
    right: list[bool] = []
    under: list[bool] = []
    for key in keys:
        model = fit_under([j for j in spk if unit.of(j) != key], curve, features, below)
        for j in (j for j in spk if unit.of(j) == key):
            p = curve(j.speaker_raw or 0.0)
            low = p < below and j.speaker_evidence is not None
            by_curve.append(p)
            by_model.append(model(j.speaker_evidence or {}) if low else p)
            right.append(bool(j.speaker_right))
            under.append(low)
    ok = np.asarray(right, dtype=bool)
    low_mask = np.asarray(under, dtype=bool)
    pairs = [np.asarray(by_curve), np.asarray(by_model)]
    return ModelHeldOut(
        unit=unit,
        units=len(keys),
        clips=len(spk),
        under=int(low_mask.sum()),
        wrong_under=int((~ok & low_mask).sum()),
        ece=_pair(lambda p: ece(reliability_bins(list(p), right)), pairs),
        table=reliability_bins(by_model, right),
        brier=_pair(lambda p: float(np.mean((p - ok) ** 2)), pairs),
        order=_pair(lambda p: wrong_below_right(p[low_mask], ok[low_mask]), pairs),
        first_quarter=(
            wrong_in_least_sure(pairs[0][low_mask], ok[low_mask]),
            wrong_in_least_sure(pairs[1][low_mask], ok[low_mask]),
        ),
    )


def _pair(figure: Callable[[np.ndarray], float], pairs: list[np.ndarray]) -> tuple[float, float]:
    """``figure`` of the curve's probabilities and of the model's, rounded."""
    return round(float(figure(pairs[0])), 4), round(float(figure(pairs[1])), 4)


def wrong_below_right(probability: np.ndarray, right: np.ndarray) -> float:
    """How often a wrong label's probability is below a right one's (ties count half): the
    area under the curve of finding wrong labels by the least sure first."""
    wrong, ok = probability[~right], probability[right]
    if not len(wrong) or not len(ok):
        return 0.5
    below = (wrong[:, None] < ok[None, :]).mean()
    tied = (wrong[:, None] == ok[None, :]).mean()
    return float(below + 0.5 * tied)


def wrong_in_least_sure(probability: np.ndarray, right: np.ndarray, share: float = 0.25) -> int:
    """Wrong labels among the least sure ``share`` of the labels (a stable order: ties by
    position), as a person working down the review queue would meet them."""
    take = int(share * len(probability))
    order = np.argsort(probability, kind="stable")[:take]
    return int((~right[order]).sum())
