"""The artefacts of the engine, one dataclass each, linked by ids.

Times are seconds from the start of the recording (``start`` and ``end``).
Every record that a model produced carries a :class:`Provenance` naming the
models and the settings that made it, and every label says whether a machine
or a person made it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from convoice.records.base import (
    ClipStatus,
    FloatArray,
    LabelSource,
    LabelStatus,
    stable_id,
)


@dataclass(frozen=True)
class Source:
    """One line of an operator's request: a URL and, optionally, its declared licence."""

    url: str
    declared_license: str | None = None  # the operator's declaration, e.g. "CC-BY-4.0"
    note: str = ""
    line: int | None = None  # where it is in the operator's sources file
    author: str = ""  # who made it, for the attribution where the platform names nobody
    page: str = ""  # where people find the work, for the attribution of a local file or link


@dataclass(frozen=True)
class MediaItem:
    """One downloadable video or audio found behind a source URL, before download."""

    url: str  # the page URL the extractor resolved (webpage_url)
    source_url: str  # what the operator gave
    extractor: str
    media_id: str
    title: str
    uploader: str
    uploader_url: str
    upload_date: str  # YYYYMMDD when the platform tells it, else ""
    license: str  # canonical id ("CC-BY-4.0") or "" when none is known
    license_raw: str  # what the platform or the operator said, verbatim
    license_origin: str  # "platform" | "declared" | "none"
    duration: float | None
    page: str = ""  # the operator's public address of the work, linked in its attribution

    @property
    def attribution_link(self) -> str:
        """What the attribution links to: the operator's page, else the media's URL."""
        return self.page or self.url

    @property
    def recording_id(self) -> str:
        return stable_id("rec", self.extractor, self.media_id)


@dataclass(frozen=True)
class Recording:
    """A downloaded, licence-checked recording with its attribution."""

    recording_id: str
    url: str
    source_url: str
    title: str
    uploader: str
    uploader_url: str
    upload_date: str
    license: str
    license_raw: str
    license_origin: str
    attribution: str  # a ready-to-print CC attribution line
    duration: float
    sample_rate: int
    audio_uri: str  # 16 kHz mono FLAC of the whole recording, in the store
    run_id: str
    ingested_at: str
    source_audio: str = ""  # the original's audio track taken: "track 2 of 3 (default, eng): ..."


@dataclass(frozen=True)
class SkippedItem:
    """An item that was not ingested, and why (licence, unreachable, corrupt, ...)."""

    source_url: str
    url: str
    title: str
    reason_code: str  # machine-readable: a SkipReason ("not_creative_commons", ...)
    reason: str  # for people
    run_id: str
    at: str
    line: int | None = None  # the line of the operator's sources file, for a bad row of it


