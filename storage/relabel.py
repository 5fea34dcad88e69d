"""Writing a re-labelling: the machine fields of every clip, and the rebuilt registry.

Only the machine's columns of the ``clips`` table change (embedding, speaker,
confidence, status, reasons, measurements, models); people's labels live in
the ``labels`` table and are applied over them as before, so a person's label
is never overwritten. The registry is replaced in one commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from convoice.models.routing import kind_status
from convoice.records import (
    SPEAKER_REASONS,
    ClipLabel,
    Contribution,
    FloatArray,
    Speaker,
)
from convoice.storage.review_state import save_contributions, save_speakers
from convoice.storage.rows import clip_records, clips_table

if TYPE_CHECKING:
    from convoice.storage.store import Store


def relabelled_rows(
    clips: pa.Table,
    labels: Mapping[str, ClipLabel],
    embeddings: Mapping[str, FloatArray],
    encoder_name: str,
    column: str = "embedding",
) -> pa.Table:
    """``clips`` (machine rows) with the new machine labels and embeddings put in.

    ``column``: where the embeddings go, ``embedding`` (resemblyzer's) or
    ``speaker_embedding`` (CAM++'s); ``models[column]`` names ``encoder_name``.
    """
    rows = []
    for row in clip_records(clips):
        label = labels[row.clip_id]
        extra = json.loads(row.extra or "{}")
        extra.update(
            own_similarity=label.own_similarity,
            other_similarity=label.other_similarity,
            identity_similarity=label.identity_similarity,
            absorbed=label.absorbed,
        )
        models = {**row.model_names, column: encoder_name}
        new = {
            column: np.asarray(embeddings[row.clip_id], dtype=np.float32).tolist(),
            "speaker_id": label.speaker_id,
            "speaker_confidence": label.speaker_confidence,
            "status": label.status,
            "review_reasons": tuple(label.review_reasons),
            "speaker_status": kind_status(tuple(label.review_reasons), SPEAKER_REASONS),
            "speaker_score_raw": label.speaker_score_raw,
            "calibration_version": label.calibration or row.calibration_version,
            "extra": json.dumps(extra, sort_keys=True),
            "models": json.dumps(models, sort_keys=True),
        }
        rows.append(replace(row, **new))
    return clips_table(rows)


def write_relabel(
    store: Store,
    rows: pa.Table,
    speakers: Mapping[str, Speaker],
    contributions: Sequence[Contribution] = (),
) -> None:
    """Upsert the re-labelled clip rows, the review contributions, then replace the registry.

    ``contributions`` are what people's decisions add to the machine's sums
    given the new machine rows (an empty one clears a stale one), so that a
    later review pull, which keeps the registry equal to machine sums plus
    contributions, finds nothing to correct.
    """
    if rows.num_rows:
        store.tables.upsert("clips", rows, "clip_id")
    save_contributions(store, list(contributions))
    old = {s.speaker_id: s for s in store.speakers()}
    removed = [s for sid, s in old.items() if sid not in speakers]
    save_speakers(store, list(speakers.values()), removed)
