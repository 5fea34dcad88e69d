"""Rows read back as records: one conversion each way, and what is written back is what was read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from test_storage import ingest, make_recording

from convoice.records import ClipStatus, LabelSource, LabelStatus, ReleaseClip, ReleaseSplit
from convoice.storage import Store
from convoice.storage.releases import read_release_table
from convoice.storage.rows import (
    clip_records,
    clips_table,
    label_records,
    labels_table,
    recording_records,
    release_clip_records,
    release_speaker_records,
)


def test_clip_rows_round_trip_unchanged(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    rng = np.random.default_rng(7)
    ingest(store, "rec_a", ["spk_a", "spk_b"], rng)
    table = store.clips()
    clips = clip_records(table)
    assert [c.clip_id for c in clips] == table["clip_id"].to_pylist()
    assert all(isinstance(c.status, ClipStatus) for c in clips)
    assert all(c.speaker_label_source is LabelSource.MACHINE for c in clips)
    assert all(isinstance(c.speaker_status, LabelStatus) for c in clips)
    assert clips_table(clips).equals(table)


def test_a_selection_of_columns_reads_and_labels_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    ingest(store, "rec_a", ["spk_a"], np.random.default_rng(7))
    some = clip_records(store.clips().select(["clip_id", "text"]))
    assert some and all(c.recording_id == "" and c.text for c in some)
    store.add_labels(
        [{"clip_id": some[0].clip_id, "field": "text", "value": "x", "labelled_by": "ann"}]
    )
    labels = label_records(store.labels())
    assert [(r.clip_id, r.field, r.value) for r in labels] == [(some[0].clip_id, "text", "x")]
    assert labels_table(labels).equals(store.labels())
    assert recording_records(store.recordings()) == [make_recording("rec_a")]


def test_release_rows_read_as_release_records(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    ingest(store, "rec_a", ["spk_a", "spk_b"], np.random.default_rng(7))
    person = store.clips()["clip_id"][0].as_py()
    store.add_labels([{"clip_id": person, "field": "speaker_id", "value": "spk_b",
                       "labelled_by": "ann"}])  # fmt: skip
    release = store.release()
    table = read_release_table(store.location, release.version, "clips")
    clips = release_clip_records(table)
    splits = {c.clip_id: c.split for c in clips}
    assert splits[person] is ReleaseSplit.HELDOUT
    assert {s for c, s in splits.items() if c != person} == {ReleaseSplit.TRAIN}
    assert all(c.audio_path == f"audio/{c.recording_id}/{c.clip_id}.flac" for c in clips)
    assert pa.Table.from_pylist([c.to_row() for c in clips], schema=table.schema).equals(table)
    speakers = release_speaker_records(read_release_table(store.location, release.version,
                                                          "speakers"))  # fmt: skip
    assert {s.speaker_id for s in speakers} == {c.speaker_id for c in clips}
    assert all(s.label_source in LabelSource and len(s.centroid) == 256 for s in speakers)
    old = ReleaseClip.from_row({"clip_id": "c", "status": "accepted"})  # before `split` existed
    assert old.split is None and old.status is ClipStatus.ACCEPTED
