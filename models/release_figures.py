"""The figures of a release report, computed from its clips: no I/O, no plotting.

Hours per speaker and per language (split by status), confidence histograms,
review and rejection rates with their reasons, a 2-D map of the clip
embeddings (PCA), which clips to show as samples, and the spectrograms drawn
for them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from convoice.records import ClipStatus, StoredClip

Array = npt.NDArray[np.float64]
STATUSES = (str(ClipStatus.ACCEPTED), str(ClipStatus.REVIEW), str(ClipStatus.REJECTED))
UNKNOWN = "(none)"


@dataclass(frozen=True)
class ClipColumns:
    """The clip columns a report reads, one entry per clip."""

    clip_id: list[str]
    speaker_id: list[str]
    language: list[str]
    status: list[str]
    duration: Array
    speaker_confidence: Array
    transcript_confidence: Array
    review_reasons: list[list[str]]
    human: list[bool]  # a person labelled something on the clip
    embedding: Array  # (n, d)

    def __post_init__(self) -> None:
        n = len(self.clip_id)
        sizes = {len(v) for v in (self.speaker_id, self.language, self.status, self.duration,
                                  self.speaker_confidence, self.transcript_confidence,
                                  self.review_reasons, self.human)}  # fmt: skip
        if sizes != {n} or self.embedding.shape[0] != n:
            raise ValueError(f"clip columns differ in length: {sorted(sizes)} and {n} clips")

    @property
    def n(self) -> int:
        return len(self.clip_id)

    @classmethod
    def from_clips(cls, clips: Sequence[StoredClip]) -> ClipColumns:
        """The columns of released clips."""
        embeddings = [c.embedding or [] for c in clips]
        width = max((len(e) for e in embeddings), default=0)
        return cls(
            clip_id=[c.clip_id for c in clips],
            speaker_id=[c.speaker_id or "" for c in clips],
            language=[c.language or "" for c in clips],
            status=[str(c.status or "") for c in clips],
            duration=np.array([c.duration or 0.0 for c in clips], dtype=np.float64),
            speaker_confidence=np.array([number(c.speaker_confidence) for c in clips]),
            transcript_confidence=np.array([number(c.transcript_confidence) for c in clips]),
            review_reasons=[[str(r) for r in c.review_reasons] for c in clips],
            human=[bool(c.labelled_by) for c in clips],
            embedding=np.array(
                [e if len(e) == width else [0.0] * width for e in embeddings], dtype=np.float64
            ).reshape(len(clips), width),
        )


def number(value: float | None) -> float:
    """``value`` as a float; NaN for None."""
    return float("nan") if value is None else float(value)


def thresholds(clips: Sequence[StoredClip]) -> dict[str, float]:
    """The routing thresholds recorded with the clips (from the first clip's settings)."""
    try:
        routing = json.loads(clips[0].settings).get("routing", {}) if clips else {}
    except (TypeError, ValueError):
        return {}
    return {k: float(v) for k, v in routing.items() if isinstance(v, int | float)}


@dataclass(frozen=True)
class Unit:
    """How durations are shown: hours, or minutes for releases shorter than an hour."""

    name: str
    per_hour: float

    @classmethod
    def for_hours(cls, hours: float) -> Unit:
        return cls("hours", 1.0) if hours >= 1.0 else cls("minutes", 60.0)

    def show(self, hours: float) -> str:
        return f"{hours * self.per_hour:.2f}"


@dataclass(frozen=True)
class Share:
    """Clips and hours of one speaker (or language), by status."""

    name: str
    clips: int
    hours: dict[str, float]  # status -> hours

    @property
    def total_hours(self) -> float:
        return float(sum(self.hours.values()))


@dataclass(frozen=True)
class Rates:
    """How much of the release is accepted, waits for review, or was rejected."""

    clips: dict[str, int]  # status -> clips
    hours: dict[str, float]  # status -> hours
    reasons: list[tuple[str, int]]  # review reason -> clips, most frequent first
    human_labelled: int  # clips a person labelled

    def share(self, status: str, by: str = "clips") -> float:
        """Fraction of clips (or of hours, ``by="hours"``) with ``status``."""
        values: dict[str, float] = dict(self.hours) if by == "hours" else dict(self.clips)
        total = sum(values.values())
        return values.get(status, 0) / total if total else 0.0


@dataclass(frozen=True)
class EmbeddingMap:
    """Clip embeddings projected on their first two principal components."""

    xy: Array  # (n, 2)
    explained: tuple[float, float]  # variance ratio of each axis
    rows: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


def hours_by(groups: Sequence[str], clips: ClipColumns) -> list[Share]:
    """One :class:`Share` per distinct value of ``groups``, most hours first."""
    hours: dict[str, dict[str, float]] = {}
    counts: Counter[str] = Counter()
    for name, status, duration in zip(groups, clips.status, clips.duration, strict=True):
        key = name or UNKNOWN
        per = hours.setdefault(key, dict.fromkeys(STATUSES, 0.0))
        per[status] = per.get(status, 0.0) + float(duration) / 3600.0
        counts[key] += 1
    shares = [Share(name, counts[name], per) for name, per in hours.items()]
    return sorted(shares, key=lambda s: (-s.total_hours, s.name))


def rates(clips: ClipColumns) -> Rates:
    """Counts and hours per status, and the review reasons of the clips in review."""
    by_clips: Counter[str] = Counter(clips.status)
    by_hours: dict[str, float] = {}
    for status, duration in zip(clips.status, clips.duration, strict=True):
        by_hours[status] = by_hours.get(status, 0.0) + float(duration) / 3600.0
    reasons: Counter[str] = Counter()
    for status, why in zip(clips.status, clips.review_reasons, strict=True):
        if status == str(ClipStatus.REVIEW):
            reasons.update(why or [UNKNOWN])
    return Rates(
        clips={s: by_clips.get(s, 0) for s in STATUSES} | dict(by_clips),
        hours={s: by_hours.get(s, 0.0) for s in STATUSES} | by_hours,
        reasons=sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])),
        human_labelled=int(sum(clips.human)),
    )


