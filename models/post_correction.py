"""A bounded post-correction of machine text towards the words people taught a channel.

Whisper base, told a channel's words, still writes many of them as near
misses ("Oife" for Aoife, "TLA XCLA" for Tlaxcala, "Leanfair" for Llanfair).
:func:`find_fixes` replaces a span of one to ``max_words`` machine words by a
vocabulary term when the two are close in spelling or in sound: the smaller of
the normalised edit distances of their letters and of their sound keys
(:func:`sound_key`) is at most ``max_distance``, and the next closest term is
farther by ``margin`` or more. A span is a candidate only when one of its
words is itself unknown to Whisper (``rare``: it spells it with several
tokens), so a common word ("hurry", "found") is never rewritten; a span of
several words neither starts nor ends with a function word ("in", "and"); a
span already spelt as a term is left alone; and when two candidate spans
overlap, the closer one wins.

Only machine transcripts are corrected (:mod:`convoice.models.round_two`),
each fix is recorded with the clip, and the words keep the probabilities
Whisper gave the words they replace (the fix does not make a clip surer).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from convoice.models.metrics import edit_distance
from convoice.models.vocabulary import STOPWORDS
from convoice.records import Transcript, Word

_SOUNDS = (
    ("tch", "c"), ("sch", "sk"), ("ch", "c"), ("sh", "s"), ("ph", "f"), ("th", "t"),
    ("gh", "g"), ("bh", "v"), ("ck", "k"), ("qu", "kw"), ("x", "ks"), ("z", "s"),
    ("c", "k"), ("w", "u"), ("y", "i"), ("j", "i"), ("v", "f"),
)  # fmt: skip


@dataclass(frozen=True)
class PostCorrection:
    """How close a machine span must be to a term to be replaced by it."""

    max_distance: float = 0.34  # normalised edit distance, letters or sound keys; 0 = off
    margin: float = 0.1  # the next closest term is at least this much farther
    max_words: int = 3  # a span of at most this many machine words
    min_term_letters: int = 4  # shorter terms are never a target
    max_letter_distance: float = 0.7  # and the letters alone never farther than this


@dataclass(frozen=True)
class Fix:
    """Machine words ``start``..``stop`` (exclusive) replaced by ``term``."""

    start: int
    stop: int
    before: str
    term: str
    distance: float


def letters(text: str) -> str:
    """Lower-case ASCII letters of ``text`` (accents dropped)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", plain.lower())


def _bare(word: str) -> str:
    return re.sub(r"^[^\w]+|[^\w]+$", "", word.strip())


def sound_key(text: str) -> str:
    """A rough English sound key: digraphs folded, every vowel one class, runs collapsed."""
    key = letters(text)
    for written, sound in _SOUNDS:
        key = key.replace(written, sound)
    key = re.sub(r"[aeiou]+", "a", key)
    key = re.sub(r"h", "", key)
    return re.sub(r"(.)\1+", r"\1", key)


def relative_distance(a: str, b: str) -> float:
    """Levenshtein distance of ``a`` and ``b`` over the longer length (0 same, 1 nothing shared)."""
    if not a and not b:
        return 0.0
    return edit_distance(a, b) / max(len(a), len(b))


def closeness(span: str, term: str, max_letter_distance: float = 1.0) -> float:
    """How far a machine span is from a term: the nearer of letters and sound keys.

    Sound keys are short and lossy ("Zebediah" and "Kwabena" are two letters
    apart in them): a span whose letters are farther than ``max_letter_distance``
    is as far as it gets (1).
    """
    spelt = relative_distance(letters(span), letters(term))
    if spelt > max_letter_distance:
        return 1.0
    return min(spelt, relative_distance(sound_key(span), sound_key(term)))


def _best(span: str, terms: Sequence[str], cfg: PostCorrection) -> tuple[str, float] | None:
    """The term ``span`` stands for, when it is close and clearly closer than the next."""
    scored = sorted((closeness(span, t, cfg.max_letter_distance), letters(t)) for t in terms)
    if not scored or scored[0][0] > cfg.max_distance:
        return None
    if len(scored) > 1 and scored[1][0] - scored[0][0] < cfg.margin:
        return None
    return next(t for t in terms if letters(t) == scored[0][1]), scored[0][0]


def _candidates(
    words: Sequence[str], targets: Sequence[str], rare: Callable[[str], bool], cfg: PostCorrection
) -> list[Fix]:
    """Every span close enough to a term (overlapping one another)."""
    known = {letters(t) for t in targets}
    found: list[Fix] = []
    for i in range(len(words)):
        for n in range(1, cfg.max_words + 1):
            span = words[i : i + n]
            if len(span) < n or any(letters(w) in known for w in span):
                break
            if not any(rare(_bare(w)) for w in span if letters(w)):
                continue
            if n > 1 and (
                _bare(span[0]).lower() in STOPWORDS or _bare(span[-1]).lower() in STOPWORDS
            ):
                continue  # "Quabbie and": the function word stays
            best = _best(" ".join(span), targets, cfg)
            if best:
                found.append(Fix(i, i + n, " ".join(w.strip() for w in span), *best))
    return found


def find_fixes(
    words: Sequence[str],
    terms: Sequence[str],
    rare: Callable[[str], bool],
    cfg: PostCorrection | None = None,
) -> list[Fix]:
    """The spans of ``words`` (machine words, as written) to replace by a term.

    The closest span first (then the shorter one), and no two overlap, so a
    word next to a name ("in Leanfair") is not swallowed with it.
    """
    cfg = cfg or PostCorrection()
    if cfg.max_distance <= 0:
        return []
    targets = [t for t in dict.fromkeys(terms) if len(letters(t)) >= cfg.min_term_letters]
    taken: set[int] = set()
    fixes: list[Fix] = []
    ranked = sorted(
        _candidates(words, targets, rare, cfg),
        key=lambda f: (f.distance, f.stop - f.start, f.start),
    )
    for fix in ranked:
        span = set(range(fix.start, fix.stop))
        if not span & taken:
            fixes.append(fix)
            taken |= span
    return sorted(fixes, key=lambda f: f.start)


def corrected(transcript: Transcript, fixes: Sequence[Fix]) -> Transcript:
    """``transcript`` with ``fixes`` applied to its words (times span the words replaced).

    The new word keeps the lowest probability of the words it replaces, and the
    punctuation after the last of them.
    """
    if not fixes:
        return transcript
    words = list(transcript.words)
    out: list[Word] = []
    i = 0
    for fix in sorted(fixes, key=lambda f: f.start):
        out += words[i : fix.start]
        span = words[fix.start : fix.stop]
        tail = re.search(r"[^\w]*$", span[-1].word.rstrip()).group(0)  # type: ignore[union-attr]
        lead = " " if span[0].word.startswith(" ") else ""
        out.append(
            Word(
                f"{lead}{fix.term}{tail}",
                span[0].start,
                span[-1].end,
                min(w.probability for w in span),
            )
        )
        i = fix.stop
    out += words[i:]
    text = re.sub(r"\s+", " ", "".join(w.word for w in out)).strip()
    return replace(transcript, text=text, words=tuple(out))


def fixer(
    terms: Sequence[str], rare: Callable[[str], bool], cfg: PostCorrection
) -> Callable[[Transcript], list[Fix]] | None:
    """The post-correction of a transcript towards ``terms`` (None: no terms, or switched off)."""
    if not terms or cfg.max_distance <= 0:
        return None
    return lambda t: find_fixes([w.word for w in t.words], terms, rare, cfg)
