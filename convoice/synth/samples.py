"""Sample media with ground truth: synthetic conversations, bad media and real recordings.

Used by ``convoice demo``, the test-suite and the benchmark. A *corpus* is a
set of *episodes*; each episode is a conversation between two or three TTS
voices (see :data:`convoice.synth.speech.VOICES`) written as a 16 kHz WAV, an MP4
that ingests like a real video, and an RTTM file; ``truth.json`` holds the
whole corpus. The speaker labels of the ground truth are the voice names, so
the same speaker keeps the same label across episodes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convoice.records import SAMPLE_RATE, FloatArray
from convoice.synth.media_files import write_media
from convoice.synth.sentences import pick_sentences
from convoice.synth.speech import VOICES, synthesize

NOISE_FLOOR_DBFS = -70.0  # recordings are never digitally silent
SENTENCES_PER_TURN: tuple[int, ...] = (1, 2, 3)
SENTENCES_PER_TURN_WEIGHTS: tuple[float, ...] = (0.45, 0.4, 0.15)
SENTENCE_PAUSE_S = (0.15, 0.35)  # pause between two sentences of one turn
EDGE_SILENCE_S = (0.3, 0.8)  # silence before the first and after the last turn
TRUTH_FILE = "truth.json"


@dataclass(frozen=True)
class TruthTurn:
    """One speaker turn of the ground truth, in seconds from the start of the episode."""

    start: float
    end: float
    speaker: str
    text: str

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Episode:
    """A synthetic conversation and where its media are."""

    episode_id: str
    speakers: tuple[str, ...]
    turns: tuple[TruthTurn, ...]
    duration: float
    audio_path: Path  # 16 kHz mono WAV
    media_path: Path  # the MP4, or the WAV when no video was made

    @property
    def rttm_path(self) -> Path:
        return self.audio_path.with_suffix(".rttm")

    def to_dict(self, root: Path | None = None) -> dict[str, Any]:
        """A JSON-ready dict; paths are relative to ``root`` when given."""

        def rel(path: Path) -> str:
            return str(path.relative_to(root)) if root is not None else str(path)

        return {
            "episode_id": self.episode_id,
            "speakers": list(self.speakers),
            "duration": self.duration,
            "audio_path": rel(self.audio_path),
            "media_path": rel(self.media_path),
            "turns": [
                {"start": t.start, "end": t.end, "speaker": t.speaker, "text": t.text}
                for t in self.turns
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], root: Path | None = None) -> Episode:
        """The inverse of :meth:`to_dict`."""
        base = root if root is not None else Path()
        return cls(
            episode_id=str(data["episode_id"]),
            speakers=tuple(data["speakers"]),
            turns=tuple(
                TruthTurn(float(t["start"]), float(t["end"]), str(t["speaker"]), str(t["text"]))
                for t in data["turns"]
            ),
            duration=float(data["duration"]),
            audio_path=base / data["audio_path"],
            media_path=base / data["media_path"],
        )


@dataclass(frozen=True)
class Corpus:
    """Episodes made together, under one directory, with ``truth.json`` in it."""

    root: Path
    episodes: tuple[Episode, ...]
    seed: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def speakers(self) -> tuple[str, ...]:
        """Every speaker of the corpus, sorted."""
        return tuple(sorted({s for e in self.episodes for s in e.speakers}))

    @property
    def truth_path(self) -> Path:
        return self.root / TRUTH_FILE

    def episodes_of(self, speaker: str) -> tuple[Episode, ...]:
        """The episodes in which ``speaker`` talks."""
        return tuple(e for e in self.episodes if speaker in e.speakers)

    def to_json(self) -> str:
        """The corpus as JSON; media paths are relative to :attr:`root`."""
        data = {
            "format": "convoice-samples-1",
            "seed": self.seed,
            "metadata": self.metadata,
            "speakers": list(self.speakers),
            "episodes": [e.to_dict(self.root) for e in self.episodes],
        }
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, root: str | Path) -> Corpus:
        """Read :meth:`to_json` output; ``root`` is the directory that holds the media."""
        data = json.loads(text)
        if data.get("format") != "convoice-samples-1":
            raise ValueError(f"not a convoice sample corpus: format={data.get('format')!r}")
        base = Path(root)
        episodes = tuple(Episode.from_dict(e, base) for e in data["episodes"])
        return cls(base, episodes, int(data.get("seed", 0)), dict(data.get("metadata", {})))

    def save(self) -> Path:
        """Write ``truth.json`` under :attr:`root` and return its path."""
        self.truth_path.write_text(self.to_json(), encoding="utf-8")
        return self.truth_path

    @classmethod
    def load(cls, path: str | Path) -> Corpus:
        """Read a corpus from its directory or from its ``truth.json``."""
        path = Path(path)
        if path.is_dir():
            path = path / TRUTH_FILE
        return cls.from_json(path.read_text(encoding="utf-8"), path.parent)


def _conversation(speakers: Sequence[str], n_turns: int, rng: random.Random) -> list[str]:
    """Who speaks in each turn: everyone early on, then mostly replies, never twice in a row."""
    order = list(speakers)
    rng.shuffle(order)
    seq = order[:n_turns]
    while len(seq) < n_turns:
        others = [s for s in speakers if s != seq[-1]]
        # the one who spoke before the last speaker often answers back
        if len(others) > 1 and len(seq) >= 2 and rng.random() < 0.6:
            seq.append(seq[-2])
        else:
            seq.append(rng.choice(others))
    return seq


def make_episode(
    episode_id: str,
    speakers: Sequence[str],
    n_turns: int,
    seed: int,
    out_dir: str | Path,
    gap: tuple[float, float] = (0.25, 0.9),
    overlap_prob: float = 0.0,
    make_video: bool = True,
    cache_dir: str | Path | None = None,
) -> Episode:
    """Synthesize one conversation and write ``<id>.wav``, ``<id>.rttm`` and ``<id>.mp4``.

    Speakers alternate conversationally with 1 to 3 sentences per turn and a
    random pause (``gap``, seconds) between turns. With probability
    ``overlap_prob`` a turn starts before the previous one ends (by at most
    half of either turn); the ground truth keeps both turns.
    """
    _check_episode(speakers, n_turns, gap, overlap_prob)
    rng = random.Random(seed)
    who = _conversation(speakers, n_turns, rng)
    sizes = rng.choices(SENTENCES_PER_TURN, weights=SENTENCES_PER_TURN_WEIGHTS, k=n_turns)
    sentences = iter(pick_sentences(sum(sizes), seed))
    placed, turns, cursor = _place_turns(who, sizes, sentences, rng, gap, overlap_prob, cache_dir)
    total = cursor + round(rng.uniform(*EDGE_SILENCE_S) * SAMPLE_RATE)
    mix = mix_turns(placed, total, seed)

    out = Path(out_dir)
    audio_path = write_media(out / f"{episode_id}.wav", mix)
    media_path = write_media(out / f"{episode_id}.mp4", mix) if make_video else audio_path
    episode = Episode(
        episode_id, tuple(speakers), tuple(turns), total / SAMPLE_RATE, audio_path, media_path
    )
    write_rttm(episode, episode.rttm_path)
    return episode


def _check_episode(
    speakers: Sequence[str], n_turns: int, gap: tuple[float, float], overlap_prob: float
) -> None:
    """ValueError when :func:`make_episode` cannot make the episode asked for."""
    unknown = [s for s in speakers if s not in VOICES]
    if unknown:
        raise ValueError(f"unknown voices {unknown}; known: {', '.join(VOICES)}")
    if len(set(speakers)) < 2 or len(set(speakers)) != len(speakers):
        raise ValueError(f"an episode needs two or more distinct speakers, got {speakers}")
    if n_turns < len(speakers):
        raise ValueError(f"{n_turns} turns cannot give each of {len(speakers)} speakers a turn")
    if not 0.0 <= gap[0] <= gap[1]:
        raise ValueError(f"gap must be (low, high) with 0 <= low <= high, got {gap}")
    if not 0.0 <= overlap_prob <= 1.0:
        raise ValueError(f"overlap_prob must be within [0, 1], got {overlap_prob}")


def _place_turns(
    who: list[str],
    sizes: list[int],
    sentences: Iterator[str],
    rng: random.Random,
    gap: tuple[float, float],
    overlap_prob: float,
    cache_dir: str | Path | None,
) -> tuple[list[tuple[int, FloatArray]], list[TruthTurn], int]:
    """Each turn's speech and where it starts (in samples), its truth, and where the talk ends."""
    placed: list[tuple[int, FloatArray]] = []
    turns: list[TruthTurn] = []
    cursor = round(rng.uniform(*EDGE_SILENCE_S) * SAMPLE_RATE)  # where the talk so far ends
    for speaker, size in zip(who, sizes, strict=True):
        texts = [next(sentences) for _ in range(size)]
        audio = _turn_audio(speaker, texts, rng, cache_dir)
        if turns and rng.random() < overlap_prob:
            prev = placed[-1]
            overlap = min(rng.uniform(0.3, 1.5) * SAMPLE_RATE, len(prev[1]) / 2, len(audio) / 2)
            start = cursor - round(overlap)
        else:
            start = cursor if not turns else cursor + round(rng.uniform(*gap) * SAMPLE_RATE)
        placed.append((start, audio))
        cursor = max(cursor, start + len(audio))
        turns.append(
            TruthTurn(
                start / SAMPLE_RATE, (start + len(audio)) / SAMPLE_RATE, speaker, " ".join(texts)
            )
        )
    return placed, turns, cursor


