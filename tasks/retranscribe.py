"""Round two's I/O: the clips of one recording from the store, Whisper on them, rows back.

A recording's candidate clips are read from their FLAC files (not the whole
recording), put end to end 10 ms apart, and transcribed in the language each
clip already has, with the channel's vocabulary; the revised machine rows are
upserted in one commit per recording, so a killed run resumes where it was
(an attempt is recorded on the clip, and the same attempt is not made twice).
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from convoice.config import Settings
from convoice.engines import loaders
from convoice.models import asr
from convoice.models.language import LanguageGuess
from convoice.models.round_two import Revision, revise
from convoice.models.vocabulary import learn
from convoice.records import SAMPLE_RATE, Learned, Region, Transcript
from convoice.storage import Store, vocabulary
from convoice.storage.labels import now_iso
from convoice.storage.schema import CLIP_SCHEMA, conform
from convoice.tasks import stages

GUARD_S = 0.01


def clip_samples(
    store: Store, rows: Sequence[Mapping[str, Any]]
) -> tuple[stages.FloatArray, list[Region]]:
    """The clips' audio end to end (10 ms apart) and where each one is in it."""
    import soundfile

    pieces: list[stages.FloatArray] = []
    regions: list[Region] = []
    cursor = 0
    guard = np.zeros(int(GUARD_S * SAMPLE_RATE), dtype=np.float32)
    for row in rows:
        data, rate = soundfile.read(io.BytesIO(store.read_audio(row["audio_uri"])), dtype="float32")
        if rate != SAMPLE_RATE or data.ndim != 1:
            raise ValueError(f"clip {row['clip_id']}: expected 16 kHz mono FLAC, got {rate} Hz")
        start = cursor / SAMPLE_RATE
        regions.append(Region(start, start + len(data) / SAMPLE_RATE))
        pieces += [data, guard]
        cursor += len(data) + len(guard)
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return samples.astype(np.float32, copy=False), regions


def whisper(settings: Settings, model: str) -> tuple[str, Any]:
    """Round two's Whisper (``model`` over ``[asr] model``); ModelUnavailable if it cannot load."""
    source = model or settings.asr.model
    found = loaders.whisper_model(source, settings.asr.compute_type, settings.asr.cpu_threads)
    return loaders.whisper_name(source), found


@functools.cache
def rare_word(source: str = "") -> Callable[[str], bool]:
    """Whether Whisper (``[asr] model``-style ``source``) spells `` word`` with two or more tokens.

    Names and terms it does not know are split into pieces ("Siobhan": 3,
    "Tlaxcala": 4); words it knows are one token ("small", "festival").
    """
    from tokenizers import Tokenizer

    shipped = source in ("", "base", "small")
    folder = loaders.default_whisper_dir(source or "base") if shipped else Path(source)
    path = folder / "tokenizer.json"
    if not path.is_file():  # a hub name or a folder without a tokenizer: keep every word
        return lambda word: True
    tokenizer = Tokenizer.from_file(str(path))
    return lambda word: len(tokenizer.encode(" " + word, add_special_tokens=False).ids) >= 2


@task(name="retranscribe-recording", cache_policy=NO_CACHE)
def learn_from_store(store: Store, keep: Callable[[str], bool] | None = None) -> Learned:
    """Learn from the corrections not learned from yet; write what changed (one commit).

    ``keep``: which missed words are worth learning (see :func:`learn`).
    """
    found = learn(
        vocabulary.read_terms(store), vocabulary.corrections(store), at=now_iso(), keep=keep
    )
    vocabulary.write_terms(store, found.changed)
    return found


def retranscribe_recording(
    store: Store,
    rows: list[dict[str, Any]],
    settings: Settings,
    model: str,
    words: list[str],
    key: str,
) -> list[Revision]:
    """Transcribe ``rows`` (clips of one recording) again with ``words``; write what is better."""
    name, found = whisper(settings, model)
    samples, regions = clip_samples(store, rows)
    guesses = [
        LanguageGuess(r["language"] or "en", float(r["language_probability"] or 1.0), "kept")
        for r in rows
    ]
    options = dataclasses.replace(
        stages.with_vocabulary(stages.asr_options(settings), words, settings.asr.vocabulary_mode),
        beam_size=settings.asr.round_two_beam_size,
    )
    new: list[Transcript | None] = asr.transcribe_clips(
        found, samples, regions, options, lambda _: (name, found), languages=guesses
    )
    revisions = [revise(r, t, key, settings.routing, words) for r, t in zip(rows, new, strict=True)]
    write_revisions(store, rows[0]["recording_id"], revisions)
    return revisions


def write_revisions(store: Store, recording_id: str, revisions: Sequence[Revision]) -> None:
    """Upsert the revised machine rows of one recording (one commit)."""
    if not revisions:
        return
    wanted = {r.clip_id: r for r in revisions}
    table = store.tables.read("clips", CLIP_SCHEMA, where=("recording_id", recording_id))
    rows = [row for row in table.to_pylist() if row["clip_id"] in wanted]
    for row in rows:
        row.update(wanted[row["clip_id"]].fields)
    data = conform(pa.Table.from_pylist(rows, schema=CLIP_SCHEMA), CLIP_SCHEMA)
    store.tables.upsert("clips", data, "clip_id")
