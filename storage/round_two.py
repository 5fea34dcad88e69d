"""Round two's clips in the store: their audio end to end, their revised rows written back.

A recording's candidate clips are read from their FLAC files (not the whole
recording) and put end to end 10 ms apart; the revised machine rows are
upserted in one commit per recording, so a killed run resumes where it was.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from convoice.models.round_two import Revision
from convoice.records import SAMPLE_RATE, FloatArray, Region, StoredClip
from convoice.storage.rows import clip_records, clips_table
from convoice.storage.schema import CLIP_SCHEMA, conform
from convoice.storage.store import Store

GUARD_S = 0.01


def clip_samples(store: Store, rows: Sequence[StoredClip]) -> tuple[FloatArray, list[Region]]:
    """The clips' audio end to end (10 ms apart) and where each one is in it."""
    import soundfile

    pieces: list[FloatArray] = []
    regions: list[Region] = []
    cursor = 0
    guard = np.zeros(int(GUARD_S * SAMPLE_RATE), dtype=np.float32)
    for row in rows:
        data, rate = soundfile.read(io.BytesIO(store.read_audio(row.audio_uri)), dtype="float32")
        if rate != SAMPLE_RATE or data.ndim != 1:
            raise ValueError(f"clip {row.clip_id}: expected 16 kHz mono FLAC, got {rate} Hz")
        start = cursor / SAMPLE_RATE
        regions.append(Region(start, start + len(data) / SAMPLE_RATE))
        pieces += [data, guard]
        cursor += len(data) + len(guard)
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return samples.astype(np.float32, copy=False), regions


def write_revisions(store: Store, recording_id: str, revisions: Sequence[Revision]) -> None:
    """Upsert the revised machine rows of one recording (one commit)."""
    if not revisions:
        return
    wanted = {r.clip_id: r for r in revisions}
    table = store.tables.read("clips", CLIP_SCHEMA, where=("recording_id", recording_id))
    rows = [
        StoredClip.from_row({**row.to_row(), **wanted[row.clip_id].fields})
        for row in clip_records(table)
        if row.clip_id in wanted
    ]
    store.tables.upsert("clips", conform(clips_table(rows), CLIP_SCHEMA), "clip_id")
