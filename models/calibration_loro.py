"""Will a speaker curve carry over to voices it was not fitted on? Leave one recording out.

A curve judged on the clips it was fitted on always looks calibrated (the
isotonic fit that shipped as ``shipped-1``: ECE 0.019 in-sample, 0.084 on the
reporting half). Errors cluster by recording speaker (one voice given another's
id is wrong in all its clips), so the honest check refits the curve once per
recording, leaving that recording out, and judges each clip only by the curve
that never saw its recording (or, where the truth is known, every clip of one
voice: :class:`LeaveOut`). The pooled held-out reliability table and its ECE
(:func:`leave_one_recording_out`) are what a curve may be chosen by; the
accepted clips at the target precision and the share of their speech are
printed beside it, because a better calibrated curve changes what is accepted.
(Pure computation.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from convoice.models.calibration import Judged, ece, reliability_bins, speaker_judged
from convoice.records import Bin, CalibrationError, Curve

Fitter = Callable[[Sequence[float], Sequence[bool], Sequence[str]], Curve]
"""Fits a speaker curve on raw scores, rights and groups (recording speakers)."""


class LeaveOut(StrEnum):
    """What is left out at a time: a recording, or every clip of one voice (the benchmark
    knows each clip's true speaker; voices recur across recordings, so a recording left
    out still has its voices in the fit)."""

    RECORDING = "recording"
    VOICE = "voice"

    def of(self, judged: Judged) -> str:
        return judged.key if self == LeaveOut.RECORDING else judged.voice


@dataclass(frozen=True)
class HeldOut:
    """A fitting method's leave-one-out figures on judged clips."""

    unit: LeaveOut
    units: int  # recordings or voices
    clips: int
    ece: float  # pooled over the held-out predictions
    brier: float  # mean squared error of the held-out probabilities (rewards sharpness too)
    in_sample_ece: float  # the curve fitted on every clip, judged on the same clips
    table: tuple[Bin, ...]
    target: float
    accepted: int  # held-out clips whose probability reaches the target
    accepted_right: float | None  # the share of them right (None: none accepted)
    speech_accepted: float  # their speech over the judged clips' speech

    def render(self, method: str) -> list[str]:
        right = "-" if self.accepted_right is None else f"{self.accepted_right:.4f}"
        return [
            f"{method}: held-out ECE (leave one {self.unit} out) {self.ece:.4f} over "
            f"{self.clips} clips of {self.units} {self.unit}s (Brier {self.brier:.4f}); "
            f"in-sample ECE {self.in_sample_ece:.4f}",
            f"  accepted at {self.target:g} (held out): {self.accepted} clips, right {right}, "
            f"speech accepted {self.speech_accepted:.4f}",
        ]


@dataclass(frozen=True)
class AsShipped:
    """A fixed curve (the calibration that ships) judged on clips it was not fitted on."""

    units: int  # recordings
    clips: int
    ece: float
    brier: float
    table: tuple[Bin, ...]
    target: float
    accepted: int  # clips whose probability reaches the target
    accepted_right: float | None  # the share of them right (None: none accepted)
    speech_accepted: float  # their speech over the judged clips' speech

    def render(self, version: str) -> list[str]:
        right = "-" if self.accepted_right is None else f"{self.accepted_right:.4f}"
        return [
            f"{version} as it ships (fitted on none of these clips unless a store is the one "
            f"it was fitted on): ECE {self.ece:.4f} over {self.clips} clips of {self.units} "
            f"recordings (Brier {self.brier:.4f})",
            f"  accepted at {self.target:g}: {self.accepted} clips, right {right}, "
            f"speech accepted {self.speech_accepted:.4f}",
        ]


def judge_curve(judged: Sequence[Judged], curve: Curve, target: float) -> AsShipped:
    """``curve`` as it is (no refit) on every judged clip: the figure a refit must beat."""
    spk = speaker_judged(judged)
    if not spk:
        raise CalibrationError("no judged speaker labels to judge the curve on")
    probability = [curve(j.speaker_raw or 0.0) for j in spk]
    right = [bool(j.speaker_right) for j in spk]
    table = reliability_bins(probability, right)
    taken = [ok for p, ok in zip(probability, right, strict=True) if p >= target]
    speech = sum(j.duration for j in spk)
    accepted_speech = sum(j.duration for j, p in zip(spk, probability, strict=True) if p >= target)
    return AsShipped(
        units=len({j.key for j in spk}),
        clips=len(spk),
        ece=round(ece(table), 4),
        brier=round(float(np.mean((np.asarray(probability) - np.asarray(right)) ** 2)), 4),
        table=table,
        target=target,
        accepted=len(taken),
        accepted_right=round(sum(taken) / len(taken), 4) if taken else None,
        speech_accepted=round(accepted_speech / speech, 4) if speech else 0.0,
    )


def leave_out_keys(spk: Sequence[Judged], unit: LeaveOut) -> list[str]:
    """The recordings (or voices) of ``spk`` to leave out one at a time, sorted; at least two
    are needed, and every clip must name its own."""
    keys = sorted({unit.of(j) for j in spk})
    if len(keys) < 2 or "" in keys:
        raise CalibrationError(f"at least 2 {unit}s are needed, each clip with one")
    return keys


def _fit(fitter: Fitter, judged: Sequence[Judged]) -> Curve:
    return fitter(
        [j.speaker_raw or 0.0 for j in judged],
        [bool(j.speaker_right) for j in judged],
        [j.group or j.key for j in judged],
    )


def leave_one_recording_out(
    judged: Sequence[Judged], fitter: Fitter, target: float, unit: LeaveOut = LeaveOut.RECORDING
) -> HeldOut:
    """Each recording's (or voice's) clips judged by the curve ``fitter`` made from all others."""
    spk = speaker_judged(judged)
    keys = leave_out_keys(spk, unit)
    probability: list[float] = []
    right: list[bool] = []
    speech = accepted_speech = 0.0
    taken: list[bool] = []
    for key in keys:
        curve = _fit(fitter, [j for j in spk if unit.of(j) != key])
        for j in (j for j in spk if unit.of(j) == key):
            p = curve(j.speaker_raw or 0.0)
            probability.append(p)
            right.append(bool(j.speaker_right))
            speech += j.duration
            if p >= target:
                taken.append(bool(j.speaker_right))
                accepted_speech += j.duration
    table = reliability_bins(probability, right)
    whole = _fit(fitter, spk)
    in_sample = reliability_bins(
        [whole(j.speaker_raw or 0.0) for j in spk], [bool(j.speaker_right) for j in spk]
    )
    return HeldOut(
        unit=unit,
        units=len(keys),
        clips=len(spk),
        ece=round(ece(table), 4),
        brier=round(float(np.mean((np.asarray(probability) - np.asarray(right)) ** 2)), 4),
        in_sample_ece=round(ece(in_sample), 4),
        table=table,
        target=target,
        accepted=len(taken),
        accepted_right=round(sum(taken) / len(taken), 4) if taken else None,
        speech_accepted=round(accepted_speech / speech, 4) if speech else 0.0,
    )


def transcript_rows(judged: Sequence[Judged]) -> list[Judged]:
    """The judged transcripts, their raw score and rightness in the fields the checks here
    read, so that a transcript curve (one for every language) is judged as a speaker curve is."""
    return [
        replace(j, speaker_raw=j.transcript_raw, speaker_right=j.transcript_right)
        for j in judged
        if j.transcript_raw is not None and j.transcript_right is not None
    ]
