"""Arrow schemas of the store's tables and converters from the records to rows.

Every table is flat: one column per field, nested only where the data is a
list (words, review reasons, vectors). Vectors are ``list<float32>``. Enums are
stored as their string values, provenance as JSON strings, times as ISO 8601
strings (the records carry them that way).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from convoice.records import (
    EMBEDDING_DIM,
    Clip,
    FloatArray,
    LabelSource,
    Provenance,
    Recording,
    SkippedItem,
    Speaker,
)

"""Length of the clip embeddings (resemblyzer) and of the speaker vectors."""

SPEAKER_BUCKETS = 64
"""Hash partitions of the ``speakers`` table (see :func:`speaker_bucket`)."""

LABEL_FIELDS = ("speaker_id", "text", "status")
"""The clip fields a person can label (rows of the ``labels`` table)."""

VECTOR = pa.list_(pa.float32())

WORD = pa.struct(
    [
        ("word", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("probability", pa.float32()),
    ]
)

CLIP_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("recording_id", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("duration", pa.float64()),
        ("speaker_id", pa.string()),
        ("recording_speaker", pa.string()),
        ("speaker_confidence", pa.float64()),
        ("overlap_nearby", pa.bool_()),
        ("text", pa.string()),
        ("language", pa.string()),
        ("language_probability", pa.float64()),
        ("words", pa.list_(WORD)),
        ("avg_logprob", pa.float64()),
        ("compression_ratio", pa.float64()),
        ("no_speech_prob", pa.float64()),
        ("transcript_confidence", pa.float64()),
        ("status", pa.string()),
        ("review_reasons", pa.list_(pa.string())),
        ("speaker_label_source", pa.string()),
        ("transcript_label_source", pa.string()),
        ("labelled_by", pa.string()),
        ("labelled_at", pa.string()),
        ("embedding", VECTOR),
        ("audio_uri", pa.string()),
        ("extra", pa.string()),  # JSON of Clip.extra (measurements), "{}" when none
        ("pipeline_version", pa.string()),
        ("models", pa.string()),  # JSON
        ("settings_hash", pa.string()),
        ("settings", pa.string()),  # JSON
        ("run_id", pa.string()),
        ("created_at", pa.string()),
        ("speaker_embedding", VECTOR),  # identity encoder's (models["speaker_embedding"]); null
        # Per label kind (LabelStatus), raw scores and the calibration that mapped them;
        # null in rows written before them (storage.labels.with_label_kinds derives them).
        ("speaker_status", pa.string()),
        ("transcript_status", pa.string()),
        ("speaker_score_raw", pa.float64()),
        ("transcript_score_raw", pa.float64()),
        ("calibration_version", pa.string()),
        # The clip's median F0 in Hz (models.pitch); null when unknown or in older rows.
        ("f0_hz", pa.float64()),
    ]
)

RECORDING_SCHEMA = pa.schema(
    [
        ("recording_id", pa.string()),
        ("url", pa.string()),
        ("source_url", pa.string()),
        ("title", pa.string()),
        ("uploader", pa.string()),
        ("uploader_url", pa.string()),
        ("upload_date", pa.string()),
        ("license", pa.string()),
        ("license_raw", pa.string()),
        ("license_origin", pa.string()),
        ("attribution", pa.string()),
        ("duration", pa.float64()),
        ("sample_rate", pa.int64()),
        ("audio_uri", pa.string()),
        ("run_id", pa.string()),
        ("ingested_at", pa.string()),
        ("source_audio", pa.string()),  # which audio track of the original media
    ]
)

SPEAKER_SCHEMA = pa.schema(
    [
        ("speaker_id", pa.string()),
        ("vector_sum", VECTOR),
        ("n_clips", pa.int64()),
        ("total_duration", pa.float64()),
        ("n_recordings", pa.int64()),
        ("first_seen", pa.string()),
        ("updated_at", pa.string()),
        ("last_recording_id", pa.string()),
        ("last_sum", VECTOR),  # null until the speaker has absorbed a recording
        ("last_n", pa.int64()),
        ("last_duration", pa.float64()),
        ("label_source", pa.string()),
        ("name", pa.string()),
        # Its absorbed clips' lowest and highest F0 (Hz); null when unknown or in older rows.
        ("f0_low_hz", pa.float64()),
        ("f0_high_hz", pa.float64()),
    ]
)

SKIPPED_SCHEMA = pa.schema(
    [
        ("source_url", pa.string()),
        ("url", pa.string()),
        ("title", pa.string()),
        ("reason_code", pa.string()),
        ("reason", pa.string()),
        ("run_id", pa.string()),
        ("at", pa.string()),
        ("line", pa.int64()),  # the sources file's line, for a bad row of it
    ]
)

LABEL_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("field", pa.string()),  # one of LABEL_FIELDS
        ("value", pa.string()),
        ("labelled_by", pa.string()),
        ("labelled_at", pa.string()),
        ("task_id", pa.string()),
    ]
)

RELEASE_SPEAKER_SCHEMA = pa.schema(
    [
        ("speaker_id", pa.string()),
        ("centroid", VECTOR),
        ("n_clips", pa.int64()),
        ("total_duration", pa.float64()),
        ("n_recordings", pa.int64()),
        ("label_source", pa.string()),
        ("name", pa.string()),
    ]
)


def _vector(values: FloatArray | None, what: str) -> list[float] | None:
    """A 1-D float32 vector as a list for Arrow, validated."""
    if values is None:
        return None
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D vector, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} has non-finite values")
    result: list[float] = array.tolist()
    return result


def _provenance_columns(provenance: Provenance) -> dict[str, str]:
    return {
        "pipeline_version": provenance.pipeline_version,
        "models": json.dumps(provenance.models, sort_keys=True),
        "settings_hash": provenance.settings_hash,
        "settings": json.dumps(provenance.settings, sort_keys=True, default=str),
    }


def _transcript_columns(clip: Clip) -> dict[str, Any]:
    transcript = clip.transcript
    if transcript is None:
        names = ("text", "language", "language_probability", "words")
        nulls: dict[str, Any] = dict.fromkeys(names)
        nulls.update(avg_logprob=None, compression_ratio=None, no_speech_prob=None)
        return nulls
    return {
        "text": transcript.text,
        "language": transcript.language,
        "language_probability": transcript.language_probability,
        "words": [asdict(word) for word in transcript.words],
        "avg_logprob": transcript.avg_logprob,
        "compression_ratio": transcript.compression_ratio,
        "no_speech_prob": transcript.no_speech_prob,
    }


def _with_asr_model(provenance: Provenance, clip: Clip) -> Provenance:
    """The recording's provenance, naming the Whisper that transcribed this clip."""
    model = clip.transcript.model if clip.transcript is not None else ""
    if not model or provenance.models.get("asr") == model:
        return provenance
    return replace(provenance, models={**provenance.models, "asr": model})


