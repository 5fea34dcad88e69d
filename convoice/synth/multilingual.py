"""A multilingual development corpus from voices that ship offline, in two halves by voice.

The eleven roadmap languages are spoken by the voices of
:mod:`convoice.synth.multilingual_voices` (mbrola, festival, espeak-ng), each
in one half of the voice split: an episode is made of one half's voices only,
so ``convoice bench --languages --split tune`` is what settings may look at and
the default (``report``) is what is reported. Sentences come from
``multilingual_sentences.toml`` (written for this project).

Three kinds of episode, each a :class:`convoice.synth.samples.Episode` whose
truth has one turn per sentence; the language of each of those turns is in
the corpus metadata (``languages``: episode id -> one code per turn):

- ``mono-<lang>``: the half's own voices of that language (up to two; espeak-ng
  variants where the half has none);
- ``interview-en-<lang>``: an English host and a guest answering in another language;
- ``switch-<a>-<b>``: speakers who change language from one sentence to the next:
  German and Dutch mbrola voices that also speak English, and espeak-ng variants
  in Spanish and English (formant speech: a share of the hard kind);
- ``real-en-<lang>-<guest>``: real people (:mod:`convoice.synth.inventory`'s recorded
  identities of the same half): an English-speaking host and a guest who speaks their own
  language (German, Polish, Swedish: whatever the half has) in their own recorded words.
"""

from __future__ import annotations

import functools
import random
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convoice.models.lang_eval import RefSentence
from convoice.records import SAMPLE_RATE, FloatArray
from convoice.synth import inventory
from convoice.synth.media_files import write_media
from convoice.synth.multilingual_voices import CACHE_VERSION, Voice, half_voices, speak
from convoice.synth.samples import (
    EDGE_SILENCE_S,
    Corpus,
    Episode,
    TruthTurn,
    mix_turns,
    write_rttm,
)

ROADMAP = ("en", "ru", "de", "fr", "es", "pt", "zh", "it", "fa", "nl", "tr")
SENTENCES_FILE = Path(__file__).with_name("multilingual_sentences.toml")
SENTENCE_PAUSE_S = (0.35, 0.5)  # between sentences of one turn: clips are cut there
TURN_GAP_S = (0.5, 0.9)
SWITCH_PAIRS = (("de", "en"), ("nl", "en"))  # spoken by voices of both languages, if any
ESPEAK_SWITCH = ("es", "en")  # spoken by the half's espeak-ng variants
QUICK = ("mono-ru", "mono-nl", "interview-en-tr", "switch-de-en")  # --quick: a few episodes
CORPUS_VERSION = 2  # 2: real people's interviews (as many turns as a monolingual episode)
REAL_LINE_S = 2.5  # a real person's line: their utterances in order, joined, this long

Line = tuple[str, str, str]  # speaker label, language, sentence
Script = list[list[Line]]  # turns of sentences


@functools.cache
def sentences() -> dict[str, tuple[str, ...]]:
    """The sentence pool per language."""
    data = tomllib.loads(SENTENCES_FILE.read_text(encoding="utf-8"))
    return {lang: tuple(data[lang]) for lang in ROADMAP}


REAL_NAMES = frozenset(i.name for i in inventory.all_identities() if i.real)


@functools.cache
def real_people(half: str) -> tuple[inventory.Identity, ...]:
    """The half's real people whose recordings are here (the voice split's halves)."""
    return tuple(i for i in inventory.identities(half) if i.real and inventory.available(i))


@functools.cache
def real_lines(name: str) -> dict[str, FloatArray]:
    """A real person's lines by text: their utterances in order, joined
    :data:`~convoice.synth.inventory.UTTERANCE_GAP_S` apart (as the main corpus joins them)
    until at least :data:`REAL_LINE_S` long (the Polish speakers say one word at a time); a
    text said twice keeps its first line."""
    (ident,) = [i for i in inventory.all_identities() if i.name == name and i.real]
    gap = np.zeros(round(inventory.UTTERANCE_GAP_S * SAMPLE_RATE), np.float32)
    lines: dict[str, FloatArray] = {}
    parts: list[FloatArray] = []
    texts: list[str] = []
    for utt in inventory.utterances(ident):
        parts += [gap, inventory.load_utterance(utt)] if parts else [inventory.load_utterance(utt)]
        texts.append(utt.text)
        if sum(len(p) for p in parts) >= REAL_LINE_S * SAMPLE_RATE:
            lines.setdefault(" ".join(texts), np.concatenate(parts))
            parts, texts = [], []
    if parts and not lines:
        lines[" ".join(texts)] = np.concatenate(parts)
    return lines