def _turn_audio(
    speaker: str, texts: list[str], rng: random.Random, cache_dir: str | Path | None
) -> FloatArray:
    """One turn: its sentences spoken by ``speaker`` with a short random pause between them."""
    parts: list[FloatArray] = []
    for i, text in enumerate(texts):
        if i:
            pause = rng.uniform(*SENTENCE_PAUSE_S)
            parts.append(np.zeros(round(pause * SAMPLE_RATE), np.float32))
        parts.append(synthesize(speaker, text, cache_dir))
    return np.concatenate(parts)


def mix_turns(placed: list[tuple[int, FloatArray]], total: int, seed: int) -> FloatArray:
    """The turns over a faint noise floor (recordings are never digitally silent), clipped."""
    noise = np.random.default_rng(seed).standard_normal(total) * 10 ** (NOISE_FLOOR_DBFS / 20)
    mix = noise.astype(np.float32)
    for start, audio in placed:
        mix[start : start + len(audio)] += audio
    np.clip(mix, -1.0, 1.0, out=mix)
    return mix


def write_rttm(episode: Episode, path: str | Path) -> Path:
    """Write the ground truth as standard RTTM (one ``SPEAKER`` line per turn)."""
    path = Path(path)
    lines = [
        f"SPEAKER {episode.episode_id} 1 {t.start:.3f} {t.duration:.3f} <NA> <NA> {t.speaker} "
        "<NA> <NA>\n"
        for t in episode.turns
    ]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _build_corpus(
    out_dir: str | Path,
    casts: Sequence[tuple[str, ...]],
    turns_per_episode: int,
    seed: int,
    make_video: bool,
    overlap_prob: float,
    cache_dir: str | Path | None,
) -> Corpus:
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    episodes = tuple(
        make_episode(
            f"ep{i + 1:02d}",
            cast,
            turns_per_episode,
            seed * 1009 + i + 1,
            root,
            overlap_prob=overlap_prob,
            make_video=make_video,
            cache_dir=cache_dir,
        )
        for i, cast in enumerate(casts)
    )
    meta = {"turns_per_episode": turns_per_episode, "overlap_prob": overlap_prob}
    corpus = Corpus(root, episodes, seed, meta)
    corpus.save()
    return corpus


