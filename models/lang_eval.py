"""Score clips of a multilingual corpus: clip language, WER (CER for Chinese), routing shares.

Pure computation on plain records: clips as the store returns them (dicts
with ``start``, ``end``, ``language``, ``words``, ``status``, ``recording_id``)
and reference sentences per recording, each with its language.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from convoice.models.evaluation import covering_clips, overlap, words_heard
from convoice.models.metrics import WerCount, edit_distance
from convoice.records import ClipStatus

CHARACTER_LANGUAGES = frozenset({"zh", "ja"})  # scored by characters (CER)
_FOLD = str.maketrans({"ي": "ی", "ك": "ک", "\u200c": "", "ё": "е"})


@dataclass(frozen=True)
class RefSentence:
    start: float
    end: float
    text: str
    language: str


@dataclass
class LanguageScore:
    """The figures of one language (of the reference)."""

    clips: int = 0
    language_right: int = 0
    seconds: float = 0.0
    accepted_s: float = 0.0
    review_s: float = 0.0
    wer_accepted: WerCount = field(default_factory=lambda: WerCount(0, 0))
    wer_all: WerCount = field(default_factory=lambda: WerCount(0, 0))

    @property
    def language_accuracy(self) -> float:
        return self.language_right / self.clips if self.clips else 0.0

    @property
    def accepted_share(self) -> float:
        return self.accepted_s / self.seconds if self.seconds else 0.0

    @property
    def review_share(self) -> float:
        return self.review_s / self.seconds if self.seconds else 0.0


def tokens(text: str, language: str) -> list[str]:
    """Lower case, no punctuation; words, or characters for Chinese."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).lower()
    kept = "".join(" " if unicodedata.category(ch)[0] in "PSZ" else ch for ch in text)
    if language in CHARACTER_LANGUAGES:
        return [ch for ch in kept if not ch.isspace()]
    return kept.split()


def error_count(reference: str, hypothesis: str, language: str) -> WerCount:
    ref, hyp = tokens(reference, language), tokens(hypothesis, language)
    return WerCount(edit_distance(ref, hyp), len(ref))


def clip_language(clip: Mapping[str, Any], refs: Sequence[RefSentence]) -> str:
    """The language of the reference sentence that covers most of the clip."""
    cover: dict[str, float] = defaultdict(float)
    for r in refs:
        cover[r.language] += overlap(clip["start"], clip["end"], r.start, r.end)
    return max(cover, key=lambda k: cover[k]) if cover and max(cover.values()) > 0 else ""


def _heard(ref: RefSentence, clips: Sequence[Mapping[str, Any]]) -> str:
    joiner = "" if ref.language in CHARACTER_LANGUAGES else " "
    return joiner.join(
        words_heard([(c["start"], c["words"]) for c in clips], ref.start, ref.end, 0.2)
    )


def score_languages(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[RefSentence]]
) -> dict[str, LanguageScore]:
    """Per reference language: clip language accuracy, WER of accepted and all, shares."""
    out: dict[str, LanguageScore] = defaultdict(LanguageScore)
    by_rec: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in clips:
        if c["recording_id"] in truth:
            by_rec[c["recording_id"]].append(c)
    for rid, refs in truth.items():
        for c in by_rec[rid]:
            score = out[clip_language(c, refs) or "?"]
            score.clips += 1
            score.language_right += int(c["language"] == clip_language(c, refs))
            seconds = c["end"] - c["start"]
            score.seconds += seconds
            score.accepted_s += seconds if c["status"] == ClipStatus.ACCEPTED else 0.0
            score.review_s += seconds if c["status"] == ClipStatus.REVIEW else 0.0
        for ref in refs:
            mine = covering_clips(by_rec[rid], ref.start, ref.end)
            if not mine:
                continue
            count = error_count(ref.text, _heard(ref, mine), ref.language)
            out[ref.language].wer_all += count
            if all(c["status"] == ClipStatus.ACCEPTED for c in mine):
                out[ref.language].wer_accepted += count
    return dict(out)


def accuracy(scores: Mapping[str, LanguageScore]) -> float:
    """Clip language accuracy over all languages together."""
    clips = sum(s.clips for s in scores.values())
    return sum(s.language_right for s in scores.values()) / clips if clips else 0.0


BAR_GRID = tuple(round(0.8 + 0.01 * k, 2) for k in range(20))  # 0.80 ... 0.99


@dataclass(frozen=True)
class FittedBar:
    """A language's raw transcript bar: the lowest one whose accepted WER meets the target."""

    language: str
    bar: float | None  # None: no bar of the grid meets the target with any accepted words
    wer: float  # accepted WER at ``bar`` (at the highest bar of the grid when None)
    accepted_words: int
    words: int


def fit_transcript_bars(
    clips: Sequence[Mapping[str, Any]],
    truth: Mapping[str, Sequence[RefSentence]],
    target: float = 0.08,
    grid: Sequence[float] = BAR_GRID,
    low_confidence: str = "low_transcript_confidence",
) -> dict[str, FittedBar]:
    """Per reference language, the lowest raw bar (``transcript_score_raw``) of ``grid`` at
    which the sentences accepted (every covering clip accepted, or in review only for
    low transcript confidence, and at or over the bar) have WER <= ``target``."""
    by_rec: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in clips:
        by_rec[c["recording_id"]].append(c)
    # per sentence: its language, errors, words, lowest score, whether other reasons hold it
    rows: list[tuple[str, WerCount, float, bool]] = []
    for rid, refs in truth.items():
        for ref in refs:
            mine = covering_clips(by_rec[rid], ref.start, ref.end)
            if not mine:
                continue
            held = any(r != low_confidence for c in mine for r in c["review_reasons"])
            score = min(float(c["transcript_score_raw"] or 0.0) for c in mine)
            count = error_count(ref.text, _heard(ref, mine), ref.language)
            rows.append((ref.language, count, score, held))
    out = {}
    for lang in sorted({r[0] for r in rows}):
        same = [r for r in rows if r[0] == lang]
        total = sum(r[1].words for r in same)
        last = FittedBar(lang, None, float("nan"), 0, total)
        for bar in grid:
            kept = sum((r[1] for r in same if not r[3] and r[2] >= bar), WerCount(0, 0))
            last = FittedBar(lang, bar, kept.wer, kept.words, total)
            if kept.words and kept.wer <= target:
                break
        else:
            last = FittedBar(lang, None, last.wer, last.accepted_words, total)
        out[lang] = last
    return out
