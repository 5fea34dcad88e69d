"""Round two of transcription: which clips, and when a new machine transcript replaces the old.

Pure decisions on clip rows (:class:`~convoice.records.StoredClip` records of the
``clips`` table, people's labels applied): :func:`wants_round_two` picks machine
transcripts still waiting for review or below the transcript bar routing holds them to;
:func:`revise` gives the new machine fields of a clip when the new transcript
scores better, and re-routes it (its speaker reasons stay, its transcript
reasons are worked out again). The machine transcript kept (new or old) is
then post-corrected towards the channel's taught words
(:mod:`convoice.models.post_correction`), after scoring and routing, which
the fix does not change.
A transcript a person wrote is never a candidate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from convoice.config import RoutingSettings
from convoice.models.post_correction import Fix, corrected
from convoice.models.routing import (
    clip_status,
    kind_status,
    retranscribed_reasons,
    transcript_bar,
    transcript_confidence,
    transcript_reasons,
    transcript_side,
)
from convoice.models.vocabulary import normalise
from convoice.records import (
    TRANSCRIPT_REASONS,
    Calibration,
    ClipStatus,
    LabelSource,
    ReviewReason,
    StoredClip,
    Transcript,
    Word,
)


def below_transcript_bar(row: StoredClip, cfg: RoutingSettings) -> bool:
    """Whether the clip's transcript scores under the bar routing holds it to: the raw score
    under its language's :func:`~convoice.models.routing.transcript_bar` (the higher of
    ``min_transcript_confidence`` and ``transcript_confidence_by_language``), or, when
    routing is by ``transcript_target_precision``, the calibrated probability under it.
    Rows written before raw scores were kept hold the raw score as their confidence."""
    if not cfg.raw_thresholds and cfg.transcript_target_precision > 0.0:
        return (row.transcript_confidence or 0.0) < cfg.transcript_target_precision
    raw = row.transcript_score_raw
    score = row.transcript_confidence if raw is None else raw
    return (score or 0.0) < transcript_bar(cfg, row.language or "")


def wants_round_two(row: StoredClip, cfg: RoutingSettings, every: bool = False) -> bool:
    """A machine transcript that waits for review or scores below its routing bar
    (:func:`below_transcript_bar`: English's 0.92, not the global 0.80). Waiting is the
    transcript's own status (``transcript_status``; a row written before it: the clip's), so
    a clip in review for its speaker label only is not transcribed again.

    ``every``: any machine transcript (not rejected) of a channel whose vocabulary it
    was not made with; Whisper is often wrong about a name with high confidence.
    """
    if row.transcript_label_source != LabelSource.MACHINE:
        return False
    if row.status == ClipStatus.REJECTED:
        return False
    waiting = (row.transcript_status or row.status) == ClipStatus.REVIEW
    return every or waiting or below_transcript_bar(row, cfg)


def attempt_key(model: str, mode: str, words: Sequence[str]) -> str:
    """What a round-two attempt was made with; the same key again is not tried again."""
    blob = json.dumps([model, mode, list(words)])
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def attempt_way(mode: str, beam: int, distance: float, margin: float) -> str:
    """How an attempt transcribes and post-corrects (part of its key)."""
    way = f"{mode}:beam{beam}"
    return way + (f":fix{distance:g}/{margin:g}" if distance > 0 else "")


def as_round_two(
    transcripts: Sequence[Transcript | None], key: str, model: str, fixer: Fixer | None
) -> list[Transcript | None]:
    """An ingest's transcripts made with the channel's vocabulary, as round two would leave them.

    Each is post-corrected (``fixer``) and, when ``model`` (round two's Whisper) made it,
    records the attempt ``key``, so round two does not make the same attempt again.
    """
    out: list[Transcript | None] = []
    for made in transcripts:
        if made is None:
            out.append(None)
            continue
        fixes = fixer(made) if fixer else []
        fixed = corrected(made, fixes)
        out.append(
            replace(
                fixed,
                round_two=key if made.model == model else "",
                post_corrected=tuple((f.before, f.term) for f in fixes),
            )
        )
    return out


def tried(row: StoredClip, key: str) -> bool:
    """Whether the clip was transcribed again with ``key`` already."""
    return json.loads(row.models or "{}").get("round_two") == key


@dataclass(frozen=True)
class Revision:
    """The outcome for one clip: the machine columns to write, and whether its text changed."""

    clip_id: str
    fields: dict[str, Any]
    replaced: bool  # the new transcript scored better and took the old one's place
    text_changed: bool
    status_before: str
    status_after: str
    fixes: tuple[Fix, ...] = ()  # post-corrections of the machine text kept


# A machine transcript -> the fixes towards the channel's taught words (none: no fixer).
Fixer = Callable[[Transcript], "list[Fix]"]


def credited(transcript: Transcript, vocabulary: Sequence[str]) -> Transcript:
    """``transcript`` with the words people taught (``vocabulary``) counted as sure (p = 1).

    Whisper gives a name it was told about a low probability even when it spells
    it right (its language model does not know the name): scored as it is, a
    transcript that finally gets the names right loses to one that gets them
    wrong with common words. People confirmed these spellings for the channel.
    """
    taught = {normalise(w) for w in vocabulary}
    if not taught:
        return transcript
    words = tuple(
        replace(w, probability=1.0) if normalise(w.word) in taught else w for w in transcript.words
    )
    return replace(transcript, words=words)


def _old_transcript(row: StoredClip) -> Transcript:
    words = tuple(
        Word(w["word"], w["start"], w["end"], float(w["probability"])) for w in row.words or ()
    )
    return Transcript(row.text or "", row.language or "", 0.0, words, 0.0, 0.0, 0.0)


def better(
    new: Transcript | None, old_confidence: float, duration: float, cfg: RoutingSettings
) -> bool:
    """A better-scored transcript: higher confidence, and no sign of a hallucination."""
    if new is None:
        return False
    if ReviewReason.LIKELY_HALLUCINATION in transcript_reasons(new, duration, cfg):
        return False
    return transcript_confidence(new) > old_confidence


def _words(transcript: Transcript) -> list[dict[str, Any]]:
    return [
        {"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
        for w in transcript.words
    ]


def _post_correct(
    fields: dict[str, Any],
    models: dict[str, Any],
    kept: Transcript,
    fixer: Fixer | None,
    fresh: bool,
) -> tuple[Fix, ...]:
    """Put the post-corrected ``kept`` text in ``fields`` and record the fixes in ``models``.

    ``fresh``: ``kept`` is a new transcript (the old one's fixes no longer apply).
    """
    fixes = tuple(fixer(kept)) if fixer else ()
    earlier = [] if fresh else list(models.get("post_correction") or [])
    models.pop("post_correction", None)
    if fixes:
        fixed = corrected(kept, fixes)
        fields.update(text=fixed.text, words=_words(fixed))
    if earlier or fixes:
        models["post_correction"] = earlier + [[f.before, f.term] for f in fixes]
    fields["models"] = json.dumps(models, sort_keys=True)
    return fixes


def revise(
    row: StoredClip,
    new: Transcript | None,
    key: str,
    cfg: RoutingSettings,
    vocabulary: Sequence[str] = (),
    fixer: Fixer | None = None,
    calibration: Calibration | None = None,
) -> Revision:
    """The clip's machine fields after round two (``key`` is always recorded).

    Old and new transcripts are scored alike: words of ``vocabulary`` count as
    sure in both (:func:`credited`); the new one's confidence and routing too.
    ``fixer``: the post-correction of the transcript kept, recorded in the
    clip's ``models.post_correction`` (its confidence and routing stay).
    ``calibration``: the store's, which turns the new raw score into the clip's
    ``transcript_confidence`` as the ingest's routing does (without one it is the raw
    score), and routes it by ``transcript_target_precision`` when routing is by precision.
    A replaced transcript's ``transcript_status`` follows its new reasons.
    """
    duration = float(row.end) - float(row.start)
    models = json.loads(row.models or "{}")
    models["round_two"] = key
    fields: dict[str, Any] = {}
    old = _old_transcript(row)
    old_conf = transcript_confidence(credited(old, vocabulary))
    status = str(row.status)
    scored = None if new is None else credited(new, vocabulary)
    if new is None or scored is None or not better(scored, old_conf, duration, cfg):
        fixes = _post_correct(fields, models, old, fixer, fresh=False)
        changed = fields.get("text", row.text or "") != (row.text or "")
        return Revision(row.clip_id, fields, False, changed, status, status, fixes)
    t_raw, t_prob, t_reasons = transcript_side(scored, duration, cfg, calibration)
    reasons = retranscribed_reasons(t_reasons, row.review_reasons or [])
    after = clip_status(reasons)
    models["asr"] = new.model or models.get("asr", "")
    fields.update(
        text=new.text,
        words=_words(new),
        avg_logprob=new.avg_logprob,
        compression_ratio=new.compression_ratio,
        no_speech_prob=new.no_speech_prob,
        transcript_confidence=t_prob,
        transcript_score_raw=t_raw,  # round two's bar reads this one
        status=str(after),
        transcript_status=str(kind_status(tuple(reasons), TRANSCRIPT_REASONS)),
        review_reasons=reasons,
    )
    fixes = _post_correct(fields, models, new, fixer, fresh=True)
    changed = fields["text"] != (row.text or "")
    return Revision(row.clip_id, fields, True, changed, status, str(after), fixes)