def say(speaker: str, language: str, text: str) -> FloatArray:
    """A line of the corpus: a real person's recorded one (:func:`real_lines`), else
    ``text`` spoken by the voice (:func:`convoice.synth.multilingual_voices.speak`)."""
    if speaker in REAL_NAMES:
        return real_lines(speaker)[text]
    return speak(speaker, language, text)


@dataclass(frozen=True)
class LingualEpisode:
    episode: Episode
    languages: tuple[str, ...]  # one per truth turn (sentence)


def make_episode(episode_id: str, script: Script, seed: int, out_dir: Path) -> LingualEpisode:
    """Speak ``script`` (turns of sentences) and write ``<id>.wav``, ``.mp4`` and ``.rttm``."""
    rng = random.Random(seed)
    placed: list[tuple[int, FloatArray]] = []
    turns: list[TruthTurn] = []
    languages: list[str] = []
    cursor = round(rng.uniform(*EDGE_SILENCE_S) * SAMPLE_RATE)
    for t, turn in enumerate(script):
        for s, (speaker, language, text) in enumerate(turn):
            if t or s:
                pause = rng.uniform(*(SENTENCE_PAUSE_S if s else TURN_GAP_S))
                cursor += round(pause * SAMPLE_RATE)
            audio = say(speaker, language, text)
            placed.append((cursor, audio))
            end = cursor + len(audio)
            turns.append(TruthTurn(cursor / SAMPLE_RATE, end / SAMPLE_RATE, speaker, text))
            languages.append(language)
            cursor = end
    total = cursor + round(rng.uniform(*EDGE_SILENCE_S) * SAMPLE_RATE)
    mix = mix_turns(placed, total, seed)
    audio_path = write_media(out_dir / f"{episode_id}.wav", mix)
    media_path = write_media(out_dir / f"{episode_id}.mp4", mix)
    speakers = tuple(dict.fromkeys(t.speaker for t in turns))
    episode = Episode(
        episode_id, speakers, tuple(turns), total / SAMPLE_RATE, audio_path, media_path
    )
    write_rttm(episode, episode.rttm_path)
    return LingualEpisode(episode, tuple(languages))


class _Pool:
    """Sentences per language, drawn without repeats until a language's pool is used up."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.left: dict[str, list[str]] = {}

    def take(self, language: str, speaker: str = "") -> str:
        """The next sentence in ``language``; a real ``speaker``'s next own line."""
        key = speaker if speaker in REAL_NAMES else language
        if not self.left.get(key):
            pool = list(real_lines(speaker) if key == speaker else sentences()[language])
            self.rng.shuffle(pool)
            self.left[key] = pool
        return self.left[key].pop()


def _turns(
    speakers: Sequence[tuple[str, Sequence[str]]], n_turns: int, pool: _Pool, rng: random.Random
) -> Script:
    """Speakers take turns of 1-2 sentences; a speaker's sentences cycle through its languages."""
    script: Script = []
    said = [0] * len(speakers)
    for t in range(n_turns):
        k = t % len(speakers)
        speaker, languages = speakers[k]
        turn: list[Line] = []
        for _ in range(rng.choice((1, 2, 2))):
            language = languages[said[k] % len(languages)]
            turn.append((speaker, language, pool.take(language, speaker)))
            said[k] += 1
        script.append(turn)
    return script


def _native(voices: Sequence[Voice], language: str) -> list[Voice]:
    """The half's voices whose own language is ``language`` (not espeak-ng's variants)."""
    return [v for v in voices if v.group != "espeak" and v.languages[0] == language]