def _clip_provenance(provenance: Provenance, clip: Clip) -> dict[str, str]:
    """A clip's provenance columns: the Whisper that made its transcript and, when it was made
    with its channel's vocabulary, the round-two attempt it is and its post-corrections.
    """
    columns = _provenance_columns(_with_asr_model(provenance, clip))
    made = clip.transcript
    if made is None or not (made.round_two or made.post_corrected):
        return columns
    models: dict[str, Any] = json.loads(columns["models"])
    if made.round_two:
        models["round_two"] = made.round_two
    if made.post_corrected:
        models["post_correction"] = [list(pair) for pair in made.post_corrected]
    columns["models"] = json.dumps(models, sort_keys=True)
    return columns


def clip_to_row(clip: Clip, provenance: Provenance, run_id: str, created_at: str) -> dict[str, Any]:
    """One ``clips`` row: the clip, its transcript, its labels and its provenance."""
    if clip.end <= clip.start:
        raise ValueError(f"clip {clip.clip_id}: end {clip.end} is not after start {clip.start}")
    row: dict[str, Any] = {
        "clip_id": clip.clip_id,
        "recording_id": clip.recording_id,
        "start": float(clip.start),
        "end": float(clip.end),
        "duration": float(clip.duration),
        "speaker_id": clip.speaker_id,
        "recording_speaker": clip.recording_speaker,
        "speaker_confidence": float(clip.speaker_confidence),
        "overlap_nearby": bool(clip.overlap_nearby),
        **_transcript_columns(clip),
        "transcript_confidence": float(clip.transcript_confidence),
        "status": str(clip.status),
        "review_reasons": list(clip.review_reasons),
        "speaker_label_source": str(clip.speaker_label_source),
        "transcript_label_source": str(clip.transcript_label_source),
        "labelled_by": clip.labelled_by,
        "labelled_at": clip.labelled_at,
        "embedding": _vector(clip.embedding, f"clip {clip.clip_id} embedding"),
        "audio_uri": clip.audio_uri,
        "extra": json.dumps(clip.extra, sort_keys=True),
        **_clip_provenance(provenance, clip),
        "run_id": run_id,
        "created_at": created_at,
        "speaker_embedding": _vector(clip.speaker_embedding, f"clip {clip.clip_id} speaker"),
        "speaker_status": str(clip.speaker_status or clip.status),  # ClipStatus values match
        "transcript_status": str(clip.transcript_status or clip.status),
        "speaker_score_raw": float(clip.speaker_score),
        "transcript_score_raw": float(clip.transcript_score),
        "calibration_version": clip.calibration,
        "f0_hz": _known(clip.f0_hz),
    }
    return row


