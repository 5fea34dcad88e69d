"""The constants every record is measured in, the enums of statuses and reasons, ids, time."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
"""Audio samples and embeddings: float32 everywhere."""


class Samples(Protocol):
    """A recording's mono float32 samples, read one range at a time.

    An array is one; so is :class:`convoice.media.audio.WavSamples`, which reads
    each range from the decoded WAV on demand, so that a recording of any length
    is never held whole (``samples[a:b]`` with a step of 1 only).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice, /) -> FloatArray: ...


SAMPLE_RATE = 16_000
"""Every waveform inside the engine: 16 kHz mono."""


def sample_index(seconds: float, rate: int = SAMPLE_RATE) -> int:
    """The sample at ``seconds``: the one index every cut of a recording uses.

    Rounded, not truncated: ``int(t * rate)`` lands one sample early for about
    1 % of times (``int(1.001 * 16000)`` is 16015), so a clip cut by one part of the
    engine and by another differed by a sample, and its stored embedding was not
    that of its released audio.
    """
    return round(seconds * rate)


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


class ReleaseSplit(StrEnum):
    """Which side of a release a clip is on (its ``split`` column)."""

    TRAIN = "train"  # machine labels: what models train on
    HELDOUT = "heldout"  # a person labelled the clip: kept apart to evaluate models


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
    UNCHECKED_LANGUAGE = "unchecked_language"  # no transcript bar was checked for its language
    WORDS_MISSING = "words_missing"  # the clip's speech begins well before its first word


SPEAKER_REASONS = frozenset(
    {ReviewReason.UNCERTAIN_SPEAKER, ReviewReason.UNCERTAIN_IDENTITY, ReviewReason.TWO_VOICES}
)
"""Reasons that send the speaker label to review; every other reason is the transcript's, and
``two_voices`` is both kinds' (:data:`TRANSCRIPT_REASONS`). ``overlap_nearby`` is the
transcript's only: on the tuning half, every clip near an overlap whose raw speaker score
reached the calibrated top block had its speaker right (17 of 17), while a neighbour's words
do leak into its transcript; a clip holding a second voice is ``two_voices``. The speaker
labels of that kind the reporting half accepted began where a detected overlap ended, the
other voice outlasting the detection by about 0.3 s: such a clip is now cut clear of the
overlap (``[clips] overlap_margin_s``), and one too short to cut is ``two_voices``."""
TRANSCRIPT_REASONS = frozenset(
    {
        ReviewReason.OVERLAP_NEARBY,
        ReviewReason.LOW_WORD_PROBABILITY,
        ReviewReason.LOW_TRANSCRIPT_CONFIDENCE,
        ReviewReason.LIKELY_HALLUCINATION,
        ReviewReason.NO_SPEECH,
        ReviewReason.SPEAKING_RATE,
        ReviewReason.UNCHECKED_LANGUAGE,
        ReviewReason.WORDS_MISSING,
        ReviewReason.TWO_VOICES,
    }
)
"""Reasons that send the transcript to review. ``two_voices`` is one: Whisper hears a clip
in one language, and a second voice's words in it are lost or belong to somebody else (nine
tuning corpora, English bar 0.92: the transcripts of two-voice clips the engine accepted
held 19 of the 84 accepted-WER errors in 184 words; Emo-DB's "Der Lappen liegt auf dem
Eisschrank" for a clip of Diane and a German speaker; README "Confidence and review").
Such a clip is in review for its speaker already, so people see no more clips for it."""


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


def now() -> str:
    """UTC time as ISO 8601 to the second, the format of every timestamp of ingest."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def stable_id(prefix: str, *parts: object, length: int = 16) -> str:
    """A short deterministic id: the same inputs always give the same id."""
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:length]}"
