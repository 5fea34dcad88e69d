"""The benchmark's corpora for one half of the voice split: hard, varied, real people included.

:func:`make_half_corpus` writes episodes (16 kHz WAV, MP4, RTTM, ``truth.json``)
in which the identities of one half of :mod:`convoice.synth.inventory` talk:

- every identity talks in three or more episodes (:func:`plan_casts`), and
  every other episode opens with two identities of the same engine (mbrola of
  any language, or two real people): the pairs a speaker encoder confuses;
- each episode has a *condition* (:data:`CONDITIONS`, dealt in turn): a clean
  studio, one speaker on the telephone (300-3400 Hz, 8 kHz mu-law), a
  reverberant room, an equalised speaker, pink noise at 20, 10 and 5 dB SNR;
- some turns start before the previous one ends (the ground truth keeps both
  turns, so the overlap is in it);
- real people's turns are their own recorded utterances, not synthesis.

The truth's metadata lists each identity (group, real or synthetic, language).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convoice.records import SAMPLE_RATE, FloatArray
from convoice.synth import inventory as voices
from convoice.synth.media_files import write_media
from convoice.synth.samples import Corpus, Episode, TruthTurn, write_rttm
from convoice.synth.speech import INVENTORY, SynthesisError, synthesize

# How episodes are made from the voices; bumped when the same voices would give other
# bytes (2: sox in repeatable mode, so the telephone channel's dither is the same each make)
CORPUS_VERSION = 2
TURN_GAP_S = (0.25, 0.8)
EDGE_SILENCE_S = 0.5
NOISE_FLOOR_DBFS = -70.0


@dataclass(frozen=True)
class Condition:
    """How an episode sounds: a channel for its last speaker or for all, noise, overlaps."""

    name: str
    channel: str = "clean"  # "clean" | "phone" | "reverb" | "eq"
    whom: str = "guest"  # "guest": the cast's last speaker only; "all": everyone
    snr_db: float | None = None  # pink noise over the whole episode
    overlap_prob: float = 0.0  # chance that a turn starts before the previous one ends


CONDITIONS: tuple[Condition, ...] = (
    Condition("studio"),
    Condition("guest on the telephone, 20 dB SNR", "phone", "guest", 20.0, 0.15),
    Condition("reverberant room", "reverb", "all", None, 0.15),
    Condition("pink noise 10 dB SNR, overlaps", "clean", "all", 10.0, 0.3),
    Condition("equalised guest, 20 dB SNR", "eq", "guest", 20.0, 0.0),
    Condition("telephone call, 5 dB SNR", "phone", "all", 5.0, 0.15),
)

_EFFECTS = {
    "reverb": ["reverb", "40", "50", "70"],
    "eq": ["bass", "-8", "treble", "+6", "equalizer", "1500", "1q", "+5"],
}


def plan_casts(
    ids: Sequence[voices.Identity], n_episodes: int, min_episodes: int, seed: int
) -> list[tuple[str, ...]]:
    """Casts of two or three identities; each identity in ``min_episodes`` or more.

    Even episodes open with the least-used identity and the least-used other one
    of its engine (a hard pair) when its engine has one.
    """
    if len(ids) < 2:
        raise ValueError(f"need two or more identities, got {len(ids)}")
    rng = random.Random(seed)
    count = {i.name: 0 for i in ids}
    group = {i.name: i.engine for i in ids}
    casts: list[tuple[str, ...]] = []
    for e in range(n_episodes):
        k = 3 if e % 2 == 1 and len(ids) >= 3 else 2
        ranked = sorted(count, key=lambda n: (count[n], rng.random()))
        cast = [ranked[0]]
        mates = [n for n in ranked[1:] if group[n] == group[cast[0]]]
        if e % 2 == 0 and mates:
            cast.append(mates[0])
        cast += [n for n in ranked if n not in cast][: k - len(cast)]
        for n in cast:
            count[n] += 1
        casts.append(tuple(cast))
    short = [n for n, c in count.items() if c < min_episodes]
    if short:
        raise ValueError(f"{n_episodes} episodes leave {short} in fewer than {min_episodes}")
    return casts


def fewest_episodes(ids: Sequence[voices.Identity], min_episodes: int, seed: int) -> int:
    """The fewest episodes :func:`plan_casts` needs for ``min_episodes`` per identity."""
    n = max(1, (2 * min_episodes * len(ids)) // 5)
    while True:
        try:
            plan_casts(ids, n, min_episodes, seed)
            return n
        except ValueError:
            n += 1


class _Speech:
    """Turn audio for each identity: synthesized sentences, or the person's own utterances."""

    def __init__(self, ids: Sequence[voices.Identity], seed: int, cache_dir: Path | None):
        self.ids = {i.name: i for i in ids}
        self.cache_dir = cache_dir
        self.rng = random.Random(seed)
        self._utts: dict[str, list[tuple[FloatArray, str]]] = {}
        self._next: dict[str, int] = {}

    def turn(self, name: str, sentences: list[str], episode: int) -> tuple[FloatArray, str]:
        ident = self.ids[name]
        if ident.real:
            return self._recorded(ident, len(sentences))
        voice = ident.voices[episode % len(ident.voices)]
        parts: list[FloatArray] = []
        for i, text in enumerate(sentences):
            if i:
                parts.append(
                    np.zeros(round(self.rng.uniform(0.15, 0.35) * SAMPLE_RATE), np.float32)
                )
            parts.append(synthesize(voice, text, self.cache_dir))
        return np.concatenate(parts), " ".join(sentences)

    def _recorded(self, ident: voices.Identity, n: int) -> tuple[FloatArray, str]:
        if ident.name not in self._utts:
            loaded = [(voices.load_utterance(u), u.text) for u in voices.utterances(ident)]
            if not loaded:
                raise voices.VoiceUnavailable(f"{ident.name} has no usable utterance")
            self._utts[ident.name] = loaded
            self._next[ident.name] = self.rng.randrange(len(loaded))
        pool = self._utts[ident.name]
        parts: list[FloatArray] = []
        texts: list[str] = []
        seconds = 0.0
        while seconds < 2.0 * n:  # short utterances (alsa's phrases) are joined
            audio, text = pool[self._next[ident.name] % len(pool)]
            self._next[ident.name] += 1
            if parts:
                parts.append(np.zeros(round(voices.UTTERANCE_GAP_S * SAMPLE_RATE), np.float32))
            parts.append(audio)
            texts.append(text)
            seconds += len(audio) / SAMPLE_RATE
            if len(texts) >= len(pool):
                break
        return np.concatenate(parts), " ".join(texts)