def casts(half: str) -> dict[str, list[tuple[str, list[str]]]]:
    """Every episode's speakers and the languages each speaks, by episode id."""
    voices = half_voices(half)
    espeak = [v.name for v in voices if v.group == "espeak"]
    cast: dict[str, list[tuple[str, list[str]]]] = {}
    for lang in ROADMAP:
        names = [v.name for v in _native(voices, lang)][:2] or espeak[:2]
        cast[f"mono-{lang}"] = [(n, [lang]) for n in names]
    hosts = [v.name for v in _native(voices, "en")] or espeak[:1]
    for i, lang in enumerate(ROADMAP[1:]):
        guest = cast[f"mono-{lang}"][-1][0]
        cast[f"interview-en-{lang}"] = [(hosts[i % len(hosts)], ["en"]), (guest, [lang])]
    for a, b in SWITCH_PAIRS:
        both = [v.name for v in _native(voices, a) if b in v.languages][:2]
        if both:
            cast[f"switch-{a}-{b}"] = [(n, [a, b][:: 1 - 2 * k]) for k, n in enumerate(both)]
    a, b = ESPEAK_SWITCH
    cast[f"switch-{a}-{b}"] = [(n, [a, b][:: 1 - 2 * k]) for k, n in enumerate(espeak[:2])]
    real = real_people(half)
    real_hosts = [i.name for i in real if i.language == "en"]
    for k, person in enumerate(i for i in real if i.language != "en" and real_hosts):
        host, lang = real_hosts[k % len(real_hosts)], person.language
        cast[f"real-en-{lang}-{person.name}"] = [(host, ["en"]), (person.name, [lang])]
    return cast


def scripts(seed: int, turns: int, half: str = "report") -> dict[str, Script]:
    """Every episode's script, by episode id: monolingual, interviews, code-switching."""
    rng, pool = random.Random(seed), _Pool(seed)
    out: dict[str, Script] = {}
    for episode_id, cast in casts(half).items():
        n_turns = turns if episode_id.startswith(("mono-", "real-")) else max(turns // 2, 2)
        out[episode_id] = _turns(cast, n_turns, pool, rng)
    return out


def make_corpus(
    out_dir: str | Path,
    turns: int = 8,
    seed: int = 11,
    only: Sequence[str] = (),
    half: str = "report",
) -> Corpus:
    """Make (or reuse) one half's corpus under ``out_dir``; ``only`` keeps those episode ids."""
    root = Path(out_dir).resolve()
    wanted = scripts(seed, turns, half)
    if only:
        wanted = {k: v for k, v in wanted.items() if k in only}
    stamp = {"seed": seed, "half": half, "version": CACHE_VERSION, "corpus": CORPUS_VERSION}
    if (root / "truth.json").is_file():
        corpus = Corpus.load(root)
        have = {e.episode_id for e in corpus.episodes}
        same = all(corpus.metadata.get(k) == v for k, v in stamp.items())
        if same and have == set(wanted):
            return corpus
    root.mkdir(parents=True, exist_ok=True)
    made = [
        make_episode(episode_id, script, seed * 1009 + i, root)
        for i, (episode_id, script) in enumerate(wanted.items())
    ]
    languages = {m.episode.episode_id: list(m.languages) for m in made}
    meta = {"kind": "multilingual", **stamp, "turns": turns, "languages": languages}
    corpus = Corpus(root, tuple(m.episode for m in made), seed, meta)
    corpus.save()
    return corpus


def references(corpus: Corpus) -> dict[str, list[RefSentence]]:
    """Each episode's sentences with their languages, by episode id."""
    languages = corpus.metadata.get("languages", {})
    out: dict[str, list[RefSentence]] = {}
    for ep in corpus.episodes:
        langs = languages.get(ep.episode_id, [])
        if len(langs) != len(ep.turns):
            raise ValueError(f"{corpus.truth_path}: {ep.episode_id} has no language per sentence")
        out[ep.episode_id] = [
            RefSentence(t.start, t.end, t.text, lang)
            for t, lang in zip(ep.turns, langs, strict=True)
        ]
    return out
