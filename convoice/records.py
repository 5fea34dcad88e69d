"""The artefacts of the engine, one dataclass each, linked by ids.

Times are seconds from the start of the recording (``start`` and ``end``).
Every record that a model produced carries a :class:`Provenance` naming the
models and the settings that made it, and every label says whether a machine
or a person made it.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
"""Audio samples and embeddings: float32 everywhere."""

SAMPLE_RATE = 16_000
"""Every waveform inside the engine: 16 kHz mono."""

EMBEDDING_DIM = 256
"""resemblyzer's d-vector, kept on every clip (the TTS export conditions on it)."""

CAMPPLUS_DIM = 192
"""CAM++'s embedding, the encoder that identifies."""


class LabelSource(StrEnum):
    """Who made a label."""

    MACHINE = "machine"
    HUMAN = "human"


class ClipStatus(StrEnum):
    """Where a clip stands after routing."""

    ACCEPTED = "accepted"  # auto-accepted: confident speaker and transcript
    REVIEW = "review"  # needs a person, with reasons
    REJECTED = "rejected"  # unusable (by a person, or no speech at all)


class LabelStatus(StrEnum):
    """Where one kind of label (the speaker, or the transcript) of a clip stands."""

    ACCEPTED = "accepted"  # the machine is sure at the target precision
    REVIEW = "review"  # a person should look
    LABELLED = "labelled"  # a person gave or confirmed it
    REJECTED = "rejected"  # a person rejected the clip


class ReviewReason(StrEnum):
    """Machine-readable reasons for sending a clip to review."""

    UNCERTAIN_SPEAKER = "uncertain_speaker"  # the clip sits between two speakers
    UNCERTAIN_IDENTITY = "uncertain_identity"  # the speaker's match across recordings
    OVERLAP_NEARBY = "overlap_nearby"
    LOW_WORD_PROBABILITY = "low_word_probability"
    LOW_TRANSCRIPT_CONFIDENCE = "low_transcript_confidence"
    LIKELY_HALLUCINATION = "likely_hallucination"
    NO_SPEECH = "no_speech"
    SPEAKING_RATE = "implausible_speaking_rate"
    TWO_VOICES = "two_voices"  # a part of the clip sounds like somebody else


SPEAKER_REASONS = frozenset(
    {ReviewReason.UNCERTAIN_SPEAKER, ReviewReason.UNCERTAIN_IDENTITY, ReviewReason.TWO_VOICES}
)
"""Reasons that send the speaker label to review; every other reason is the transcript's.
``overlap_nearby`` is the transcript's only: on the tuning half, every clip near an overlap
whose raw speaker score reached the calibrated top block had its speaker right (17 of 17),
while a neighbour's words do leak into its transcript; a clip holding a second voice is
``two_voices``."""
TRANSCRIPT_REASONS = frozenset(
    {
        ReviewReason.OVERLAP_NEARBY,
        ReviewReason.LOW_WORD_PROBABILITY,
        ReviewReason.LOW_TRANSCRIPT_CONFIDENCE,
        ReviewReason.LIKELY_HALLUCINATION,
        ReviewReason.NO_SPEECH,
        ReviewReason.SPEAKING_RATE,
    }
)


class SkipReason(StrEnum):
    """Why an item was not ingested (:attr:`SkippedItem.reason_code`)."""

    NOT_CREATIVE_COMMONS = "not_creative_commons"
    UNSUPPORTED_URL = "unsupported_url"
    UNREACHABLE = "unreachable"
    DOWNLOAD_FAILED = "download_failed"
    CORRUPT_MEDIA = "corrupt_media"
    TOO_LONG = "too_long"
    NO_AUDIO = "no_audio"
    NO_SPEECH = "no_speech"
    LABELLING_FAILED = "labelling_failed"
    MALFORMED_URL = "malformed_url"
    UNKNOWN_LICENCE = "unknown_licence"
    DUPLICATE_ROW = "duplicate_row"


def stable_id(prefix: str, *parts: object, length: int = 16) -> str:
    """A short deterministic id: the same inputs always give the same id."""
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:length]}"


@dataclass(frozen=True)
class Source:
    """One line of an operator's request: a URL and, optionally, its declared licence."""

    url: str
    declared_license: str | None = None  # the operator's declaration, e.g. "CC-BY-4.0"
    note: str = ""
    line: int | None = None  # where it is in the operator's sources file


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
    extra: dict[str, float] = field(default_factory=dict)
    speaker_embedding: FloatArray | None = None  # the identity encoder's (CAM++, 192-d), unit
    speaker_status: LabelStatus | None = None  # routed on its own; None: as ``status``
    transcript_status: LabelStatus | None = None
    speaker_score: float = 0.0  # the raw score speaker_confidence was calibrated from
    transcript_score: float = 0.0  # the raw score transcript_confidence was calibrated from
    calibration: str = ""  # the calibration version that made the confidences ("" = raw)

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
    value = row.get("speaker_embedding")
    if value is None or (dim is not None and len(value) != dim):
        return row.get("embedding")
    return value


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

    @property
    def centroid(self) -> FloatArray:
        norm = float(np.linalg.norm(self.vector_sum))
        return (self.vector_sum / norm).astype(np.float32) if norm > 0 else self.vector_sum

    def absorb(
        self, recording_id: str, embeddings: FloatArray, total_duration: float, at: str
    ) -> None:
        """Add one recording's clips (rows of unit vectors); idempotent per recording."""
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