def _casts(
    n_episodes: int, sizes: tuple[int, int], voices: Sequence[str], rng: random.Random
) -> list[tuple[str, ...]]:
    """Who is in each episode: the fewest voices that still let each appear twice or more."""
    ks = [rng.randint(*sizes) for _ in range(n_episodes)]
    n_used = min(len(voices), max(max(ks), sum(ks) // 2))
    used = list(voices[:n_used])
    count = dict.fromkeys(used, 0)
    casts: list[tuple[str, ...]] = []
    for k in ks:
        ranked = sorted(used, key=lambda v: (count[v], rng.random()))
        cast = tuple(ranked[:k])
        for voice in cast:
            count[voice] += 1
        casts.append(cast)
    return casts


def make_corpus(
    out_dir: str | Path,
    n_episodes: int = 6,
    speakers_per_episode: tuple[int, int] = (2, 3),
    turns_per_episode: int = 12,
    seed: int = 0,
    voices: Sequence[str] | None = None,
    make_video: bool = True,
    overlap_prob: float = 0.0,
    cache_dir: str | Path | None = None,
) -> Corpus:
    """Make ``n_episodes`` conversations under ``out_dir`` and write ``truth.json``.

    Each episode has between ``speakers_per_episode[0]`` and ``[1]`` speakers
    (inclusive) drawn from ``voices`` (default: all of :data:`VOICES`); casts
    are balanced so that every speaker used appears in two or more episodes
    whenever ``n_episodes`` allows it. The same arguments give the same corpus.
    """
    pool = list(voices) if voices is not None else list(VOICES)
    low, high = speakers_per_episode
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if not 2 <= low <= high:
        raise ValueError(f"speakers_per_episode must be (low, high), 2 <= low <= high: {low, high}")
    if len(set(pool)) != len(pool) or len(pool) < high:
        raise ValueError(f"need {high} or more distinct voices, got {pool}")
    casts = _casts(n_episodes, (low, high), pool, random.Random(seed))
    return _build_corpus(
        out_dir, casts, turns_per_episode, seed, make_video, overlap_prob, cache_dir
    )


DEMO_CASTS: tuple[tuple[str, ...], ...] = (
    ("rms", "slt"),
    ("rms", "awb", "kal"),
    ("slt", "ked"),
    ("ked", "rms", "awb"),
)
DEMO_TURNS = 11


def demo_corpus(
    out_dir: str | Path, make_video: bool = True, cache_dir: str | Path | None = None
) -> Corpus:
    """The small corpus of ``convoice demo``: four episodes of about a minute each.

    ``rms`` talks in three episodes, ``slt``, ``awb`` and ``ked`` in two, ``kal`` in one.
    """
    return _build_corpus(out_dir, DEMO_CASTS, DEMO_TURNS, 7, make_video, 0.0, cache_dir)
