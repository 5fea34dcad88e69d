"""How sure is each label, and does a person need to look at the clip?

Speaker confidence combines how well the clip fits its own speaker inside the
recording (against the closest other speaker) with how sure the identity
match across recordings was. Transcript confidence is the geometric mean of
the word probabilities, checked against the failure modes Whisper is known
for: confident repetition loops, too many or too few words for the clip's
length, and text where there is no speech.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass

from convoice.config import RoutingSettings
from convoice.models.records import ClipStatus, Transcript
from convoice.models.registry import ramp


class Reason:
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


TWO_VOICES_CONFIDENCE = 0.5


@dataclass(frozen=True)
class SpeakerEvidence:
    own_similarity: float  # cosine of the clip to its speaker's centroid in the recording
    other_similarity: float  # best cosine to another speaker of the recording; -1 if none
    identity_confidence: float  # from the cross-recording match, 0..1
    fit_low: float = 0.55  # the encoder's scale (config.SimilarityScale); resemblyzer's here
    fit_high: float = 0.80
    fit_margin: float = 0.15
    two_voices: bool = False  # a part of the clip sounds like another voice


@dataclass(frozen=True)
class Routing:
    speaker_confidence: float
    transcript_confidence: float
    status: ClipStatus
    reasons: tuple[str, ...]


def clip_fit(ev: SpeakerEvidence) -> float:
    """0..1: how well the clip fits its own speaker, and beats the runner-up."""
    fit = ramp(ev.own_similarity, ev.fit_low, ev.fit_high)
    if ev.other_similarity < 0:
        return fit
    return min(fit, ramp(ev.own_similarity - ev.other_similarity, 0.0, ev.fit_margin))


def speaker_confidence(ev: SpeakerEvidence) -> float:
    """0..1: the clip's fit inside the recording and the identity's certainty.

    A clip holding two voices gets at most 0.5: its one label is wrong for part of it.
    """
    sure = min(clip_fit(ev), ev.identity_confidence)
    return round(min(sure, TWO_VOICES_CONFIDENCE) if ev.two_voices else sure, 4)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def max_ngram_repeats(words: list[str], n: int = 3) -> int:
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return max(grams.values(), default=0)


def transcript_confidence(t: Transcript) -> float:
    """Geometric mean of word probabilities (0 when there are no words)."""
    if not t.words:
        return 0.0
    logs = [math.log(max(w.probability, 1e-6)) for w in t.words]
    return round(math.exp(sum(logs) / len(logs)), 4)


def transcript_reasons(t: Transcript, duration: float, cfg: RoutingSettings) -> list[str]:
    reasons: list[str] = []
    words = [w.word.strip().lower() for w in t.words if w.word.strip()]
    if not words:
        return [Reason.NO_SPEECH]
    if any(w.probability < cfg.min_word_probability for w in t.words):
        reasons.append(Reason.LOW_WORD_PROBABILITY)
    if transcript_confidence(t) < cfg.min_transcript_confidence:
        reasons.append(Reason.LOW_TRANSCRIPT_CONFIDENCE)
    if (
        compression_ratio(t.text) > cfg.max_compression_ratio
        or max_ngram_repeats(words) > cfg.max_repeated_ngram
    ):
        reasons.append(Reason.LIKELY_HALLUCINATION)
    rate = len(words) / max(duration, 1e-3)
    if rate > cfg.max_words_per_second or rate < cfg.min_words_per_second:
        reasons.append(Reason.SPEAKING_RATE)
    return reasons


def route(
    ev: SpeakerEvidence,
    transcript: Transcript | None,
    duration: float,
    overlap_nearby: bool,
    cfg: RoutingSettings,
) -> Routing:
    """Scores and the routing decision for one clip."""
    s_conf = speaker_confidence(ev)
    reasons: list[str] = []
    if s_conf < cfg.min_speaker_confidence:
        if clip_fit(ev) < cfg.min_speaker_confidence:
            reasons.append(Reason.UNCERTAIN_SPEAKER)
        if ev.identity_confidence < cfg.min_speaker_confidence:
            reasons.append(Reason.UNCERTAIN_IDENTITY)
    if ev.two_voices:
        reasons.append(Reason.TWO_VOICES)
    if overlap_nearby:
        reasons.append(Reason.OVERLAP_NEARBY)
    t_conf = 0.0
    if transcript is None:
        reasons.append(Reason.NO_SPEECH)
    else:
        t_conf = transcript_confidence(transcript)
        reasons.extend(transcript_reasons(transcript, duration, cfg))
    status = ClipStatus.ACCEPTED if not reasons else ClipStatus.REVIEW
    return Routing(s_conf, t_conf, status, tuple(dict.fromkeys(reasons)))