# -- vocabulary: words learned from people's corrections (learned in models/vocabulary.py) --

STORE_WIDE = ""  # the channel of a term learned from, or meant for, every channel


class TermOrigin(StrEnum):
    LEARNED = "learned"  # from people's corrections
    OPERATOR = "operator"  # added by an operator


class TermState(StrEnum):
    ACTIVE = "active"
    REMOVED = "removed"  # by an operator: never given to Whisper, never re-learned


LEARNED, OPERATOR = TermOrigin.LEARNED, TermOrigin.OPERATOR
ACTIVE, REMOVED = TermState.ACTIVE, TermState.REMOVED


@dataclass(frozen=True)
class Term:
    """One word (or name) of a channel's vocabulary."""

    channel: str  # STORE_WIDE ("") for the whole store
    term: str  # as people write it ("Tlaxcala")
    count: int = 0  # how often people corrected the machine to it
    origin: str = LEARNED  # LEARNED from corrections or added by an OPERATOR
    state: str = ACTIVE  # REMOVED by an operator: never given to Whisper, never re-learned
    clip_ids: tuple[str, ...] = ()  # the corrected clips it was learned from
    updated_at: str = ""
    updated_by: str = ""

    @property
    def key(self) -> str:
        return term_key(self.channel, self.term)


def term_key(channel: str, term: str) -> str:
    """The identity of a term: its channel and its normalised spelling."""
    return f"{channel}\x1f{normalise(term)}"


def normalise(word: str) -> str:
    """Lower case, accents and punctuation off: how words are compared."""
    plain = unicodedata.normalize("NFKD", word)
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return re.sub(r"[^\w']+", "", plain.lower()).strip("'")


@dataclass(frozen=True)
class Correction:
    """A person's transcript of a clip next to the machine's, and the clip's channel."""

    clip_id: str
    channel: str
    machine: str
    human: str


@dataclass
class Learned:
    """What one learning pass found: the terms after it, and what changed."""

    terms: list[Term]
    new_clips: int = 0
    changed: list[Term] = field(default_factory=list)


def channel_of(uploader: str, uploader_url: str, source_url: str) -> str:
    """A recording's channel: its uploader, else the uploader's URL, else its source's folder.

    Direct media links have no uploader; files served from one folder
    (``https://host/shows/a.mp4``, ``.../b.mp4``) are one channel, ``https://host/shows/``.
    """
    if uploader.strip():
        return uploader.strip()
    if uploader_url.strip():
        return uploader_url.strip()
    parts = urlsplit(source_url)
    if not parts.scheme:
        return source_url
    folder = parts.path.rsplit("/", 1)[0] + "/"
    return f"{parts.scheme}://{parts.netloc}{folder}"


# -- calibration: from raw scores to probabilities (fitted in models/calibration.py) ---------

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


# -- identity and review decisions ---------------------------------------------------------

CONSOLIDATE_BY = "convoice consolidate"
"""``decided_by`` of the identity changes consolidation makes."""


@dataclass(frozen=True)
class MachineMerge:
    """One identity folded into another by consolidation: ``merged`` lives on as ``kept``."""

    merged: str
    kept: str
    similarity: float  # cosine of the two groups' centroids when they merged
    why: str


@dataclass(frozen=True)
class Merge:
    """Two registry speakers are one person: ``merged`` lives on as ``kept``."""

    merged: str
    kept: str
    merged_by: str
    merged_at: str
    task_id: str


@dataclass(frozen=True)
class Contribution:
    """What one reviewed clip adds to (``plus``) and takes from (``minus``) the registry."""

    clip_id: str
    plus: str = ""
    minus: str = ""
    duration: float = 0.0


@dataclass(frozen=True)
class ReviewDecision:
    """What one annotator decided about one clip."""

    task_id: int
    annotation_id: int
    clip_id: str
    annotator: str  # e-mail (or a user id when the server does not say)
    at: str  # ISO 8601, when the annotation was last changed
    decision: str  # ACCEPT | REJECT
    speaker: str  # a registry id, NEW_SPEAKER, UNKNOWN_SPEAKER or "" (not given)
    same_as: str = ""  # a registry id: "the speaker above and this one are one person"
    text: str | None = None  # the transcript as submitted; None when not given
    flags: tuple[str, ...] = ()


def canonical(speaker_id: str, merges: Mapping[str, str]) -> str:
    """The speaker ``speaker_id`` lives on as, following merges (A→B→C gives C)."""
    seen: set[str] = set()
    while speaker_id in merges and speaker_id not in seen:
        seen.add(speaker_id)
        speaker_id = merges[speaker_id]
    return speaker_id