def _known(hz: float) -> float | None:
    """A pitch as a column value: None (null) when unknown."""
    return float(hz) if hz > 0 else None


def clips_to_table(
    clips: Sequence[Clip], provenance: Provenance, run_id: str, created_at: str
) -> pa.Table:
    """The ``clips`` rows of ``clips`` as one Arrow table."""
    rows = [clip_to_row(clip, provenance, run_id, created_at) for clip in clips]
    return pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)


def recording_to_row(recording: Recording) -> dict[str, Any]:
    """One ``recordings`` row (all fields of the record, licence and attribution included)."""
    return asdict(recording)


def recordings_to_table(recordings: Sequence[Recording]) -> pa.Table:
    return pa.Table.from_pylist([recording_to_row(r) for r in recordings], schema=RECORDING_SCHEMA)


def skipped_to_row(item: SkippedItem) -> dict[str, Any]:
    """One ``skipped`` row."""
    return asdict(item)


def skipped_to_table(items: Sequence[SkippedItem]) -> pa.Table:
    return pa.Table.from_pylist([skipped_to_row(i) for i in items], schema=SKIPPED_SCHEMA)


def speaker_to_row(speaker: Speaker) -> dict[str, Any]:
    """One ``speakers`` row: the running sums that make absorbing idempotent."""
    row = {f.name: getattr(speaker, f.name) for f in fields(speaker)}
    row["vector_sum"] = _vector(speaker.vector_sum, f"speaker {speaker.speaker_id} vector_sum")
    row["last_sum"] = _vector(speaker.last_sum, f"speaker {speaker.speaker_id} last_sum")
    row["label_source"] = str(speaker.label_source)
    row["f0_low_hz"], row["f0_high_hz"] = _known(speaker.f0_low_hz), _known(speaker.f0_high_hz)
    return row


def _vector_column(values: Sequence[FloatArray | None], what: str) -> pa.Array:
    """Vectors (None: a null) as one ``list<float32>`` column, each checked as :func:`_vector`.

    Built from one concatenated float32 buffer: writing the registry after a
    consolidation of 100k speakers costs array operations, not a Python float per
    component.
    """
    arrays: list[FloatArray] = []
    lengths = np.zeros(len(values), dtype=np.int32)
    for i, value in enumerate(values):
        if value is None:
            continue
        array = np.asarray(value, dtype=np.float32)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"{what} must be a non-empty 1-D vector, got shape {array.shape}")
        arrays.append(array)
        lengths[i] = array.size
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"{what} has non-finite values")
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    mask = pa.array([v is None for v in values], pa.bool_())
    return pa.ListArray.from_arrays(offsets, pa.array(flat, pa.float32()), VECTOR, mask=mask)


def speakers_to_table(speakers: Sequence[Speaker]) -> pa.Table:
    """``speakers`` rows (the inverse of :func:`table_to_speakers`), built column-wise."""
    columns: dict[str, pa.Array] = {
        "vector_sum": _vector_column([s.vector_sum for s in speakers], "speakers vector_sum"),
        "last_sum": _vector_column([s.last_sum for s in speakers], "speakers last_sum"),
        "label_source": pa.array([str(s.label_source) for s in speakers], pa.string()),
        "f0_low_hz": pa.array([_known(s.f0_low_hz) for s in speakers], pa.float64()),
        "f0_high_hz": pa.array([_known(s.f0_high_hz) for s in speakers], pa.float64()),
    }
    for f in SPEAKER_SCHEMA:
        if f.name not in columns:
            columns[f.name] = pa.array([getattr(s, f.name) for s in speakers], f.type)
    return pa.Table.from_arrays([columns[n] for n in SPEAKER_SCHEMA.names], schema=SPEAKER_SCHEMA)


def speaker_bucket(speaker_id: str) -> str:
    """The partition of a speaker row: one of ``SPEAKER_BUCKETS`` stable hash buckets."""
    digest = hashlib.sha1(speaker_id.encode()).digest()
    return f"{int.from_bytes(digest[:4], 'big') % SPEAKER_BUCKETS:02d}"


