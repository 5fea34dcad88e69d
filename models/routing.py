"""How sure is each label, and does a person need to look at it?

The raw speaker score combines how well the clip fits its own speaker inside
the recording (against the closest other speaker) with how sure the identity
match across recordings was. The raw transcript score is the geometric mean
of the word probabilities, checked against the failure modes Whisper is known
for: confident repetition loops, too many or too few words for the clip's
length, and text where there is no speech. A :class:`Calibration` maps each
raw score to the probability that the label is right (``speaker_confidence``,
``transcript_confidence``); each kind of label is accepted on its own when
that probability reaches ``[routing] target_precision``, or the calibration's
operating point for that target (:func:`speaker_kind`: the accepted labels as a
whole right that often), or, for experts, when the raw score reaches the
``min_*`` thresholds (``raw_thresholds``).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from convoice.config import RoutingSettings, SimilarityScale
from convoice.models.calibration import Calibration
from convoice.models.registry import MatchDecision, SpeakerMatch, ramp
from convoice.records import (
    SPEAKER_REASONS,
    TRANSCRIPT_REASONS,
    ClipStatus,
    FloatArray,
    LabelStatus,
    ReviewReason,
    Transcript,
)

TWO_VOICES_CONFIDENCE = 0.5

CLIP_MARGIN_SPAN = 0.30
"""A matched clip's identity is full strength when its cosine to the chosen known speaker
beats its cosine to every other known speaker by the scale's ``margin`` plus this much
(CAM++: 0.10 + 0.30). Tuning half (two corpora, seeds 11 and 12): the accepted-but-wrong
matched clips of a second voice inside a recording speaker beat the next known speaker by
-0.07 to 0.23 (four of five below 0.12); the right accepted ones by 0.17 or more."""

NEW_LOW_SHARE = 0.4
"""A new speaker's identity starts to count once its closest known speaker is below the
``new_threshold`` by this share of it (CAM++: 0.5 - 0.2 = 0.3). Tuning half: new speakers
with anybody known, at closest 0.26-0.31, were right 20 of 27 times (later recordings split
or merge them); nobody known: full strength."""

TEXT_REASONS = TRANSCRIPT_REASONS - {ReviewReason.OVERLAP_NEARBY, ReviewReason.TWO_VOICES}
"""The transcript's reasons that come from its text (:func:`transcript_reasons`, or none at
all): what a new transcript of the same clip works out again."""


@dataclass(frozen=True)
class SpeakerEvidence:
    own_similarity: float  # cosine of the clip to its speaker's centroid in the recording
    other_similarity: float  # best cosine to another speaker of the recording; -1 if none
    identity_confidence: float  # from the cross-recording match, 0..1
    fit_low: float = 0.55  # the encoder's scale (config.SimilarityScale); resemblyzer's here
    fit_high: float = 0.80
    fit_margin: float = 0.15
    two_voices: bool = False  # a part of the clip sounds like another voice
    identity_strength: float = 1.0  # 0..1: how far the identity decision is past its threshold
    clip_identity: float = float("nan")  # the clip's own cosine to its chosen known speaker
    clip_runner_up: float = -1.0  # the clip's best cosine to any other known speaker (-1: none)
    decision: str = ""  # the identity match's MatchDecision ("" when not known)
    match_similarity: float = float("nan")  # the recording speaker's match: its similarity
    match_runner_up: float = -1.0  # and the next known speaker's (-1: none)


@dataclass(frozen=True)
class Routing:
    speaker_confidence: float  # probability that the speaker label is right
    transcript_confidence: float  # probability that the transcript is right
    status: ClipStatus  # accepted when both kinds are
    reasons: tuple[str, ...]
    speaker_status: LabelStatus = LabelStatus.REVIEW
    transcript_status: LabelStatus = LabelStatus.REVIEW
    speaker_score: float = 0.0  # raw
    transcript_score: float = 0.0  # raw
    calibration: str = ""  # the calibration version ("" when the raw scores were used)


def speaker_evidence(
    sims: FloatArray,
    own: int,
    match: SpeakerMatch,
    scale: SimilarityScale,
    two_voices: bool,
    known_sims: FloatArray | None = None,
    chosen: int = -1,
) -> SpeakerEvidence:
    """What a clip's speaker label rests on, on the encoder's ``scale``.

    ``sims``: the clip's cosine to each speaker of its recording (``own``: its
    speaker's index); ``match``: that speaker's identity match across recordings.
    ``known_sims``: the clip's own cosine to each known speaker the recording was matched
    against (``chosen``: the index of the one its speaker got, -1 when none); None: the
    clip is not checked against the registry on its own (its recording speaker's match only).
    """
    other = float(np.delete(sims, own).max()) if len(sims) > 1 else -1.0
    clip_identity, clip_runner_up = clip_against_known(known_sims, chosen)
    strength = identity_strength(
        match.decision, match.similarity, match.runner_up,
        scale.match_threshold, scale.new_threshold,
        scale.margin if known_sims is not None else None, clip_identity, clip_runner_up,
    )  # fmt: skip
    return SpeakerEvidence(
        float(sims[own]), other, match.confidence, scale.fit_low, scale.fit_high, scale.fit_margin,
        two_voices, strength, clip_identity, clip_runner_up, str(match.decision),
        float(match.similarity), float(match.runner_up),
    )  # fmt: skip


def clip_against_known(known_sims: FloatArray | None, chosen: int) -> tuple[float, float]:
    """A clip's cosine to its chosen known speaker (nan: none chosen) and its best cosine to
    any other known speaker (-1: none)."""
    if known_sims is None or len(known_sims) == 0:
        return float("nan"), -1.0
    if chosen < 0:
        return float("nan"), float(np.max(known_sims))
    others = np.delete(known_sims, chosen)
    return float(known_sims[chosen]), float(others.max()) if others.size else -1.0


def clip_fit(ev: SpeakerEvidence) -> float:
    """0..1: how well the clip fits its own speaker, and beats the runner-up."""
    fit = ramp(ev.own_similarity, ev.fit_low, ev.fit_high)
    if ev.other_similarity < 0:
        return fit
    return min(fit, ramp(ev.own_similarity - ev.other_similarity, 0.0, ev.fit_margin))


def speaker_kind(ev: SpeakerEvidence) -> str:
    """Which of a :class:`Calibration`'s speaker curves a clip's label is judged by: its
    identity decision (``matched``, ``new``, ``uncertain``) when the clip fits its speaker
    fully and holds one voice, else ``""`` (the main curve).

    The raw score does not order the kinds: on the tuning half a match the registry calls
    uncertain was right 167 of 169 times, new speakers and weak matches higher on the raw
    score 9 times in 10. A level for ``uncertain`` did not carry over to the reporting half,
    so the shipped calibration has no kind levels (README, "Kinds of speaker evidence")."""
    if ev.two_voices or clip_fit(ev) < 1.0:
        return ""
    return ev.decision


SPEAKER_FEATURES = (
    "matched", "new", "uncertain", "raw", "fit_lead", "match_lead", "clip_lead", "new_closest",
    "log_duration",
)  # fmt: skip
"""The evidence a calibration's speaker model reads (:func:`evidence_features`). Chosen on the
tuning half, held out by voice and by recording (README, "Confidence and review", session 48):
the raw score alone does not order the labels it does not accept."""


def evidence_features(
    kind: str,
    raw: float,
    own_similarity: float,
    other_similarity: float,
    match_similarity: float,
    match_runner_up: float,
    clip_identity: float,
    clip_runner_up: float,
    duration: float,
) -> dict[str, float]:
    """A clip's :data:`SPEAKER_FEATURES`: its :func:`speaker_kind` (one flag each), its raw
    score, its lead inside the recording (own speaker's cosine over the next speaker's), a
    match's lead over the next known speaker, the clip's own lead over the known speaker
    after its chosen one (0 when none was chosen), a new speaker's closest known speaker, and
    the log of its length. Both the ingest (:func:`speaker_features`) and the calibration's
    fit (from stored clip rows) compute them here."""
    has_clip = not math.isnan(clip_identity)
    return {
        "matched": float(kind == MatchDecision.MATCHED),
        "new": float(kind == MatchDecision.NEW),
        "uncertain": float(kind == MatchDecision.UNCERTAIN),
        "raw": raw,
        "fit_lead": own_similarity - other_similarity,
        "match_lead": match_similarity - match_runner_up if kind == MatchDecision.MATCHED else 0.0,
        "clip_lead": clip_identity - clip_runner_up if has_clip else 0.0,
        "new_closest": max(match_runner_up, clip_runner_up) if kind == MatchDecision.NEW else 0.0,
        "log_duration": math.log(max(duration, 0.1)),
    }


def speaker_features(ev: SpeakerEvidence, duration: float) -> dict[str, float]:
    """:func:`evidence_features` of a clip being labelled."""
    return evidence_features(
        speaker_kind(ev), speaker_confidence(ev), ev.own_similarity, ev.other_similarity,
        ev.match_similarity, ev.match_runner_up, ev.clip_identity, ev.clip_runner_up, duration,
    )  # fmt: skip


def speaker_confidence(ev: SpeakerEvidence) -> float:
    """The raw speaker score, 0..2: the clip's fit inside the recording and the identity's
    certainty (0..1), plus, when both are full, how far the identity decision is past
    its threshold (``identity_strength``): a match at 0.72 is not as sure as one at 0.95.

    A clip holding two voices gets at most 0.5: its one label is wrong for part of it.
    """
    sure = min(clip_fit(ev), ev.identity_confidence)
    if ev.two_voices:
        return round(min(sure, TWO_VOICES_CONFIDENCE), 4)
    return round(sure + ev.identity_strength if sure >= 1.0 else sure, 4)


def identity_strength(
    decision: str,
    similarity: float,
    runner_up: float,
    match_threshold: float,
    new_threshold: float,
    margin: float | None = None,
    clip_identity: float = float("nan"),
    clip_runner_up: float = -1.0,
) -> float:
    """0..1: how far the identity decision is past its threshold.

    A match: its recording speaker's similarity from ``match_threshold`` to 0.95, and,
    with ``margin`` (the clip checked on its own against the registry), at most the clip's
    own lead of its chosen known speaker over the next known speaker, from ``margin`` to
    ``margin`` + :data:`CLIP_MARGIN_SPAN` (a second voice inside a recording speaker takes
    its speaker's match but is no closer to it than to its own look-alike). A new speaker:
    its best similarity to anybody known (the recording speaker's or, with ``margin``, the
    clip's, whichever is closer) from ``new_threshold`` less :data:`NEW_LOW_SHARE` of it
    down to 0 (nobody known: 1; without ``margin``: from ``new_threshold`` down to 0, as before).
    """
    if decision == MatchDecision.MATCHED:
        strength = ramp(similarity, match_threshold, 0.95)
        if margin is not None and not math.isnan(clip_identity):
            lead = clip_identity - clip_runner_up
            strength = min(strength, ramp(lead, margin, margin + CLIP_MARGIN_SPAN))
        return round(strength, 4)
    if decision == MatchDecision.NEW:
        if margin is None:
            return round(ramp(new_threshold - runner_up, 0.0, new_threshold), 4)
        closest = max(runner_up, clip_runner_up)
        if closest <= -1.0:
            return 1.0  # nobody known
        low = NEW_LOW_SHARE * new_threshold
        return round(ramp(new_threshold - closest, low, new_threshold), 4)
    return 0.0


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


def transcript_bar(cfg: RoutingSettings, language: str) -> float:
    """The raw transcript confidence a clip in ``language`` needs: the higher of
    ``min_transcript_confidence`` and the language's bar in ``transcript_confidence_by_language``
    (a language's bar only raises it, so one setting still sends everything to review)."""
    return max(
        cfg.min_transcript_confidence, cfg.transcript_confidence_by_language.get(language, 0.0)
    )


def accepts_language(cfg: RoutingSettings, language: str) -> bool:
    """Whether a transcript in ``language`` may be auto-accepted at all
    (``[routing] transcript_languages``; ``"*"`` there: any language)."""
    return "*" in cfg.transcript_languages or language in cfg.transcript_languages


def transcript_reasons(
    t: Transcript,
    duration: float,
    cfg: RoutingSettings,
    score: float | None = None,
    bar: float | None = None,
) -> list[str]:
    """Why the transcript needs a person; ``score`` below ``bar`` is low confidence
    (by default the raw geometric mean against the language's :func:`transcript_bar`)."""
    reasons: list[str] = []
    words = [w.word.strip().lower() for w in t.words if w.word.strip()]
    if not words:
        return [ReviewReason.NO_SPEECH]
    if not accepts_language(cfg, t.language):
        reasons.append(ReviewReason.UNCHECKED_LANGUAGE)
    if any(w.probability < cfg.min_word_probability for w in t.words):
        reasons.append(ReviewReason.LOW_WORD_PROBABILITY)
    score = transcript_confidence(t) if score is None else score
    if score < (transcript_bar(cfg, t.language) if bar is None else bar):
        reasons.append(ReviewReason.LOW_TRANSCRIPT_CONFIDENCE)
    if (
        compression_ratio(t.text) > cfg.max_compression_ratio
        or t.compression_ratio > cfg.max_compression_ratio  # the window's text looped here
        or max_ngram_repeats(words) > cfg.max_repeated_ngram
    ):
        reasons.append(ReviewReason.LIKELY_HALLUCINATION)
    rate = len(words) / max(duration, 1e-3)
    if rate > cfg.max_words_per_second or rate < cfg.min_words_per_second:
        reasons.append(ReviewReason.SPEAKING_RATE)
    if 0.0 < cfg.max_first_word_s < first_word_start(t):
        reasons.append(ReviewReason.WORDS_MISSING)
    return reasons


def first_word_start(t: Transcript) -> float:
    """Seconds into the clip where its first spoken word starts (0 with no words)."""
    return next((w.start for w in t.words if w.word.strip()), 0.0)


def kind_status(reasons: tuple[str, ...], kind: frozenset[str]) -> LabelStatus:
    """ACCEPTED when none of ``reasons`` belongs to this kind of label, else REVIEW."""
    return LabelStatus.REVIEW if any(r in kind for r in reasons) else LabelStatus.ACCEPTED


def kind_statuses(reasons: tuple[str, ...]) -> tuple[LabelStatus, LabelStatus]:
    """The speaker's and the transcript's status under ``reasons``, both from the same reasons
    (``two_voices`` belongs to both kinds)."""
    return kind_status(reasons, SPEAKER_REASONS), kind_status(reasons, TRANSCRIPT_REASONS)


def speaker_reasons(ev: SpeakerEvidence, probability: float, bar: float) -> list[str]:
    """Why the speaker label needs a person: which part is unsure, and two voices."""
    reasons: list[str] = []
    if probability < bar:
        if clip_fit(ev) < bar:
            reasons.append(ReviewReason.UNCERTAIN_SPEAKER)
        if ev.identity_confidence < bar or not (reasons or ev.two_voices):
            reasons.append(ReviewReason.UNCERTAIN_IDENTITY)  # or the match's margin is the doubt
    if ev.two_voices:
        reasons.append(ReviewReason.TWO_VOICES)
    return reasons


def speaker_side(
    ev: SpeakerEvidence,
    cfg: RoutingSettings,
    calibration: Calibration | None = None,
    duration: float | None = None,
) -> tuple[float, float, list[str]]:
    """A speaker label's raw score, its probability, and why it needs a person (if it does).

    Calibrated, the probability (by the curve of the clip's :func:`speaker_kind`) routes
    against the calibration's bar for ``target_precision`` (``Calibration.speaker_bar``: its
    operating point, or the target itself); under its speaker model's ``below``, the
    probability is the model's when the clip's ``duration`` is given
    (:func:`speaker_features`). Without a calibration (or with ``raw_thresholds``) the raw
    score routes, against ``min_speaker_confidence``.
    """
    s_raw = speaker_confidence(ev)
    if calibration is None:
        s_prob = s_raw
    else:
        features = None if duration is None else speaker_features(ev, duration)
        s_prob = calibration.speaker_probability(s_raw, speaker_kind(ev), features)
    if cfg.raw_thresholds or calibration is None:
        s_score, s_bar = s_raw, cfg.min_speaker_confidence
    else:
        s_score, s_bar = s_prob, calibration.speaker_bar(cfg.target_precision)
    return s_raw, s_prob, speaker_reasons(ev, s_score, s_bar)


def transcript_side(
    transcript: Transcript,
    duration: float,
    cfg: RoutingSettings,
    calibration: Calibration | None = None,
) -> tuple[float, float, list[str]]:
    """A transcript's raw score, its probability, and why it needs a person (if it does).

    Calibrated, and with ``transcript_target_precision`` above 0, the probability routes
    against it; else (no calibration, ``raw_thresholds``, or that target 0) the raw score
    against the language's :func:`transcript_bar`. Without ``calibration`` the
    probability is the raw score.
    """
    t_raw = transcript_confidence(transcript)
    if calibration is None:
        t_prob = t_raw
    else:
        t_prob = calibration.transcript_probability(t_raw, transcript.language)
    by_raw = cfg.raw_thresholds or calibration is None or cfg.transcript_target_precision <= 0.0
    if by_raw:
        return t_raw, t_prob, transcript_reasons(transcript, duration, cfg, t_raw)
    target = cfg.transcript_target_precision
    return t_raw, t_prob, transcript_reasons(transcript, duration, cfg, t_prob, target)


def route(
    ev: SpeakerEvidence,
    transcript: Transcript | None,
    duration: float,
    overlap_nearby: bool,
    cfg: RoutingSettings,
    calibration: Calibration | None = None,
) -> Routing:
    """Scores, probabilities and the routing decision of each kind of label of one clip.

    Without ``calibration`` the confidences are the raw scores (and the raw thresholds route).
    """
    s_raw, s_prob, reasons = speaker_side(ev, cfg, calibration, duration)
    version = "" if calibration is None else calibration.version
    if overlap_nearby:
        reasons.append(ReviewReason.OVERLAP_NEARBY)
    if transcript is None:
        t_raw = 0.0
        t_prob = 0.0 if calibration is None else calibration.transcript_probability(0.0, "")
        reasons.append(ReviewReason.NO_SPEECH)
    else:
        t_raw, t_prob, text_reasons = transcript_side(transcript, duration, cfg, calibration)
        reasons.extend(text_reasons)
    unique = tuple(dict.fromkeys(reasons))
    status = clip_status(unique)
    return Routing(s_prob, t_prob, status, unique, *kind_statuses(unique), s_raw, t_raw, version)


def clip_status(reasons: Sequence[str]) -> ClipStatus:
    """A clip is accepted when nothing sends it to review."""
    return ClipStatus.ACCEPTED if not reasons else ClipStatus.REVIEW


def rerouted_reasons(speaker_reasons: Sequence[str], reasons: Sequence[str]) -> list[str]:
    """``reasons`` with the speaker's part replaced by ``speaker_reasons`` (the transcript's
    kept), in the order :func:`route` gives them: the speaker's first."""
    kept = [r for r in reasons if r not in SPEAKER_REASONS]
    return list(dict.fromkeys([*speaker_reasons, *kept]))


def retranscribed_reasons(text_reasons: Sequence[str], reasons: Sequence[str]) -> list[str]:
    """``reasons`` with the transcript text's part (:data:`TEXT_REASONS`) replaced by
    ``text_reasons``, which come last."""
    kept = [r for r in reasons if r not in TEXT_REASONS]
    return list(dict.fromkeys([*kept, *text_reasons]))
