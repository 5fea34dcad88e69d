"""Voice matching with the WORLD vocoder (pyworld): move a voice toward a reference voice.

This is not cloning. A shipped synthesiser's speech is analysed into pitch,
spectral envelope and aperiodicity; its pitch is moved to the reference's
mean and spread (in log Hz), its spectral envelope is warped along the
frequency axis by the factor that best lines its average envelope up with
the reference's (formants: vocal tract length), then equalised toward the
reference's average envelope, and the result is synthesised again. Timing,
prosody and articulation stay the shipped voice's.

Everything works on 16 kHz mono float32 arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from convoice.records import FloatArray

Float64 = npt.NDArray[np.float64]

RATE = 16_000
FRAME_MS = 5.0
GRID = np.linspace(80.0, 7600.0, 160)  # Hz: where average envelopes are compared
WARPS = np.linspace(0.80, 1.25, 28)  # formant scaling factors tried
EQ_WEIGHT = 1.0  # share of the remaining average-envelope difference applied
EQ_TRIES = (1.0,)  # equaliser strengths tried when a score guides the match (0, 0.5 never won)
EQ_LIMIT = np.log(10 ** (12 / 10))  # at most 12 dB of equalisation per band
SMOOTH_BINS = 9
PROFILE_MAX_S = 20.0  # reference speech analysed for its profile


class MatchError(ValueError):
    """The audio has too little voiced speech to analyse."""


@dataclass(frozen=True)
class VoiceProfile:
    """What matching needs to know about a voice."""

    log_f0_mean: float
    log_f0_std: float
    envelope: Float64  # mean log power envelope on GRID over voiced frames
    voiced_frames: int


@dataclass(frozen=True)
class Analysis:
    """WORLD's analysis of one utterance."""

    f0: Float64  # shape: (frames,), 0 where unvoiced
    sp: Float64  # shape: (frames, fft_size // 2 + 1), power envelope
    ap: Float64  # shape: (frames, fft_size // 2 + 1)


def analyse(samples: FloatArray, aperiodicity: bool = True) -> Analysis:
    """WORLD analysis (DIO + StoneMask pitch, CheapTrick envelope, D4C aperiodicity).

    Without ``aperiodicity`` (enough for a :func:`profile`), ``ap`` is empty.
    """
    import pyworld

    x = np.ascontiguousarray(samples, dtype=np.float64)
    f0, times = pyworld.dio(x, RATE, frame_period=FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, RATE)
    sp = pyworld.cheaptrick(x, f0, times, RATE)
    ap = pyworld.d4c(x, f0, times, RATE) if aperiodicity else np.zeros((0, 0))
    return Analysis(f0, sp, ap)


def reference_profile(samples: FloatArray, max_s: float = PROFILE_MAX_S) -> VoiceProfile:
    """The profile of a reference voice from at most ``max_s`` seconds of its speech."""
    return profile(analyse(samples[: int(max_s * RATE)], aperiodicity=False))


def _on_grid(sp: Float64) -> Float64:
    """Log power envelopes resampled onto GRID, shape (frames, len(GRID))."""
    freqs = np.linspace(0.0, RATE / 2.0, sp.shape[1])
    logs = np.log(np.maximum(sp, 1e-20))
    return np.stack([np.interp(GRID, freqs, row) for row in logs])


def profile(analysis: Analysis, min_voiced: int = 40) -> VoiceProfile:
    """The voice's pitch statistics and average voiced envelope; MatchError if barely voiced."""
    voiced = analysis.f0 > 0
    if int(voiced.sum()) < min_voiced:
        raise MatchError(f"only {int(voiced.sum())} voiced frames: too little speech to match")
    log_f0 = np.log(analysis.f0[voiced])
    envelope = _on_grid(analysis.sp[voiced]).mean(axis=0)
    return VoiceProfile(
        float(log_f0.mean()), float(max(log_f0.std(), 1e-3)), envelope, int(voiced.sum())
    )


