"""The words Whisper gets wrong, learned from people's corrections, and how to tell Whisper.

A person's transcript is aligned word by word against the machine's (a
Levenshtein alignment on normalised words, :func:`align`); the words of the
person's text that the machine did not produce (substituted or left out) are
the words it got wrong (:func:`missed_words`). Common function words ("the",
"and", ...) are left out: a recogniser that mishears "a" as "the" needs no
vocabulary. Counted per source channel and for the whole store, they become
:class:`Term` rows; an operator adds or removes terms by hand, and such a
decision is never undone by learning.

:func:`prompt_text` turns the active terms into what faster-whisper is given
(``hotwords`` or ``initial_prompt``); :func:`term_errors` measures how often
the recurring words were misrecognised (the benchmark's bar).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from convoice.records import (
    STORE_WIDE,
    Correction,
    Learned,
    Term,
    TermOrigin,
    TermState,
    normalise,
    term_key,
)

PROMPT_MODES = ("hotwords", "initial_prompt")

_FUNCTION_WORDS = (
    "a an the and or but if of in on at to for from by with as is are was were be been being"
    " am do does did have has had i you he she it we they me him her us them my your his its"
    " our their this that these those there here what which who whom whose when where why how"
    " not no yes so too very just than then also up down out over under again oh um uh ah okay"
    " ok well will would shall should can could may might must let lets s t d ll re ve m"
)
STOPWORDS = frozenset(_FUNCTION_WORDS.split())


def tokens(text: str) -> list[str]:
    """The words of ``text`` as written, punctuation stripped from their ends."""
    out = []
    for raw in re.split(r"[\s\-]+", text):
        word = re.sub(r"^[^\w]+|[^\w]+$", "", raw)
        if normalise(word):
            out.append(word)
    return out


@dataclass(frozen=True)
class Alignment:
    """Word pairs of a reference and a hypothesis: (ref index | None, hyp index | None)."""

    pairs: tuple[tuple[int | None, int | None], ...]
    ref: tuple[str, ...]
    hyp: tuple[str, ...]

    def matched(self) -> set[int]:
        """Reference words the hypothesis got right."""
        return {
            r
            for r, h in self.pairs
            if r is not None and h is not None and normalise(self.ref[r]) == normalise(self.hyp[h])
        }


def align(reference: Sequence[str], hypothesis: Sequence[str]) -> Alignment:
    """A minimum-edit alignment of two word sequences (compared normalised)."""
    ref = [normalise(w) for w in reference]
    hyp = [normalise(w) for w in hypothesis]
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(
                cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]),
                cost[i - 1][j] + 1,
                cost[i][j - 1] + 1,
            )
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    return Alignment(tuple(reversed(pairs)), tuple(reference), tuple(hypothesis))


def is_vocabulary(word: str) -> bool:
    """Whether a word is worth telling Whisper about (no function words, no digits alone)."""
    plain = normalise(word)
    return len(plain) >= 3 and plain not in STOPWORDS and not plain.isdigit()


_SUFFIXES = (
    ("ied", "y"), ("ies", "y"), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"),
    ("es", ""), ("s", ""), ("ly", ""), ("er", ""), ("est", ""),
)  # fmt: skip


def word_forms(word: str) -> list[str]:
    """``word`` and the stems it may be an inflection of ("hurried": hurry; "crabbing": crab)."""
    plain = normalise(word)
    forms = [plain]
    for suffix, ending in _SUFFIXES:
        if plain.endswith(suffix) and len(plain) - len(suffix) >= 3:
            stem = plain[: -len(suffix)]
            forms.append(stem + ending)
            if len(stem) >= 4 and stem[-1] == stem[-2]:
                forms.append(stem[:-1])  # crabb -> crab
    return list(dict.fromkeys(forms))


def is_rare(word: str, pieces: Callable[[str], int]) -> bool:
    """Whether the recogniser does not know ``word``: no spelling of it is one token.

    ``pieces(text)``: how many tokens the recogniser's tokenizer makes of ``text``.
    A word is known when it, or a stem it is an inflection of, is one token with
    or without a leading space, lower-case or capitalised (Whisper's tokenizer
    splits " the" but not "the", " told" but not " Told").
    """
    bare = re.sub(r"^[^\w]+|[^\w]+$", "", word.strip())
    if not normalise(bare):
        return False
    for form in [bare, *word_forms(bare)]:
        for spelt in {form, form.lower(), form.capitalize()}:
            if pieces(spelt) <= 1 or pieces(" " + spelt) <= 1:
                return False
    return True


def missed_words(machine: str, human: str) -> list[str]:
    """The words of the person's text the machine did not get right, as the person wrote them."""
    ref = tokens(human)
    found = align(ref, tokens(machine))
    right = found.matched()
    return [w for i, w in enumerate(ref) if i not in right and is_vocabulary(w)]


