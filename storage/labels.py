"""People's labels: validation, and their application over the machine's clips.

Machine passes only ever write the ``clips`` table; people's labels go to the
append-only ``labels`` table. When clips are materialised, the latest human
label per ``(clip_id, field)`` wins over the machine value, so re-running the
machine can never undo a person's work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from convoice.records import ClipStatus, LabelSource, LabelStatus, StoredLabel
from convoice.storage.schema import LABEL_FIELDS, LABEL_SCHEMA, WORD

REQUIRED = ("clip_id", "field", "value", "labelled_by")
HUMAN = str(LabelSource.HUMAN)


def now_iso() -> str:
    """The current UTC time as ISO 8601 (what every ``*_at`` column holds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def utc_iso(value: str) -> str:
    """An ISO 8601 time normalised to UTC milliseconds, so that labels sort by time as text."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"labelled_at {value!r} is not an ISO 8601 time") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def label_row(label: StoredLabel | Mapping[str, Any]) -> dict[str, str]:
    """One validated ``labels`` row (from a record or a row); ValueError names what is wrong."""
    row = label.to_row() if isinstance(label, StoredLabel) else label
    missing = [key for key in REQUIRED if key != "value" and not row.get(key)]
    missing += [] if "value" in row else ["value"]
    if missing:
        raise ValueError(f"label {dict(row)!r} lacks {', '.join(missing)}")
    unknown = set(row) - set(LABEL_SCHEMA.names)
    if unknown:
        raise ValueError(f"label has unknown keys {sorted(unknown)}; known: {LABEL_SCHEMA.names}")
    field = str(row["field"])
    if field not in LABEL_FIELDS:
        raise ValueError(f"label field {field!r} is not one of {', '.join(LABEL_FIELDS)}")
    value = str(row.get("value") or "")
    if field == "status" and value not in {s.value for s in ClipStatus}:
        raise ValueError(f"status label {value!r} is not one of {[s.value for s in ClipStatus]}")
    if field == "speaker_id" and not value:
        raise ValueError("a speaker_id label needs a speaker id")
    return {
        "clip_id": str(row["clip_id"]),
        "field": field,
        "value": value,
        "labelled_by": str(row["labelled_by"]),
        "labelled_at": utc_iso(str(row["labelled_at"])) if row.get("labelled_at") else now_iso(),
        "task_id": str(row.get("task_id") or ""),
    }


def labels_to_table(rows: Iterable[StoredLabel | Mapping[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([label_row(row) for row in rows], schema=LABEL_SCHEMA)


def latest_labels(labels: pa.Table) -> pa.Table:
    """The latest label per ``(clip_id, field)``: by ``labelled_at``, then by order written."""
    indexed = labels.append_column("_order", pa.array(range(labels.num_rows), pa.int64()))
    ordered = indexed.sort_by([("labelled_at", "ascending"), ("_order", "ascending")])
    latest = ordered.group_by(["clip_id", "field"], use_threads=False).aggregate(
        [("value", "last"), ("labelled_by", "last"), ("labelled_at", "last")]
    )
    return latest.rename_columns(
        {
            "value_last": "value",
            "labelled_by_last": "labelled_by",
            "labelled_at_last": "labelled_at",
        }
    )


def _for_field(latest: pa.Table, field: str, clip_ids: pa.Array) -> dict[str, pa.Array]:
    """The ``field`` labels aligned to ``clip_ids`` (null where a clip has none)."""
    rows = latest.filter(pc.equal(latest["field"], field))
    positions = pc.index_in(clip_ids, value_set=rows["clip_id"].combine_chunks())
    return {
        name: rows[name].combine_chunks().take(positions)
        for name in ("value", "labelled_by", "labelled_at")
    }


def _set(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(name), values)


def _override(table: pa.Table, name: str, mask: pa.Array, value: Any) -> pa.Table:
    """Set column ``name`` to ``value`` (a scalar or an array) where ``mask`` is true."""
    column = table[name].combine_chunks()
    if not isinstance(value, pa.Array):
        value = pa.scalar(value, column.type)
    return _set(table, name, pc.if_else(mask, value, column))


def _clear_words(table: pa.Table, mask: pa.Array) -> pa.Table:
    """Empty the word timings where a person rewrote the text (they no longer match)."""
    words = table["words"].combine_chunks()
    offsets = pa.array(np.zeros(len(words) + 1, dtype=np.int32))
    empty = pa.ListArray.from_arrays(offsets, pa.array([], WORD))
    return _set(table, "words", pc.if_else(mask, empty, words))


def with_label_kinds(clips: pa.Table) -> pa.Table:
    """Rows written before per-kind statuses get them from ``status`` (accepted, review,
    rejected alike for both kinds), and their confidences as raw scores."""
    if clips.num_rows == 0 or "speaker_status" not in clips.column_names:
        return clips
    status = clips["status"].combine_chunks()
    for kind in ("speaker_status", "transcript_status"):
        clips = _set(clips, kind, pc.coalesce(clips[kind].combine_chunks(), status))
    for raw, confidence in (
        ("speaker_score_raw", "speaker_confidence"),
        ("transcript_score_raw", "transcript_confidence"),
    ):
        merged = pc.coalesce(clips[raw].combine_chunks(), clips[confidence].combine_chunks())
        clips = _set(clips, raw, merged)
    return _set(clips, "calibration_version", pc.fill_null(clips["calibration_version"], ""))


def _kind_statuses(clips: pa.Table, field: str, mask: pa.Array, value: pa.Array) -> pa.Table:
    """A person's label of ``field`` sets the status of the label kinds it decides.

    A speaker or a text is LABELLED for its kind; a clip a person accepted has
    both kinds LABELLED; a rejected clip has both REJECTED.
    """
    labelled, rejected = str(LabelStatus.LABELLED), str(LabelStatus.REJECTED)
    if field == "speaker_id":
        return _override(clips, "speaker_status", mask, labelled)
    if field == "text":
        return _override(clips, "transcript_status", mask, labelled)
    for status, kind_value in (
        (str(ClipStatus.ACCEPTED), labelled),
        (str(ClipStatus.REJECTED), rejected),
    ):
        chosen = pc.and_(mask, pc.fill_null(pc.equal(value, status), False))
        for kind in ("speaker_status", "transcript_status"):
            clips = _override(clips, kind, chosen, kind_value)
    return clips


def apply_labels(clips: pa.Table, labels: pa.Table) -> pa.Table:
    """``clips`` with the latest human label of every labelled field applied."""
    clips = with_label_kinds(clips)
    if labels.num_rows == 0 or clips.num_rows == 0:
        return clips
    latest = latest_labels(labels)
    clip_ids = clips["clip_id"].combine_chunks()
    by = clips["labelled_by"].combine_chunks()
    at = clips["labelled_at"].combine_chunks()
    for field in LABEL_FIELDS:
        label = _for_field(latest, field, clip_ids)
        mask = pc.fill_null(pc.is_valid(label["value"]), False)
        if not pc.any(mask).as_py():
            continue
        if field == "text":
            changed = pc.fill_null(
                pc.not_equal(label["value"], clips["text"].combine_chunks()), True
            )
            clips = _clear_words(clips, pc.and_(mask, changed))
            clips = _override(clips, "transcript_label_source", mask, HUMAN)
            clips = _override(clips, "transcript_confidence", mask, 1.0)
        elif field == "speaker_id":
            clips = _override(clips, "speaker_label_source", mask, HUMAN)
            clips = _override(clips, "speaker_confidence", mask, 1.0)
        clips = _override(clips, field, mask, label["value"])
        if "speaker_status" in clips.column_names:
            clips = _kind_statuses(clips, field, mask, label["value"])
        newer = pc.and_(mask, pc.fill_null(pc.greater(label["labelled_at"], at), True))
        by = pc.if_else(newer, label["labelled_by"], by)
        at = pc.if_else(newer, label["labelled_at"], at)
    clips = _set(clips, "labelled_by", by)
    return _set(clips, "labelled_at", at)
