"""Rows of the store's tables as records: one conversion each way, beside the schemas.

What the tables hold is read back as typed records instead of dicts keyed by column
name: a clip row is a :class:`StoredClip` (a :class:`ReleaseClip` in a release), a label
row a :class:`StoredLabel`, a recording row a :class:`~convoice.records.Recording`, a
skipped row a :class:`~convoice.records.SkippedItem`. ``from_row`` tolerates a table
read with a subset of the columns (``select``) or written before a column existed: a
missing column reads as the field's default. Statuses and label sources read as their
enums, whose values are the stored strings, so ``to_row`` writes back exactly what was
read.

The record types themselves live in :mod:`convoice.records.stored`.

Code that works column-wise (releases, pulls, reports, benchmarks) keeps
using the ``pa.Table``; these are for code that walks rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from convoice.records import (
    Recording,
    ReleaseClip,
    ReleaseSpeaker,
    SkippedItem,
    StoredClip,
    StoredLabel,
)
from convoice.records.stored import known_fields
from convoice.storage.schema import CLIP_SCHEMA, LABEL_SCHEMA

__all__ = [
    "clip_records",
    "clips_table",
    "label_records",
    "labels_table",
    "recording_records",
    "release_clip_records",
    "release_speaker_records",
    "skipped_records",
]


def clip_records(table: pa.Table) -> list[StoredClip]:
    """The rows of a clips table (any subset of its columns) as records."""
    return [StoredClip.from_row(row) for row in table.to_pylist()]


def release_clip_records(table: pa.Table) -> list[ReleaseClip]:
    """The rows of a release's ``clips.parquet`` (any subset of its columns) as records."""
    return [ReleaseClip.from_row(row) for row in table.to_pylist()]


def release_speaker_records(table: pa.Table) -> list[ReleaseSpeaker]:
    """The rows of a release's ``speakers.parquet`` as records."""
    return [ReleaseSpeaker.from_row(row) for row in table.to_pylist()]


def clips_table(clips: Iterable[StoredClip]) -> pa.Table:
    """Clip records back to a table of :data:`CLIP_SCHEMA`."""
    return pa.Table.from_pylist([c.to_row() for c in clips], schema=CLIP_SCHEMA)


def label_records(table: pa.Table) -> list[StoredLabel]:
    """The rows of a labels table as records, in table order."""
    return [StoredLabel.from_row(row) for row in table.to_pylist()]


def labels_table(labels: Iterable[StoredLabel]) -> pa.Table:
    return pa.Table.from_pylist([label.to_row() for label in labels], schema=LABEL_SCHEMA)


def recording_records(table: pa.Table) -> list[Recording]:
    """The rows of a recordings table as :class:`Recording` records."""
    return [Recording(**known_fields(Recording, row)) for row in table.to_pylist()]


def skipped_records(table: pa.Table) -> list[SkippedItem]:
    """The rows of a skipped table as :class:`SkippedItem` records."""
    return [SkippedItem(**known_fields(SkippedItem, row)) for row in table.to_pylist()]
