"""The vocabulary benchmark's corpus, and an annotator who corrects transcripts in Label Studio.

:func:`make_channel` synthesises one channel: episodes whose two speakers keep
naming the same uncommon people and places (:data:`PEOPLE`, :data:`PLACES`, the
kind Whisper base misspells), between ordinary sentences. Voices come from one
half of the benchmark split (:mod:`convoice.synth.inventory`): English voices of
that half only. :func:`annotate` plays the annotator: through Label Studio's
API it submits, for each pushed task of the given recordings, the reference
transcript of the clip (the way the labeling page posts an edited prediction).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convoice.models.evaluation import overlap
from convoice.records import SAMPLE_RATE, StoredClip
from convoice.review.client import ReviewClient
from convoice.synth import inventory as voices
from convoice.synth.media_files import write_media
from convoice.synth.sentences import SENTENCES
from convoice.synth.speech import synthesize

PEOPLE = ("Siobhan", "Przemyslaw", "Kwabena", "Thandiwe", "Aoife", "Nakamura", "Osei")
PLACES = ("Tlaxcala", "Ouarzazate", "Xochimilco", "Llanfair", "Eyjafjallajokull")
RECURRING = PEOPLE + PLACES

TEMPLATES = (
    "{p} flew to {l} on Monday morning.",
    "Yesterday {p} told me the market in {l} was busy.",
    "We asked {p} and {q} about the festival.",
    "The bus from {l} to {m} was late again.",
    "{p} says the road to {l} is closed this week.",
    "Next week {p} will talk about the river near {l}.",
    "I think {p} still lives in {l} with her sister.",
    "{p} and {q} found a small cafe in {l}.",
)
VOICE_CHOICE = {"report": ("piper_joe", "espeak_gb_m", "espeak_gb_f"),
                "tune": ("rms", "slt", "awb", "kal")}  # fmt: skip
GAP_S = 0.7


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str
    text: str


@dataclass(frozen=True)
class ChannelEpisode:
    episode_id: str
    path: Path
    duration: float
    turns: tuple[Turn, ...]


def channel_voices(split: str) -> list[str]:
    """The English TTS voices of ``split`` that are installed."""
    half = {i.name: i for i in voices.identities(split)}
    found = [v for v in VOICE_CHOICE[split] if v in half and voices.available(half[v])]
    if len(found) < 2:
        raise voices.VoiceUnavailable(f"fewer than two voices of the {split} half are installed")
    return found


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(SENTENCES)
    p, q = rng.sample(PEOPLE[:5], 2)
    l, m = rng.sample(PLACES, 2)  # noqa: E741
    return rng.choice(TEMPLATES).format(p=p, q=q, l=l, m=m)


def make_channel(
    out: Path, n_episodes: int, turns: int, split: str, seed: int = 15, cache: Path | None = None
) -> list[ChannelEpisode]:
    """``n_episodes`` WAV episodes in ``out`` (one folder: one channel), truth in ``truth.json``."""
    rng = random.Random(seed)
    names = channel_voices(split)
    episodes = []
    for e in range(n_episodes):
        cast = rng.sample(names, 2)
        pieces: list[Any] = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)]
        placed: list[Turn] = []
        cursor = 0.5
        for k in range(turns):
            text = _sentence(rng)
            audio = synthesize(cast[k % 2], text, cache)
            placed.append(Turn(cursor, cursor + len(audio) / SAMPLE_RATE, cast[k % 2], text))
            pieces += [audio, np.zeros(int(GAP_S * SAMPLE_RATE), np.float32)]
            cursor += len(audio) / SAMPLE_RATE + GAP_S
        path = write_media(out / f"episode{e + 1:02d}.wav", np.concatenate(pieces))
        episodes.append(ChannelEpisode(f"episode{e + 1:02d}", path, cursor, tuple(placed)))
    truth = {e.episode_id: [t.__dict__ for t in e.turns] for e in episodes}
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    return episodes


def clip_reference(clip: StoredClip, turns: Sequence[Turn]) -> str | None:
    """What an annotator hears in a clip: the turn it covers most of (None: only a piece of one)."""
    best = max(turns, key=lambda t: overlap(clip.start, clip.end, t.start, t.end))
    share = overlap(clip.start, clip.end, best.start, best.end) / (best.end - best.start)
    return best.text if share >= 0.8 else None


def _result(task: Mapping[str, Any], text: str) -> list[dict[str, Any]]:
    """The task's preloaded prediction with its transcript edited, and "accept"."""
    result = []
    for item in task["predictions"][0]["result"]:
        item = {**item, "origin": "prediction"}
        if item["from_name"] == "transcript":
            item = {**item, "value": {"text": [text]}, "origin": "prediction-changed"}
        result.append(item)
    decision = {"id": "decision-1", "from_name": "decision", "to_name": "audio", "type": "choices"}
    result.append({**decision, "value": {"choices": ["accept"]}, "origin": "manual"})
    return result


def annotate(client: ReviewClient, project_id: int, texts: Mapping[str, str]) -> int:
    """Submit ``texts`` (clip id -> what the annotator typed) for the project's pushed tasks."""
    done = 0
    pager: Any = client.sdk.tasks.list(project=project_id, fields="all", page_size=500)
    for task in pager:
        data = task.dict()
        clip_id = str((data.get("data") or {}).get("clip_id"))
        if clip_id not in texts or data.get("annotations") or not data.get("predictions"):
            continue
        client.call(
            f"annotate task {data['id']}",
            client.sdk.annotations.create,
            id=data["id"],
            result=_result(data, texts[clip_id]),
            lead_time=12.0,
            parent_prediction=data["predictions"][0]["id"],
            project=project_id,
        )
        done += 1
    return done