def with_speaker_buckets(table: pa.Table) -> pa.Table:
    """``speakers`` rows with the ``bucket`` partition column the Delta table stores."""
    buckets = [speaker_bucket(s) for s in table["speaker_id"].to_pylist()]
    return table.append_column("bucket", pa.array(buckets, pa.string()))


def row_to_speaker(row: dict[str, Any]) -> Speaker:
    """The :class:`Speaker` of one ``speakers`` row (the inverse of :func:`speaker_to_row`)."""
    last_sum = row.get("last_sum")
    return Speaker(
        speaker_id=row["speaker_id"],
        vector_sum=np.asarray(row["vector_sum"], dtype=np.float32),
        n_clips=int(row["n_clips"]),
        total_duration=float(row["total_duration"]),
        n_recordings=int(row["n_recordings"]),
        first_seen=row["first_seen"],
        updated_at=row["updated_at"],
        last_recording_id=row.get("last_recording_id") or "",
        last_sum=None if last_sum is None else np.asarray(last_sum, dtype=np.float32),
        last_n=int(row.get("last_n") or 0),
        last_duration=float(row.get("last_duration") or 0.0),
        label_source=LabelSource(row.get("label_source") or LabelSource.MACHINE),
        name=row.get("name") or "",
        f0_low_hz=_hz(row.get("f0_low_hz")),
        f0_high_hz=_hz(row.get("f0_high_hz")),
    )


def _hz(value: Any) -> float:
    """A pitch column's value as a float (NaN for a null: unknown)."""
    return float("nan") if value is None else float(value)


def vectors(column: pa.ChunkedArray | pa.Array, what: str) -> FloatArray:
    """A ``list<float32>`` column without nulls as an ``(n, d)`` float32 matrix."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    if array.null_count:
        raise ValueError(f"{what} has null vectors")
    flat = array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if flat.size % len(array):
        raise ValueError(f"{what} has vectors of different lengths")
    matrix = flat.reshape(len(array), flat.size // len(array))
    lengths = np.diff(array.offsets.to_numpy())
    if not np.all(lengths == matrix.shape[1]):
        raise ValueError(f"{what} has vectors of different lengths")
    return matrix


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, order and types.

    Delta readers may return partition columns last, dictionary-encoded or as
    large/view types; this makes every read return the declared schema.
    """
    missing = [name for name in schema.names if name not in table.column_names]
    for name in missing:
        table = table.append_column(name, pa.nulls(table.num_rows, schema.field(name).type))
    return table.select(schema.names).cast(schema)


def _nullable_vectors(column: pa.ChunkedArray, what: str) -> tuple[FloatArray, np.ndarray]:
    """A nullable ``list<float32>`` column as a matrix (zeros for nulls) and a validity mask."""
    array = column.combine_chunks()
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    present = vectors(array.filter(pa.array(valid)), what)
    matrix = np.zeros((len(array), present.shape[1]), dtype=np.float32)
    matrix[valid] = present
    return matrix, valid


def table_to_speakers(table: pa.Table) -> list[Speaker]:
    """The speakers of a ``speakers`` table sorted by id, vectors built column-wise.

    Each speaker's vectors are rows of one writable matrix per column: loading
    100k speakers costs a few array operations, not 100k row conversions.
    """
    if table.num_rows == 0:
        return []
    order = pc.sort_indices(table["speaker_id"]).to_numpy()
    sums = vectors(table["vector_sum"], "speakers.vector_sum")[order]
    last, has_last = (a[order] for a in _nullable_vectors(table["last_sum"], "speakers.last_sum"))
    names = [n for n in SPEAKER_SCHEMA.names if n not in ("vector_sum", "last_sum")]
    cols = {name: table[name].take(pa.array(order)).to_pylist() for name in names}
    sources = {s.value: s for s in LabelSource}
    lasts = [row if has else None for row, has in zip(list(last), has_last.tolist(), strict=True)]
    columns = (  # in Speaker's field order; one pass per column, then zipped
        cols["speaker_id"],
        list(sums),
        [int(v) for v in cols["n_clips"]],
        [float(v) for v in cols["total_duration"]],
        [int(v) for v in cols["n_recordings"]],
        cols["first_seen"],
        cols["updated_at"],
        [v or "" for v in cols["last_recording_id"]],
        lasts,
        [int(v or 0) for v in cols["last_n"]],
        [float(v or 0.0) for v in cols["last_duration"]],
        [sources[v or LabelSource.MACHINE.value] for v in cols["label_source"]],
        [v or "" for v in cols["name"]],
        [_hz(v) for v in cols["f0_low_hz"]],
        [_hz(v) for v in cols["f0_high_hz"]],
    )
    return [Speaker(*row) for row in zip(*columns, strict=True)]