def histogram(values: Array, bins: int = 20, low: float = 0.0, high: float = 1.0) -> Array:
    """Counts of ``values`` in ``bins`` equal bins over [low, high] (outside values clipped)."""
    finite = values[np.isfinite(values)]
    counts, _ = np.histogram(np.clip(finite, low, high), bins=bins, range=(low, high))
    return counts.astype(np.float64)


def pca_2d(embeddings: Array, max_points: int = 5000, seed: int = 0) -> EmbeddingMap:
    """The first two principal components of (at most ``max_points``) embeddings."""
    n = embeddings.shape[0]
    rows: npt.NDArray[np.int64] = np.arange(n, dtype=np.int64)
    if n > max_points:
        chosen = np.random.default_rng(seed).choice(n, max_points, replace=False)
        rows = np.sort(chosen).astype(np.int64)
    data = embeddings[rows].astype(np.float64)
    if data.shape[0] < 2:
        return EmbeddingMap(np.zeros((data.shape[0], 2)), (0.0, 0.0), rows)
    centred = data - data.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])
    xy = centred @ components.T
    variance = singular**2
    total = float(variance.sum()) or 1.0
    ratio = [float(v) / total for v in variance[:2]] + [0.0, 0.0]
    return EmbeddingMap(xy, (ratio[0], ratio[1]), rows)


def pick_samples(clips: ClipColumns, speakers: list[Share], n: int) -> list[int]:
    """Rows of up to ``n`` clips to listen to: the most confident clip of each biggest
    speaker, and, when there is one, the least confident clip waiting for review."""
    if n <= 0 or clips.n == 0:
        return []
    review = [i for i in range(clips.n) if clips.status[i] == str(ClipStatus.REVIEW)]
    slots = n - 1 if review and n > 1 else n
    picked: list[int] = []
    for share in speakers:
        if len(picked) >= slots:
            break
        own = [i for i in range(clips.n) if (clips.speaker_id[i] or UNKNOWN) == share.name]
        usable = [i for i in own if clips.status[i] == str(ClipStatus.ACCEPTED)] or own
        picked.append(max(usable, key=lambda i: (clips.speaker_confidence[i], -i)))
    if review:
        rest = [i for i in review if i not in picked] or review
        picked.append(min(rest, key=lambda i: (clips.transcript_confidence[i], i)))
    ordered = list(dict.fromkeys(picked))
    return ordered[:n]


def spectrogram(
    samples: Array, n_fft: int = 512, hop: int = 160
) -> Array:  # (n_fft // 2 + 1, frames)
    """Power spectrogram (Hann window) of mono ``samples``."""
    signal = np.asarray(samples, dtype=np.float64)
    if signal.ndim != 1:
        raise ValueError(f"expected mono samples, got shape {signal.shape}")
    if len(signal) < n_fft:
        signal = np.pad(signal, (0, n_fft - len(signal)))
    frames = 1 + (len(signal) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    windowed = signal[index] * np.hanning(n_fft)[None, :]
    power: Array = (np.abs(np.fft.rfft(windowed, axis=1)) ** 2).T
    return power


def mel_filterbank(sample_rate: int, n_fft: int = 512, n_mels: int = 64) -> Array:
    """Triangular filters on the HTK mel scale, (n_mels, n_fft // 2 + 1)."""

    def mel(hz: Array) -> Array:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m: Array) -> Array:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    top = float(mel(np.array([sample_rate / 2.0]))[0])
    edges = hz(np.linspace(0.0, top, n_mels + 2, dtype=np.float64))
    freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-9)
    bank: Array = np.maximum(0.0, np.minimum(rising, falling))
    return bank


def to_db(power: Array, floor_db: float = 80.0) -> Array:
    """Decibels relative to the maximum, floored ``floor_db`` below it."""
    db = 10.0 * np.log10(np.maximum(power, 1e-12))
    result: Array = np.maximum(db, db.max() - floor_db)
    return result
