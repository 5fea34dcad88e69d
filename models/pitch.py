"""Voice pitch: a clip's median fundamental frequency (F0), and how far two pitches are apart.

A cheap YIN estimator (de Cheveigné and Kawahara, 2002) in numpy: 40 ms frames
every 10 ms, the cumulative mean normalised difference function computed from
an FFT autocorrelation, the first dip below ``threshold`` between 60 and 420 Hz,
refined by a parabola. Frames quieter than a tenth of the clip's loud frames, or
without such a dip, are unvoiced. A clip's pitch is the median F0 of its voiced
frames (NaN when fewer than ``min_voiced`` frames are voiced).

The harmonics' spacing survives telephone band-limiting (300-3400 Hz), so the
period (and the F0) is found even where the fundamental itself was filtered out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from convoice.records import SAMPLE_RATE, FloatArray, Region, Samples, sample_index

FRAME_S = 0.040
HOP_S = 0.010
F0_MIN = 60.0
F0_MAX = 420.0


def frame_f0(
    wave: FloatArray,
    sample_rate: int = SAMPLE_RATE,
    threshold: float = 0.15,
) -> FloatArray:
    """Per 10 ms frame, the F0 in Hz (NaN where unvoiced)."""
    frame = int(FRAME_S * sample_rate)
    hop = int(HOP_S * sample_rate)
    x = np.asarray(wave, dtype=np.float64).ravel()
    if x.size < frame:
        return np.zeros(0, dtype=np.float32)
    n = 1 + (x.size - frame) // hop
    index = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    frames = x[index]
    frames = frames - frames.mean(axis=1, keepdims=True)
    lo = int(sample_rate / F0_MAX)
    hi = min(int(sample_rate / F0_MIN), frame // 2)
    w = frame - hi  # the integration window of the difference function
    size = 1 << math.ceil(math.log2(frame + w))
    spec_full = np.fft.rfft(frames, size, axis=1)
    spec_head = np.fft.rfft(frames[:, :w], size, axis=1)
    # r[t] = sum_{j<w} x[j] x[j+t]: the cross-correlation of the head with the frame
    cross = np.fft.irfft(np.conj(spec_head) * spec_full, size, axis=1)[:, : hi + 1]
    sq = np.cumsum(np.concatenate([np.zeros((n, 1)), frames**2], axis=1), axis=1)
    energy_head = sq[:, w]
    lags = np.arange(hi + 1)
    energy_lag = sq[:, lags + w] - sq[:, lags]  # sum_{j<w} x[j+t]^2
    diff = energy_head[:, None] + energy_lag - 2.0 * cross
    diff[:, 0] = 0.0
    running = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, hi + 1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] / np.where(running > 0, running, 1.0)
    loud = energy_head > 0.1 * np.percentile(energy_head, 90) if n else energy_head > 0
    out = np.full(n, np.nan, dtype=np.float32)
    below = cmnd[:, lo:hi] < threshold
    for f in np.flatnonzero(loud & below.any(axis=1)):
        t = lo + int(np.argmax(below[f]))
        while t + 1 < hi and cmnd[f, t + 1] < cmnd[f, t]:
            t += 1
        a, b, c = cmnd[f, t - 1], cmnd[f, t], cmnd[f, min(t + 1, hi)]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom > 0 else 0.0
        out[f] = sample_rate / (t + float(np.clip(shift, -1.0, 1.0)))
    return out


def median_f0(wave: FloatArray, sample_rate: int = SAMPLE_RATE, min_voiced: int = 10) -> float:
    """The median F0 (Hz) of a clip's voiced frames; NaN when fewer than ``min_voiced``."""
    f0 = frame_f0(wave, sample_rate)
    voiced = f0[np.isfinite(f0)]
    return float(np.median(voiced)) if voiced.size >= min_voiced else float("nan")


def clip_f0(samples: Samples, regions: Sequence[Region]) -> tuple[float, ...]:
    """Each region's :func:`median_f0` (Hz, NaN when too little is voiced), read one at a time.

    About 4 ms of CPU per second of clip audio (tuning half, seeds 11-13: 2.4 s for 660 s).
    """
    return tuple(median_f0(samples[sample_index(r.start) : sample_index(r.end)]) for r in regions)


def speaker_f0(clip_f0: Sequence[float], durations: Sequence[float]) -> float:
    """A speaker's pitch from its clips': the duration-weighted median of the known ones."""
    f = np.asarray(clip_f0, dtype=np.float64)
    d = np.asarray(durations, dtype=np.float64)
    keep = np.isfinite(f) & (d > 0)
    if not keep.any():
        return float("nan")
    f, d = f[keep], d[keep]
    order = np.argsort(f)
    cum = np.cumsum(d[order])
    return float(f[order][int(np.searchsorted(cum, cum[-1] / 2))])


def semitones(a: float, b: float) -> float:
    """How far two pitches are apart in semitones (NaN when either is unknown)."""
    if not (a > 0 and b > 0):
        return float("nan")
    return abs(12.0 * math.log2(a / b))


def pitch_range(values: Sequence[float]) -> tuple[float, float]:
    """The lowest and highest of the known pitches (Hz; NaN, NaN when none is known)."""
    x = np.asarray([f for f in values if f > 0], dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.min()), float(x.max())


def apart(a: Sequence[float], b: Sequence[float], limit: float) -> bool:
    """Whether two speakers are more than ``limit`` semitones apart in pitch: the gap between
    the ranges of their clips' pitches (lowest to highest) exceeds it.

    ``a``/``b``: clip pitches (Hz; NaN or 0 unknown), or a range ``[low, high]`` (the
    registry keeps each speaker's so, :func:`pitch_range`). The ranges are apart exactly when
    every clip of one is more than the limit from every clip of the other on the same side;
    a clip overlapped by another voice only widens its speaker's range, so it cannot make two
    alike voices look apart; an unknown pitch on either side never vetoes.
    """
    if limit <= 0:
        return False
    lo_a, hi_a = pitch_range(a)
    lo_b, hi_b = pitch_range(b)
    if not (lo_a > 0 and lo_b > 0):
        return False
    gap = max(math.log2(lo_b / hi_a), math.log2(lo_a / hi_b), 0.0)
    return 12.0 * gap > limit


def pitch_allowed(
    mine: Sequence[Sequence[float]], known: Sequence[Sequence[float]], limit: float
) -> npt.NDArray[np.bool_]:
    """Per (recording speaker, known speaker), whether they may match: not :func:`apart`.

    ``mine``/``known``: each speaker's clip pitches, or its pitch range (Hz; NaN or 0
    unknown); ``limit``: semitones (0: no veto, every pair allowed).
    """
    out = np.ones((len(mine), len(known)), dtype=bool)
    if limit > 0:
        for i, a in enumerate(mine):
            for j, b in enumerate(known):
                out[i, j] = not apart(a, b, limit)
    return out