@dataclass(frozen=True)
class Region:
    """A plain time interval (speech, overlap)."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds from the clip start
    end: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    """What the ASR said about one clip."""

    text: str
    language: str
    language_probability: float
    words: tuple[Word, ...]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    model: str = ""  # the Whisper that made it ("" = the recording's provenance says)
    round_two: str = ""  # the round-two attempt it already is (made with a channel's vocabulary)
    post_corrected: tuple[tuple[str, str], ...] = ()  # (machine span, taught word) replaced


@dataclass(frozen=True)
class Provenance:
    """The models and settings that produced a row."""

    pipeline_version: str
    models: dict[str, str]
    settings: dict[str, Any]

    @property
    def settings_hash(self) -> str:
        blob = json.dumps(self.settings, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


@dataclass
class Clip:
    """A single-speaker, overlap-free piece of a recording and all its labels."""

    clip_id: str
    recording_id: str
    start: float
    end: float
    recording_speaker: str  # cluster label inside the recording ("S0", "S1", ...)
    embedding: FloatArray  # resemblyzer, 256-d, unit norm
    speaker_id: str = ""  # identity across recordings (registry id)
    speaker_confidence: float = 0.0
    overlap_nearby: bool = False
    transcript: Transcript | None = None
    transcript_confidence: float = 0.0
    status: ClipStatus = ClipStatus.REVIEW
    review_reasons: tuple[str, ...] = ()
    speaker_label_source: LabelSource = LabelSource.MACHINE
    transcript_label_source: LabelSource = LabelSource.MACHINE
    labelled_by: str = ""
    labelled_at: str = ""
    audio_uri: str = ""
    extra: dict[str, float | str] = field(default_factory=dict)  # measurements; a few names
    speaker_embedding: FloatArray | None = None  # the identity encoder's (CAM++, 192-d), unit
    speaker_status: LabelStatus | None = None  # routed on its own; None: as ``status``
    transcript_status: LabelStatus | None = None
    speaker_score: float = 0.0  # the raw score speaker_confidence was calibrated from
    transcript_score: float = 0.0  # the raw score transcript_confidence was calibrated from
    calibration: str = ""  # the calibration version that made the confidences ("" = raw)
    f0_hz: float = float("nan")  # median F0 of its voiced frames (models.pitch); NaN unknown

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def identity_vector(self) -> FloatArray:
        """The embedding the registry sums: CAM++'s when the clip has one, else resemblyzer's."""
        return self.embedding if self.speaker_embedding is None else self.speaker_embedding


def identity_vector(row: Mapping[str, Any], dim: int | None = None) -> Any:
    """A clip row's identity embedding: ``speaker_embedding``, else (older rows) ``embedding``.

    With ``dim`` (the registry's vector length), the one of that length: a store
    re-labelled by a resemblyzer encoder round identifies on ``embedding`` again.
    """
    return pick_identity_vector(row.get("speaker_embedding"), row.get("embedding"), dim)


def pick_identity_vector(speaker_embedding: Any, embedding: Any, dim: int | None = None) -> Any:
    """The rule of :func:`identity_vector`, on the two columns' values."""
    if speaker_embedding is None or (dim is not None and len(speaker_embedding) != dim):
        return embedding
    return speaker_embedding


@dataclass
class Speaker:
    """An identity that holds across recordings.

    The registry keeps the sum of its clips' unit embeddings, so matching a new
    recording costs one dot product per known speaker, never a pass over clips.
    ``last_*`` remember the latest recording's contribution so that absorbing
    the same recording again (a resumed run) replaces it instead of counting twice.
    """

    speaker_id: str
    vector_sum: FloatArray
    n_clips: int
    total_duration: float
    n_recordings: int
    first_seen: str
    updated_at: str
    last_recording_id: str = ""
    last_sum: FloatArray | None = None
    last_n: int = 0
    last_duration: float = 0.0
    label_source: LabelSource = LabelSource.MACHINE
    name: str = ""
    # The lowest and highest median F0 (Hz) of the clips it absorbed (models.pitch.apart);
    # NaN while none is known (speakers of stores written before pitch).
    f0_low_hz: float = float("nan")
    f0_high_hz: float = float("nan")

    @property
    def centroid(self) -> FloatArray:
        norm = float(np.linalg.norm(self.vector_sum))
        return (self.vector_sum / norm).astype(np.float32) if norm > 0 else self.vector_sum

    def absorb(
        self,
        recording_id: str,
        embeddings: FloatArray,
        total_duration: float,
        at: str,
        f0_hz: Sequence[float] = (),
    ) -> None:
        """Add one recording's clips (rows of unit vectors, their F0s ``f0_hz`` when known);
        idempotent per recording (the same clips again leave the pitch range as it was)."""
        self.widen_pitch(f0_hz)
        new_sum = embeddings.sum(axis=0).astype(np.float32)
        if self.last_recording_id == recording_id and self.last_sum is not None:
            self.vector_sum = self.vector_sum - self.last_sum
            self.n_clips -= self.last_n
            self.total_duration -= self.last_duration
            self.n_recordings -= 1
        self.vector_sum = (self.vector_sum + new_sum).astype(np.float32)
        self.n_clips += int(embeddings.shape[0])
        self.total_duration += float(total_duration)
        self.n_recordings += 1
        self.last_recording_id = recording_id
        self.last_sum = new_sum
        self.last_n = int(embeddings.shape[0])
        self.last_duration = float(total_duration)
        self.updated_at = at

    @property
    def pitch(self) -> tuple[float, float]:
        """(lowest, highest) clip F0 in Hz, NaN when unknown."""
        return self.f0_low_hz, self.f0_high_hz

    def widen_pitch(self, f0_hz: Sequence[float]) -> None:
        """Widen the pitch range to hold ``f0_hz`` (NaN or 0: unknown, ignored)."""
        known = [float(f) for f in (*f0_hz, self.f0_low_hz, self.f0_high_hz) if f > 0]
        if known:
            self.f0_low_hz, self.f0_high_hz = min(known), max(known)


@dataclass(frozen=True)
class ClipLabel:
    """The machine's new label of one clip."""

    clip_id: str
    speaker_id: str
    speaker_confidence: float
    status: ClipStatus  # accepted or review
    review_reasons: tuple[str, ...]
    own_similarity: float
    other_similarity: float
    identity_similarity: float
    absorbed: bool  # counted in its speaker's registry sum (labelling.absorbed_clips)
    speaker_score_raw: float = 0.0  # the raw score ``speaker_confidence`` was mapped from
    calibration: str = ""  # the calibration version that mapped it ("" = raw)
    speaker_kind: str = ""  # the calibration curve it was judged by (routing.speaker_kind)
