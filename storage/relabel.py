"""Writing a re-labelling: the machine fields of every clip, and the rebuilt registry.

Only the machine's columns of the ``clips`` table change (embedding, speaker,
confidence, status, reasons, measurements, models); people's labels live in
the ``labels`` table and are applied over them as before, so a person's label
is never overwritten. The registry is replaced in one commit.

Consolidation's changes (``speaker_changes``): the replay follows every merge
(an id merged away is never written again, so merge rows keep applying: to
people's labels and to older releases' ids) and carries every split into the
ids it writes (:func:`carried_splits`). Split rows name the machine id on the
clip rows they move, which the re-label rewrites, so before the rows change a
``relabel`` row marks the split rows so far as history (readers stop applying
them), and after the registry a ``relabel-done`` row with the same run id
closes it. In that order a re-label killed half-way can only leave a split
unapplied (the rows not yet rewritten read as before it), never move clips a
split did not mean; and while the mark is open consolidation refuses (it
would redo such a split and overwrite the piece's registry entry with only
the piece's clips, dropping what a merge had added): the next re-label
carries the open mark's splits into the rows the killed one did not rewrite
(:func:`carried_splits`) and closes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from convoice.models.routing import kind_statuses
from convoice.records import (
    ClipLabel,
    Contribution,
    FloatArray,
    Speaker,
)
from convoice.storage import identity
from convoice.storage.labels import now_iso
from convoice.storage.review_state import save_contributions, save_speakers
from convoice.storage.rows import clip_records, clips_table
from convoice.storage.schema import CLIP_SCHEMA

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
            speaker_kind=label.speaker_kind,
        )
        models = {**row.model_names, column: encoder_name}
        speaker_status, transcript_status = kind_statuses(tuple(label.review_reasons))
        new = {
            column: np.asarray(embeddings[row.clip_id], dtype=np.float32).tolist(),
            "speaker_id": label.speaker_id,
            "speaker_confidence": label.speaker_confidence,
            "status": label.status,
            "review_reasons": tuple(label.review_reasons),
            "speaker_status": speaker_status,
            # two_voices is both kinds': a re-label that finds or clears it moves the transcript
            "transcript_status": transcript_status,
            "speaker_score_raw": label.speaker_score_raw,
            "calibration_version": label.calibration or row.calibration_version,
            "extra": json.dumps(extra, sort_keys=True),
            "models": json.dumps(models, sort_keys=True),
        }
        rows.append(replace(row, **new))
    return clips_table(rows)


def carried_splits(store: Store) -> dict[tuple[str, str], tuple[str, str]]:
    """(recording, recording speaker) -> (the id a split moved it off, the piece) of every split.

    A split since the latest re-labelling names the machine id and recording of
    the clip rows it moves; one carried by an earlier re-labelling is in the rows
    already (their id is its piece). Recording speakers come from diarization,
    which a re-label keeps, so they say which clips a split meant whatever ids
    the new encoder gives.
    """
    current = identity.machine_splits(store)
    pending = identity.open_splits(store)  # a killed re-label's: carried only if not rewritten
    carried = {
        (c.new_id, c.recording_id): c.old_id for c in identity.split_records(store, history=True)
    }
    if not current and not carried:
        return {}
    found = store.tables.distinct(
        "clips", CLIP_SCHEMA, ["recording_id", "recording_speaker", "speaker_id"]
    )
    present = set(
        zip(found["speaker_id"].to_pylist(), found["recording_id"].to_pylist(), strict=True)
    )
    for (machine, recording), piece in pending.items():  # rows still carry the id it split
        if (piece, recording) not in present:
            current.setdefault((machine, recording), piece)
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for recording, local, machine in zip(
        found["recording_id"].to_pylist(),
        found["recording_speaker"].to_pylist(),
        found["speaker_id"].to_pylist(),
        strict=True,
    ):
        if (machine, recording) in current:
            out[(recording, local)] = (machine, current[(machine, recording)])
        elif (machine, recording) in carried:  # its piece, in a recording the split moved
            out[(recording, local)] = (carried[(machine, recording)], machine)
    return out


def write_relabel(
    store: Store,
    rows: pa.Table,
    speakers: Mapping[str, Speaker],
    contributions: Sequence[Contribution] = (),
    encoder: str = "",
    at: str = "",
) -> None:
    """Mark the split rows as history, upsert the re-labelled clip rows, the review
    contributions, replace the registry, then close the mark and any a killed re-label
    left open (see the module docstring for the order).

    ``contributions`` are what people's decisions add to the machine's sums
    given the new machine rows (an empty one clears a stale one), so that a
    later review pull, which keeps the registry equal to machine sums plus
    contributions, finds nothing to correct.
    """
    at = at or now_iso()
    run_id = f"relabel {encoder} {at}"
    opened = [m.run_id for m in identity.open_relabels(store)]
    marked = bool(identity.split_records(store))  # nothing to mark when no split applies
    if marked:
        identity.record_relabel(store, encoder, at, run_id)
    if rows.num_rows:
        store.tables.upsert("clips", rows, "clip_id")
    save_contributions(store, list(contributions))
    old = {s.speaker_id: s for s in store.speakers()}
    removed = [s for sid, s in old.items() if sid not in speakers]
    save_speakers(store, list(speakers.values()), removed)
    identity.record_relabel_done(store, [*opened, *([run_id] if marked else [])], now_iso())
