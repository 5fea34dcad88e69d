"""The rows of the store's clip and label tables as records: what storage reads back.

A clip row is a :class:`StoredClip`, a label row a :class:`StoredLabel`, a row of a
release's ``clips.parquet`` a :class:`ReleaseClip` (a stored clip and two columns more).
``from_row`` tolerates a row read with a subset of the columns (``select``) or written
before a column existed: a missing column reads as the field's default. Statuses and
label sources read as their enums, whose values are the stored strings, so ``to_row``
gives back exactly what was read. The conversions from and to Arrow tables live in
:mod:`convoice.storage.rows`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar, Self

from convoice.records.artefacts import pick_identity_vector
from convoice.records.base import ClipStatus, LabelSource, LabelStatus, ReleaseSplit

_CLIP_ENUMS: dict[str, type[StrEnum]] = {
    "status": ClipStatus,
    "speaker_label_source": LabelSource,
    "transcript_label_source": LabelSource,
    "speaker_status": LabelStatus,
    "transcript_status": LabelStatus,
}


@dataclass(frozen=True)
class StoredClip:
    """One row of the ``clips`` table (or of a release's ``clips.parquet``), as read.

    The columns of :data:`~convoice.storage.schema.CLIP_SCHEMA`, one field each;
    ``None`` where the column is null (no transcript, rows written before a column).
    """

    clip_id: str
    recording_id: str = ""
    start: float = 0.0
    end: float = 0.0
    duration: float = 0.0
    speaker_id: str = ""
    recording_speaker: str = ""
    speaker_confidence: float = 0.0
    overlap_nearby: bool = False
    text: str | None = None
    language: str | None = None
    language_probability: float | None = None
    words: tuple[Mapping[str, Any], ...] | None = None  # word, start, end, probability
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    transcript_confidence: float = 0.0
    status: ClipStatus = ClipStatus.REVIEW
    review_reasons: tuple[str, ...] = ()
    speaker_label_source: LabelSource = LabelSource.MACHINE
    transcript_label_source: LabelSource = LabelSource.MACHINE
    labelled_by: str = ""
    labelled_at: str = ""
    embedding: list[float] | None = None
    audio_uri: str = ""
    extra: str = "{}"  # JSON of the clip's measurements
    pipeline_version: str = ""
    models: str = "{}"  # JSON: model name by role
    settings_hash: str = ""
    settings: str = "{}"  # JSON
    run_id: str = ""
    created_at: str = ""
    speaker_embedding: list[float] | None = None
    speaker_status: LabelStatus | None = None
    transcript_status: LabelStatus | None = None
    speaker_score_raw: float | None = None
    transcript_score_raw: float | None = None
    calibration_version: str | None = None
    f0_hz: float | None = None  # median F0 (Hz); None unknown or written before pitch

    _ENUMS: ClassVar[dict[str, type[StrEnum]]] = _CLIP_ENUMS  # columns read as enums

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        values = known_fields(cls, row)
        for name, enum in cls._ENUMS.items():
            if values.get(name) is not None:
                values[name] = enum(values[name])
        if "review_reasons" in values:
            values["review_reasons"] = tuple(values["review_reasons"] or ())
        if values.get("words") is not None:
            values["words"] = tuple(values["words"])
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        """The Arrow row (plain strings and lists), as :data:`CLIP_SCHEMA` stores it."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in self._ENUMS:
            if row[name] is not None:
                row[name] = str(row[name])
        row["review_reasons"] = [str(r) for r in self.review_reasons]
        row["words"] = None if self.words is None else [dict(w) for w in self.words]
        return row

    def identity_vector(self, dim: int | None = None) -> list[float] | None:
        """Its identity embedding (:func:`~convoice.records.identity_vector`'s rule)."""
        vector: list[float] | None = pick_identity_vector(
            self.speaker_embedding, self.embedding, dim
        )
        return vector

    @property
    def speaker_sure(self) -> bool:
        """Its speaker label is sure: the machine accepted it or a person gave it.

        By the per-kind ``speaker_status``; rows written before per-kind statuses
        have none, and count when the clip was accepted.
        """
        if self.speaker_status:
            return self.speaker_status in (LabelStatus.ACCEPTED, LabelStatus.LABELLED)
        return self.status == ClipStatus.ACCEPTED

    @property
    def extra_values(self) -> dict[str, float | str]:
        """The clip's measurements (the ``extra`` JSON)."""
        values: dict[str, float | str] = json.loads(self.extra or "{}")
        return values

    @property
    def model_names(self) -> dict[str, str]:
        """Which model did what (the ``models`` JSON)."""
        names: dict[str, str] = json.loads(self.models or "{}")
        return names


@dataclass(frozen=True)
class ReleaseClip(StoredClip):
    """One row of a release's ``clips.parquet``: the stored clip and what releasing added.

    ``split`` is None only for a release written before the column existed.
    """

    audio_path: str = ""  # the clip's FLAC relative to a pulled dataset
    split: ReleaseSplit | None = None

    _ENUMS: ClassVar[dict[str, type[StrEnum]]] = {**_CLIP_ENUMS, "split": ReleaseSplit}


@dataclass(frozen=True)
class ReleaseSpeaker:
    """One row of a release's ``speakers.parquet`` (computed from its clips)."""

    speaker_id: str
    centroid: list[float]  # the unit mean of its clips' embeddings
    n_clips: int = 0
    total_duration: float = 0.0
    n_recordings: int = 0
    label_source: LabelSource = LabelSource.MACHINE
    name: str = ""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ReleaseSpeaker:
        values = known_fields(cls, row)
        values["label_source"] = LabelSource(values.get("label_source") or LabelSource.MACHINE)
        return cls(**values)


@dataclass(frozen=True)
class StoredLabel:
    """One row of the ``labels`` table: a person's value for one field of one clip."""

    clip_id: str
    field: str  # one of schema.LABEL_FIELDS
    value: str | None
    labelled_by: str = ""
    labelled_at: str = ""
    task_id: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredLabel:
        return cls(**known_fields(cls, row))

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


def stored_pitch(rows: Iterable[StoredClip]) -> dict[str, float]:
    """Clip id -> its stored median F0 (Hz), for the clips whose rows hold one."""
    return {r.clip_id: float(r.f0_hz) for r in rows if r.f0_hz is not None}


def known_fields(cls: type[Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``row`` that ``cls`` has a field for (absent columns keep defaults)."""
    return {f.name: row[f.name] for f in fields(cls) if f.name in row}