def learn(
    existing: Sequence[Term],
    corrections: Iterable[Correction],
    at: str = "",
    keep: Callable[[str], bool] | None = None,
) -> Learned:
    """``existing`` with the missed words of corrections not learned from yet.

    ``keep(word)``: whether a missed word is one the recogniser does not know
    (:func:`convoice.engines.round_two.rare_word`: Whisper spells it with two
    or more tokens); a common word it misheard ("small", "found") is noise to a
    prompt. Each kept word counts for its channel and for the whole store. A clip is
    learned from once (its id is kept with the terms); a removed term keeps
    counting but stays removed; an operator's term keeps its origin.
    """
    by_key = {t.key: t for t in existing}
    seen = {c for t in existing for c in t.clip_ids}
    counts: Counter[str] = Counter()
    spelling: dict[str, Counter[str]] = {}
    clips: dict[str, set[str]] = {}
    new_clips = 0
    for fix in corrections:
        if fix.clip_id in seen:
            continue
        seen.add(fix.clip_id)
        words = [w for w in missed_words(fix.machine, fix.human) if keep is None or keep(w)]
        new_clips += bool(words)
        for word in words:
            for channel in dict.fromkeys((fix.channel, STORE_WIDE)):
                key = term_key(channel, word)
                counts[key] += 1
                spelling.setdefault(key, Counter())[word] += 1
                clips.setdefault(key, set()).add(fix.clip_id)
    changed: list[Term] = []
    for key, n in counts.items():
        channel = key.split("\x1f", 1)[0]
        old = by_key.get(key) or Term(channel, spelling[key].most_common(1)[0][0])
        new = replace(
            old,
            count=old.count + n,
            clip_ids=tuple(sorted(set(old.clip_ids) | clips[key])),
            updated_at=at,
            updated_by=old.updated_by if old.origin == TermOrigin.OPERATOR else "learned",
        )
        by_key[key] = new
        changed.append(new)
    return Learned(sorted(by_key.values(), key=_order), new_clips, changed)


def _order(term: Term) -> tuple[str, int, str]:
    return (term.channel, -term.count, normalise(term.term))


def active_for(terms: Iterable[Term], channel: str, limit: int = 40) -> list[str]:
    """The words to give Whisper for ``channel``: its own first, then the store's; most used first.

    A word an operator removed, for the channel or for the whole store, is left out.
    """
    terms = list(terms)
    removed = {
        normalise(t.term)
        for t in terms
        if t.state == TermState.REMOVED and t.channel in (channel, STORE_WIDE)
    }
    out: dict[str, str] = {}
    for wanted in dict.fromkeys((channel, STORE_WIDE)):
        mine = [t for t in terms if t.channel == wanted and t.state == TermState.ACTIVE]
        for t in sorted(mine, key=_order):
            plain = normalise(t.term)
            if plain not in removed and plain not in out:
                out[plain] = t.term
    return list(out.values())[:limit]


def taught_for(terms: Iterable[Term], channel: str) -> list[str]:
    """The words people taught ``channel`` itself (learned from its corrected clips), most used
    first: what its machine text may be post-corrected towards. An operator's removal wins.
    """
    terms = list(terms)
    if channel == STORE_WIDE:
        return []
    removed = {
        normalise(t.term)
        for t in terms
        if t.state == TermState.REMOVED and t.channel in (channel, STORE_WIDE)
    }
    mine = [
        t for t in terms
        if t.channel == channel and t.state == TermState.ACTIVE and t.clip_ids
        and normalise(t.term) not in removed
    ]  # fmt: skip
    return [t.term for t in sorted(mine, key=_order)]


def prompt_text(words: Sequence[str], mode: str) -> str:
    """What Whisper is told: "A, B, C" as hotwords, or as a sentence-like initial prompt."""
    if mode not in PROMPT_MODES:
        raise ValueError(f"prompt mode must be one of {', '.join(PROMPT_MODES)}, not {mode!r}")
    if not words:
        return ""
    joined = ", ".join(words)
    return joined if mode == "hotwords" else f"{joined}."


@dataclass(frozen=True)
class TermErrors:
    """How often the recurring words were misrecognised: ``errors`` of ``words``."""

    errors: int = 0
    words: int = 0

    @property
    def rate(self) -> float:
        return self.errors / self.words if self.words else 0.0

    def __add__(self, other: TermErrors) -> TermErrors:
        return TermErrors(self.errors + other.errors, self.words + other.words)


def term_errors(reference: str, hypothesis: str, terms: Iterable[str]) -> TermErrors:
    """Of the reference's words that belong to ``terms``, how many the hypothesis missed."""
    wanted = {normalise(w) for t in terms for w in tokens(t)}
    ref = tokens(reference)
    right = align(ref, tokens(hypothesis)).matched()
    mine = [i for i, w in enumerate(ref) if normalise(w) in wanted]
    return TermErrors(sum(i not in right for i in mine), len(mine))
