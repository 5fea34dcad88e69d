"""Quality measures against reference labels: WER, speaker accuracy, DER."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from convoice.models.text_normalizer import scoring_words

_SPELLING = {"neighbours": "neighbors", "neighbour": "neighbor", "colour": "color",
             "colours": "colors", "favourite": "favorite", "harbour": "harbor",
             "grey": "gray", "theatre": "theater", "centre": "center", "travelled": "traveled",
             "humour": "humor", "flavour": "flavor", "organised": "organized"}  # fmt: skip


def normalize_words(text: str) -> list[str]:
    """Lower case, no punctuation, American spelling: what WER is computed on.

    Letters of every script count as letters ("straße", "привет" stay words), so a
    transcript that is not English is scored on its words rather than on nothing.
    """
    words = re.sub(r"[^\w' ]+|_", " ", text.lower().replace("-", " ")).split()
    return [_SPELLING.get(w.strip("'"), w.strip("'")) for w in words if w.strip("'")]


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass(frozen=True)
class WerCount:
    errors: int
    words: int

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else 0.0

    def __add__(self, other: WerCount) -> WerCount:
        return WerCount(self.errors + other.errors, self.words + other.words)


def wer_count(reference: str, hypothesis: str) -> WerCount:
    """WER on :func:`normalize_words` (the raw scoring: "seven" and "7" differ)."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    return WerCount(edit_distance(ref, hyp), len(ref))


def standard_wer_count(reference: str, hypothesis: str, language: str = "en") -> WerCount:
    """WER as the field scores it (``text_normalizer.scoring_words``: numbers, spellings,
    contractions, titles for English; Whisper's basic normalisation otherwise)."""
    ref, hyp = scoring_words(reference, language), scoring_words(hypothesis, language)
    return WerCount(edit_distance(ref, hyp), len(ref))


def one_to_one_mapping(overlap: dict[tuple[str, str], float]) -> dict[str, str]:
    """Predicted label -> reference label maximising total overlap, one to one."""
    from scipy.optimize import linear_sum_assignment

    preds = sorted({p for p, _ in overlap})
    refs = sorted({r for _, r in overlap})
    if not preds or not refs:
        return {}
    matrix = np.zeros((len(preds), len(refs)))
    for (p, r), value in overlap.items():
        matrix[preds.index(p), refs.index(r)] = value
    rows, cols = linear_sum_assignment(-matrix)
    return {preds[i]: refs[j] for i, j in zip(rows, cols, strict=True) if matrix[i, j] > 0}


@dataclass(frozen=True)
class DiarizationErrors:
    """Seconds of diarization error against a reference (collar 0, overlap scored), by kind;
    summed over recordings with ``+``, so a corpus's rates weigh every second of speech alike."""

    missed_s: float = 0.0
    false_alarm_s: float = 0.0
    confusion_s: float = 0.0
    speech_s: float = 0.0  # reference speech, overlap counted once per speaker

    def __add__(self, other: DiarizationErrors) -> DiarizationErrors:
        return DiarizationErrors(
            self.missed_s + other.missed_s,
            self.false_alarm_s + other.false_alarm_s,
            self.confusion_s + other.confusion_s,
            self.speech_s + other.speech_s,
        )

    def _rate(self, seconds: float) -> float:
        return seconds / self.speech_s if self.speech_s else 0.0

    @property
    def der(self) -> float:
        return self._rate(self.missed_s + self.false_alarm_s + self.confusion_s)

    @property
    def missed(self) -> float:
        return self._rate(self.missed_s)

    @property
    def false_alarm(self) -> float:
        return self._rate(self.false_alarm_s)

    @property
    def confusion(self) -> float:
        return self._rate(self.confusion_s)


def diarization_errors(
    reference: list[tuple[float, float, str]], hypothesis: list[tuple[float, float, str]]
) -> DiarizationErrors:
    """Missed, false-alarm and confused speech (collar 0, overlap scored), with
    pyannote.metrics."""
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for i, (s, e, label) in enumerate(reference):
        ref[Segment(s, e), i] = label
    for i, (s, e, label) in enumerate(hypothesis):
        hyp[Segment(s, e), i] = label
    parts = DiarizationErrorRate()(ref, hyp, detailed=True)
    return DiarizationErrors(
        float(parts["missed detection"]),
        float(parts["false alarm"]),
        float(parts["confusion"]),
        float(parts["total"]),
    )


def diarization_error_rate(
    reference: list[tuple[float, float, str]], hypothesis: list[tuple[float, float, str]]
) -> float:
    """DER (collar 0, overlap scored) with pyannote.metrics."""
    return diarization_errors(reference, hypothesis).der


def parse_rttm(text: str) -> list[tuple[float, float, str]]:
    """(start, end, speaker) of every ``SPEAKER`` line of an RTTM file's text."""
    out = []
    for line in text.split("\n"):
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            out.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return out