def _smooth(values: Float64) -> Float64:
    kernel = np.ones(SMOOTH_BINS) / SMOOTH_BINS
    padded = np.pad(values, SMOOTH_BINS // 2, mode="edge")
    return np.asarray(np.convolve(padded, kernel, mode="valid"), np.float64)


def best_warp(source: Float64, target: Float64) -> float:
    """The factor ``a`` for which the source envelope at ``f / a`` best fits the target's shape."""
    errors = []
    for a in WARPS:
        warped = np.interp(GRID / a, GRID, source)
        diff = (target - target.mean()) - (warped - warped.mean())
        errors.append(float(np.mean(diff**2)))
    return float(WARPS[int(np.argmin(errors))])


def warp_envelope(sp: Float64, factor: float) -> Float64:
    """Every frame's envelope stretched along frequency: formants move up by ``factor``."""
    freqs = np.linspace(0.0, RATE / 2.0, sp.shape[1])
    return np.stack([np.interp(freqs / factor, freqs, row) for row in sp])


def equaliser(source: VoiceProfile, target: VoiceProfile, factor: float) -> Float64:
    """Per-bin log-power gain (full resolution) taking the warped source toward the target."""
    warped = np.interp(GRID / factor, GRID, source.envelope)
    gain = _smooth(target.envelope - warped) * EQ_WEIGHT
    gain = np.clip(gain - gain.mean(), -EQ_LIMIT, EQ_LIMIT)  # shape only: loudness is levelled
    return gain


def render(analysis: Analysis, source: VoiceProfile, target: VoiceProfile, factor: float,
           eq_weight: float) -> FloatArray:  # fmt: skip
    """Re-synthesise ``analysis`` with the target's pitch statistics, a formant warp by
    ``factor`` and ``eq_weight`` of the average-envelope equaliser."""
    import pyworld

    voiced = analysis.f0 > 0
    f0 = analysis.f0.copy()
    z = (np.log(f0[voiced]) - source.log_f0_mean) / source.log_f0_std
    f0[voiced] = np.exp(z * target.log_f0_std + target.log_f0_mean)
    sp = warp_envelope(analysis.sp, factor)
    freqs = np.linspace(0.0, RATE / 2.0, sp.shape[1])
    gain = np.interp(freqs, GRID, equaliser(source, target, factor)) * (eq_weight / EQ_WEIGHT)
    sp = sp * np.exp(gain)[None, :]
    out = pyworld.synthesize(f0, np.ascontiguousarray(sp), analysis.ap, RATE, FRAME_MS)
    peak = float(np.max(np.abs(out))) or 1.0
    return (out / peak * 0.9).astype(np.float32)


def match(
    samples: FloatArray, target: VoiceProfile, score: Callable[[FloatArray], float] | None = None
) -> tuple[FloatArray, dict[str, float]]:
    """``samples`` (16 kHz speech) moved toward ``target``; returns audio and what was changed.

    With ``score`` (higher = closer to the target voice, e.g. a speaker encoder's
    cosine to the reference), a few formant warps and equaliser strengths are
    rendered and the best-scoring one is kept (analysis by synthesis), or the
    input itself (``{"unchanged": 1.0}``) when no change scores higher; without
    ``score``, the best-fitting warp and the default equaliser.
    """
    analysis = analyse(samples)
    source = profile(analysis)
    fitted = best_warp(source.envelope, target.envelope)
    options = [(fitted, EQ_WEIGHT)]
    if score is not None:
        options = [(f, w) for f in sorted({1.0, fitted, float(np.sqrt(fitted))}) for w in EQ_TRIES]
    scored = []
    for factor, weight in options:
        audio = render(analysis, source, target, factor, weight)
        scored.append((score(audio) if score else 0.0, factor, weight, audio))
    if score is not None:  # the shipped voice as it is: matching must bring it closer
        scored.append((score(samples), 0.0, 0.0, samples))
    _, factor, weight, audio = max(scored, key=lambda item: item[0])
    if factor == 0.0:
        return audio, {"unchanged": 1.0, "candidates": float(len(options))}
    changes = {
        "pitch_shift_semitones": round(
            float(12 * (target.log_f0_mean - source.log_f0_mean) / np.log(2)), 2
        ),
        "formant_factor": round(float(factor), 3),
        "equaliser": round(float(weight), 2),
        "candidates": float(len(options)),
    }
    return audio, changes
