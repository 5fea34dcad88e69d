"""A multilingual development corpus from voices that ship offline.

The eleven roadmap languages are spoken by espeak-ng (formant synthesis: one
male and one female variant per language; the same variant counts as one
speaker in every language it speaks) and, for English hosts, by flite.
Sentences come from ``multilingual_sentences.toml`` (written for this project).

Three kinds of episode, each a :class:`convoice.synth.samples.Episode` whose
truth has one turn per sentence; the language of each of those turns is in
the corpus metadata (``languages``: episode id -> one code per turn):

- ``mono-<lang>``: two speakers talking in one language;
- ``interview-en-<lang>``: an English host (flite) and a guest answering in another language;
- ``switch-<a>-<b>``: two speakers who change language from one sentence to the next.

Reserved voices (``../shared/notes/evaluation.md``) are not used: no mbrola, no RHVoice.
"""

from __future__ import annotations

import functools
import hashlib
import random
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convoice.engines import loaders
from convoice.models.lang_eval import RefSentence
from convoice.records import SAMPLE_RATE, FloatArray
from convoice.synth.media_files import write_media
from convoice.synth.samples import (
    EDGE_SILENCE_S,
    Corpus,
    Episode,
    TruthTurn,
    mix_turns,
    write_rttm,
)
from convoice.synth.speech import (
    TARGET_RMS_DBFS,
    SynthesisError,
    synthesize,
    trimmed,
)

ROADMAP = ("en", "ru", "de", "fr", "es", "pt", "zh", "it", "fa", "nl", "tr")
ESPEAK_VOICES = {
    "en": "en-us", "ru": "ru", "de": "de", "fr": "fr-fr", "es": "es", "pt": "pt",
    "zh": "cmn-latn-pinyin", "it": "it", "fa": "fa", "nl": "nl", "tr": "tr",
}  # fmt: skip
# espeak-ng's "cmn" voice reads Chinese characters as pinyin spelled in English;
# "cmn-latn-pinyin" reads them as Mandarin.
VARIANTS = {"espeak-m": "m3", "espeak-f": "f2"}
FLITE_HOST = "slt"  # an English host voice of convoice/synth/speech.py
SENTENCES_FILE = Path(__file__).with_name("multilingual_sentences.toml")
CACHE_VERSION = "ml-1"
SENTENCE_PAUSE_S = (0.35, 0.5)  # between sentences of one turn: clips are cut there
TURN_GAP_S = (0.5, 0.9)
SWITCH_PAIRS = (("en", "de"), ("ru", "en"), ("es", "en"), ("fr", "it"))

Line = tuple[str, str, str]  # speaker label, language, sentence
Script = list[list[Line]]  # turns of sentences


@functools.cache
def sentences() -> dict[str, tuple[str, ...]]:
    """The sentence pool per language."""
    data = tomllib.loads(SENTENCES_FILE.read_text(encoding="utf-8"))
    return {lang: tuple(data[lang]) for lang in ROADMAP}


def _level(audio: FloatArray) -> FloatArray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0.0:
        raise SynthesisError("espeak-ng produced silence")
    audio = trimmed(audio, peak)
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    gain = min(10 ** (TARGET_RMS_DBFS / 20) / max(rms, 1e-9), 0.95 / peak)
    return (audio * gain).astype(np.float32)


def _espeak(voice: str, text: str) -> FloatArray:
    import soundfile as sf

    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None or sox is None:
        raise SynthesisError("espeak-ng and sox are needed: install the Debian packages")
    with tempfile.TemporaryDirectory(prefix="convoice-ml-") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        for cmd in (
            [espeak, "-v", voice, "-w", str(raw), "--", text],
            [sox, "-V1", "-G", str(raw), "-r", "16000", "-c", "1", "-e", "floating-point",
             "-b", "32", str(out)],
        ):  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SynthesisError(f"{cmd[0]} failed: {done.stderr.strip()[-300:]}")
        data, _ = sf.read(out, dtype="float32", always_2d=True)
    return _level(np.ascontiguousarray(data[:, 0]))


def speak(speaker: str, language: str, text: str) -> FloatArray:
    """``text`` in ``language`` by ``speaker`` (a key of :data:`VARIANTS` or "flite-<voice>")."""
    if speaker.startswith("flite-"):
        if language != "en":
            raise SynthesisError(f"flite speaks English only, not {language!r}")
        return synthesize(speaker.removeprefix("flite-"), text)
    if speaker not in VARIANTS or language not in ESPEAK_VOICES:
        raise SynthesisError(f"no voice {speaker!r} for language {language!r}")
    voice = f"{ESPEAK_VOICES[language]}+{VARIANTS[speaker]}"
    key = f"{CACHE_VERSION}\x1f{voice}\x1f{text}".encode()
    cached = loaders.cache_dir() / "tts-ml" / f"{hashlib.sha256(key).hexdigest()}.npy"
    if cached.is_file():
        return np.asarray(np.load(cached), dtype=np.float32)
    audio = _espeak(voice, text)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".tmp.npy")
    np.save(partial, audio)
    partial.replace(cached)
    return audio


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
            audio = speak(speaker, language, text)
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

    def take(self, language: str) -> str:
        if not self.left.get(language):
            pool = list(sentences()[language])
            self.rng.shuffle(pool)
            self.left[language] = pool
        return self.left[language].pop()


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
            turn.append((speaker, language, pool.take(language)))
            said[k] += 1
        script.append(turn)
    return script


def scripts(seed: int, turns: int) -> dict[str, Script]:
    """Every episode's script, by episode id: monolingual, interviews, code-switching."""
    rng, pool = random.Random(seed), _Pool(seed)
    out: dict[str, Script] = {}
    for lang in ROADMAP:
        cast = [("espeak-m", [lang]), ("espeak-f", [lang])]
        out[f"mono-{lang}"] = _turns(cast, turns, pool, rng)
    for lang in ROADMAP[1:]:
        cast = [(f"flite-{FLITE_HOST}", ["en"]), ("espeak-m", [lang])]
        out[f"interview-en-{lang}"] = _turns(cast, max(turns // 2, 2), pool, rng)
    for a, b in SWITCH_PAIRS:
        cast = [("espeak-f", [a, b]), ("espeak-m", [b, a])]
        out[f"switch-{a}-{b}"] = _turns(cast, max(turns // 2, 2), pool, rng)
    return out


def make_corpus(
    out_dir: str | Path, turns: int = 8, seed: int = 11, only: Sequence[str] = ()
) -> Corpus:
    """Make (or reuse) the corpus under ``out_dir``; ``only`` keeps those episode ids."""
    root = Path(out_dir).resolve()
    if (root / "truth.json").is_file():
        corpus = Corpus.load(root)
        wanted = set(only) or set(scripts(seed, turns))
        have = {e.episode_id for e in corpus.episodes}
        if corpus.metadata.get("seed") == seed and have == wanted:
            return corpus
    root.mkdir(parents=True, exist_ok=True)
    made: list[LingualEpisode] = []
    for i, (episode_id, script) in enumerate(scripts(seed, turns).items()):
        if not only or episode_id in only:
            made.append(make_episode(episode_id, script, seed * 1009 + i, root))
    languages = {m.episode.episode_id: list(m.languages) for m in made}
    meta = {"kind": "multilingual", "seed": seed, "turns": turns, "languages": languages}
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