def _sox_effect(audio: FloatArray, channel: str) -> FloatArray:
    """Put ``audio`` through a channel: telephone (band-limit, 8 kHz mu-law), reverb or EQ."""
    import soundfile as sf

    if channel == "clean":
        return audio
    sox = shutil.which("sox")
    if sox is None:
        raise SynthesisError("sox not found: install the Debian package sox")
    with tempfile.TemporaryDirectory(prefix="convoice-chan-") as tmp:
        src, mid, out = Path(tmp) / "in.wav", Path(tmp) / "mid.wav", Path(tmp) / "out.wav"
        sf.write(src, audio, SAMPLE_RATE, subtype="FLOAT")
        fmt = ["-e", "floating-point", "-b", "32"]
        # -R: sox dithers the mu-law step with an unseeded generator (up to 0.015 of full
        # scale apart between two makes of one corpus, every telephone episode); repeatable
        # mode seeds it, so a corpus made again is the same bytes.
        sox_r = [sox, "-R", "-V1"]
        if channel == "phone":
            steps = [[*sox_r, str(src), "-r", "8000", "-e", "mu-law", str(mid),
                      "sinc", "300-3400"],
                     [*sox_r, str(mid), "-r", str(SAMPLE_RATE), *fmt, str(out)]]  # fmt: skip
        else:
            steps = [[*sox_r, str(src), *fmt, str(out), *_EFFECTS[channel]]]
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SynthesisError(f"sox {channel} failed: {done.stderr.strip()[-300:]}")
        data, _ = sf.read(out, dtype="float32", always_2d=True)
    result = np.ascontiguousarray(data[:, 0])
    peak = float(np.max(np.abs(result))) or 1.0
    return (result * min(1.0, 0.95 / peak)).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> FloatArray:
    """Unit-RMS noise with a 1/f power spectrum."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)).astype(np.float32)


def add_noise(mix: FloatArray, speech_rms: float, snr_db: float, seed: int) -> FloatArray:
    """Pink noise at ``snr_db`` below the speech level."""
    noise = pink_noise(len(mix), np.random.default_rng(seed))
    return (mix + noise * speech_rms * 10 ** (-snr_db / 20)).astype(np.float32)


def _place(
    turns: list[tuple[str, FloatArray, str]], overlap_prob: float, rng: random.Random
) -> list[tuple[int, FloatArray, TruthTurn]]:
    """Start sample of each turn: after a pause, or overlapping the previous turn."""
    placed: list[tuple[int, FloatArray, TruthTurn]] = []
    cursor = round(EDGE_SILENCE_S * SAMPLE_RATE)
    for name, audio, text in turns:
        if placed and rng.random() < overlap_prob:
            prev = placed[-1][1]
            overlap = min(rng.uniform(0.4, 1.2) * SAMPLE_RATE, len(prev) / 2, len(audio) / 2)
            start = cursor - round(overlap)
        else:
            start = cursor if not placed else cursor + round(rng.uniform(*TURN_GAP_S) * SAMPLE_RATE)
        truth = TruthTurn(start / SAMPLE_RATE, (start + len(audio)) / SAMPLE_RATE, name, text)
        placed.append((start, audio, truth))
        cursor = max(cursor, start + len(audio))
    return placed


def make_half_episode(
    episode_id: str,
    cast: Sequence[str],
    condition: Condition,
    speech: _Speech,
    n_turns: int,
    seed: int,
    out_dir: Path,
) -> Episode:
    """One conversation of ``cast`` under ``condition``: WAV, MP4 and RTTM under ``out_dir``."""
    from convoice.synth.samples import _conversation
    from convoice.synth.sentences import pick_sentences

    rng = random.Random(seed)
    who = _conversation(cast, n_turns, rng)
    sizes = rng.choices((1, 2), weights=(0.6, 0.4), k=n_turns)
    sentences = iter(pick_sentences(sum(sizes), seed))
    turns = []
    for name, size in zip(who, sizes, strict=True):
        audio, text = speech.turn(name, [next(sentences) for _ in range(size)], seed)
        if condition.channel != "clean" and (condition.whom == "all" or name == cast[-1]):
            audio = _sox_effect(audio, condition.channel)
        turns.append((name, audio, text))
    placed = _place(turns, condition.overlap_prob, rng)
    total = placed[-1][0] + len(placed[-1][1]) + round(EDGE_SILENCE_S * SAMPLE_RATE)
    total = max(total, max(s + len(a) for s, a, _ in placed) + 1)
    floor = np.random.default_rng(seed).standard_normal(total) * 10 ** (NOISE_FLOOR_DBFS / 20)
    mix = floor.astype(np.float32)
    for start, audio, _ in placed:
        mix[start : start + len(audio)] += audio
    if condition.snr_db is not None:
        speech_rms = float(np.sqrt(np.mean(np.concatenate([a for _, a, _ in placed]) ** 2)))
        mix = add_noise(mix, speech_rms, condition.snr_db, seed)
    mix *= min(1.0, 0.95 / max(float(np.max(np.abs(mix))), 1e-9))
    audio_path = write_media(out_dir / f"{episode_id}.wav", mix)
    media_path = write_media(out_dir / f"{episode_id}.mp4", mix)
    episode = Episode(episode_id, tuple(cast), tuple(t for _, _, t in placed),
                      total / SAMPLE_RATE, audio_path, media_path)  # fmt: skip
    write_rttm(episode, episode.rttm_path)
    return episode


def identity_metadata(ids: Sequence[voices.Identity], half: str) -> dict[str, Any]:
    """What the scorer needs to know of each identity: real or synthetic, language, group."""
    return {
        "half": half,
        "split_rule": voices.SPLIT_SALT,
        "identities": {
            i.name: {
                "group": i.group,
                "engine": i.engine,
                "real": i.real,
                "language": i.language,
                "source": i.source,
                # the voices' own keys: a voice whose engine settings change makes the
                # corpus again instead of reusing audio of the voice it was
                "voices": [INVENTORY[v].key() for v in i.voices if v in INVENTORY],
            }
            for i in ids
        },
        "corpus_version": CORPUS_VERSION,
    }


def make_half_corpus(
    out_dir: str | Path,
    half: str = "report",
    n_episodes: int = 0,
    n_turns: int = 6,
    seed: int = 11,
    cache_dir: str | Path | None = None,
) -> Corpus:
    """The corpus of one half of the split; reused when ``truth.json`` already says the same.

    ``n_episodes`` 0: the fewest episodes in which every identity talks three times.
    """
    root = Path(out_dir).resolve()
    ids = [i for i in voices.identities(half) if voices.available(i)]
    n_episodes = n_episodes or fewest_episodes(ids, 3, seed)
    conditions = {f"{half}{e + 1:02d}": CONDITIONS[e % len(CONDITIONS)] for e in range(n_episodes)}
    meta = identity_metadata(ids, half) | {"turns": n_turns, "seed": seed}
    meta["conditions"] = {k: c.name for k, c in conditions.items()}
    if (root / "truth.json").is_file():
        old = Corpus.load(root)
        if old.metadata == meta and all(e.media_path.is_file() for e in old.episodes):
            return old
    root.mkdir(parents=True, exist_ok=True)
    casts = plan_casts(ids, n_episodes, 3, seed)
    speech = _Speech(ids, seed, Path(cache_dir) if cache_dir else None)
    episodes = tuple(
        make_half_episode(eid, cast, cond, speech, n_turns, seed * 1009 + e + 1, root)
        for e, (cast, (eid, cond)) in enumerate(zip(casts, conditions.items(), strict=True))
    )
    corpus = Corpus(root, episodes, seed, meta)
    corpus.save()
    return corpus


# -- anyone's own annotated corpus -------------------------------------------------------

MEDIA_SUFFIXES = (".wav", ".flac", ".mp3", ".mp4", ".m4a", ".ogg", ".opus", ".webm", ".mkv")


class CorpusFormatError(ValueError):
    """An annotated corpus folder that does not follow the documented format."""


def _json_turns(path: Path) -> list[TruthTurn]:
    import json

    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [
            TruthTurn(float(r["start"]), float(r["end"]), str(r["speaker"]), str(r.get("text", "")))
            for r in rows
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise CorpusFormatError(
            f"{path}: expected a JSON list of {{start, end, speaker, text}}: {err}"
        ) from err


def _rttm_turns(path: Path) -> list[TruthTurn]:
    from convoice.models.metrics import parse_rttm

    try:
        return [
            TruthTurn(s, e, who, "") for s, e, who in parse_rttm(path.read_text(encoding="utf-8"))
        ]
    except (ValueError, IndexError) as err:
        raise CorpusFormatError(f"{path}: not RTTM: {err}") from err


def load_annotated(folder: str | Path) -> tuple[Corpus, list[str]]:
    """An operator's corpus (format in the README): the episodes, and what was skipped and why.

    Each ``<episode>.<media>`` needs ``<episode>.rttm`` or ``<episode>.json`` (turns
    with text; it wins over the RTTM); ``<episode>.txt`` is the whole transcript.
    """
    from convoice.media.audio import decode

    root = Path(folder).resolve()
    if not root.is_dir():
        raise CorpusFormatError(f"{root} is not a directory")
    episodes, skipped, texts = [], [], {}
    for media in sorted(p for p in root.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES):
        rttm, js, txt = (media.with_suffix(s) for s in (".rttm", ".json", ".txt"))
        if not (rttm.is_file() or js.is_file()):
            skipped.append(f"{media.name}: no {rttm.name} or {js.name}")
            continue
        turns = _json_turns(js) if js.is_file() else _rttm_turns(rttm)
        if not turns:
            skipped.append(f"{media.name}: its annotation has no speaker turn")
            continue
        if any(t.end <= t.start for t in turns):
            raise CorpusFormatError(f"{media.name}: a turn ends before it starts")
        duration = decode(media).duration
        speakers = tuple(dict.fromkeys(t.speaker for t in turns))
        episodes.append(Episode(media.stem, speakers, tuple(turns), duration, media, media))
        if txt.is_file():
            texts[media.stem] = txt.read_text(encoding="utf-8").strip()
    if not episodes:
        raise CorpusFormatError(
            f"{root}: no media file with an annotation ({', '.join(skipped) or 'no media'})"
        )
    meta = {"half": "own", "transcripts": texts}
    return Corpus(root, tuple(episodes), 0, meta), skipped
