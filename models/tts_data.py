"""A released dataset as a TTS training set: which clips, which lines, which d-vectors.

Pure functions over the rows of a release's ``clips.parquet`` (as
:class:`~convoice.records.ReleaseClip` records); :mod:`convoice.training.tts_export`
writes what they compute.

Which clips: ``status == "accepted"`` only (never ``review`` or ``rejected``),
with a speaker, a non-empty text and an embedding. Clips of the ``heldout``
split (a person reviewed them) are kept apart as the evaluation list, never in
the training metadata: they are what the synthesized speech is scored on.

The d-vector map follows coqui-tts: keys are the samples' ``audio_unique_name``
(``<dataset_name>#<audio path relative to the dataset root, without suffix>``),
values ``{"name": speaker_id, "embedding": [256 floats]}``. ``speakers.json`` has
the same shape with one entry per speaker (the unit mean of its training clips'
embeddings), so it also loads as a d-vector file.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from convoice.records import EMBEDDING_DIM, ClipStatus, FloatArray, ReleaseClip, ReleaseSplit


class TtsFormat(StrEnum):
    """The layouts of a TTS export (``convoice export tts --format``)."""

    LJSPEECH = "ljspeech"
    VCTK = "vctk"  # coqui's vctk_old formatter
    COQUI = "coqui"


FORMATS = tuple(str(f) for f in TtsFormat)
DATASET_NAME = "convoice"  # coqui's dataset_name: the prefix of every d-vector key
COQUI_HEADER = "audio_file|text|speaker_name"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class TtsDataError(ValueError):
    """The release cannot be made into a TTS training set; the message says why."""


@dataclass(frozen=True)
class TtsClip:
    """One clip going into the export."""

    clip_id: str
    file_id: str  # the clip id made safe for file names
    speaker: str  # the speaker id made safe for file and folder names
    speaker_id: str  # as released
    text: str  # one line, no '|'
    split: ReleaseSplit
    embedding: FloatArray  # 256 floats, unit norm
    audio_uri: str  # the clip's audio in the store
    duration: float
    language: str = ""  # as the ASR detected it (or a person set it); "" = unknown


@dataclass(frozen=True)
class Selection:
    """The clips an export keeps, and why the others were left out."""

    train: list[TtsClip]
    heldout: list[TtsClip]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> clips

    @property
    def clips(self) -> list[TtsClip]:
        return self.train + self.heldout

    def counts(self) -> dict[str, Any]:
        """Counts for reports and the export manifest."""
        return {
            "train": len(self.train),
            "heldout": len(self.heldout),
            "speakers": len({c.speaker_id for c in self.clips}),
            "train_hours": round(sum(c.duration for c in self.train) / 3600.0, 6),
            "skipped": dict(sorted(self.skipped.items())),
        }


def safe_name(value: str) -> str:
    """``value`` with every run of characters outside ``[A-Za-z0-9_-]`` replaced by ``_``."""
    cleaned = _UNSAFE.sub("_", value.strip()).strip("_")
    if not cleaned:
        raise TtsDataError(f"{value!r} gives an empty file name")
    return cleaned


def clean_text(text: str | None) -> str:
    """One line of text: whitespace collapsed, the ``|`` delimiter replaced by a comma."""
    return re.sub(r"\s+", " ", (text or "").replace("|", ",")).strip()


def unit_embedding(value: Any) -> FloatArray | None:
    """A 256-float embedding scaled to unit norm; None when missing, malformed or zero."""
    if value is None:
        return None
    vector = np.asarray(value, dtype=np.float32)
    norm = float(np.linalg.norm(vector)) if vector.ndim == 1 else 0.0
    if vector.shape != (EMBEDDING_DIM,) or not np.isfinite(norm) or norm == 0.0:
        return None
    return (vector / norm).astype(np.float32)


def skip_reason(clip: ReleaseClip, embedding: FloatArray | None) -> str | None:
    """Why a released clip stays out of a TTS export, or None when it goes in.

    ``embedding`` is the clip's embedding as :func:`unit_embedding` reads it.
    """
    if clip.status != ClipStatus.ACCEPTED:
        return f"status_{clip.status or 'missing'}"
    if not (clip.speaker_id or "").strip():
        return "no_speaker"
    if not clean_text(clip.text):
        return "empty_text"
    if embedding is None:
        return "no_embedding"
    if not clip.audio_uri:
        return "no_audio"
    return None


def select_clips(clips: Sequence[ReleaseClip]) -> Selection:
    """The accepted clips with speaker, text and embedding; heldout ones apart (see module)."""
    train: list[TtsClip] = []
    heldout: list[TtsClip] = []
    skipped: Counter[str] = Counter()
    seen: dict[str, str] = {}
    for clip in clips:
        embedding = unit_embedding(clip.embedding)
        reason = skip_reason(clip, embedding)
        if reason is not None or embedding is None:
            skipped[reason or "no_embedding"] += 1
            continue
        file_id = safe_name(clip.clip_id)
        if seen.setdefault(file_id, clip.clip_id) != clip.clip_id:
            raise TtsDataError(f"clips {seen[file_id]!r} and {clip.clip_id!r} share a file name")
        split = ReleaseSplit.HELDOUT if clip.split == ReleaseSplit.HELDOUT else ReleaseSplit.TRAIN
        chosen = TtsClip(
            clip_id=clip.clip_id,
            file_id=file_id,
            speaker=safe_name(clip.speaker_id),
            speaker_id=clip.speaker_id,
            text=clean_text(clip.text),
            split=split,
            embedding=embedding,
            audio_uri=clip.audio_uri,
            duration=float(clip.duration or 0.0),
            language=clip.language or "",
        )
        (heldout if split == ReleaseSplit.HELDOUT else train).append(chosen)
    return Selection(train, heldout, dict(skipped))


# -- layouts -------------------------------------------------------------------


def audio_relpath(clip: TtsClip, fmt: str) -> str:
    """Where a clip's WAV goes, relative to its dataset root (see :func:`dataset_root`).

    ``ljspeech``: ``wavs/<id>.wav``; ``vctk`` (coqui's ``vctk_old`` formatter):
    ``wav48/<speaker>/<id>.wav``; ``coqui``: ``wavs/<speaker>/<id>.wav``.
    """
    check_format(fmt)
    if fmt == "ljspeech":
        return f"wavs/{clip.file_id}.wav"
    if fmt == "vctk":
        return f"wav48/{clip.speaker}/{clip.file_id}.wav"
    return f"wavs/{clip.speaker}/{clip.file_id}.wav"


def dataset_root(clip: TtsClip, fmt: str) -> str:
    """The dataset root of a clip relative to the export folder.

    ``""`` except for heldout clips of the ``vctk`` layout, which live in
    ``eval/`` (the formatter reads every ``txt/`` file under its root, so a
    separate root is the only way to keep them out of training).
    """
    return "eval" if fmt == "vctk" and clip.split == ReleaseSplit.HELDOUT else ""


def export_relpath(clip: TtsClip, fmt: str) -> str:
    """The clip's WAV relative to the export folder."""
    root = dataset_root(clip, fmt)
    return f"{root}/{audio_relpath(clip, fmt)}" if root else audio_relpath(clip, fmt)


def vctk_text_relpath(clip: TtsClip) -> str:
    """``txt/<speaker>/<id>.txt`` under the clip's dataset root."""
    root = dataset_root(clip, "vctk")
    path = f"txt/{clip.speaker}/{clip.file_id}.txt"
    return f"{root}/{path}" if root else path


def metadata_lines(clips: list[TtsClip], fmt: str) -> list[str]:
    """The metadata file's lines (without newlines) for ``clips``.

    ``ljspeech``: ``id|text|text`` (no header). ``coqui``: a header
    ``audio_file|text|speaker_name`` then ``wavs/<speaker>/<id>.wav|text|speaker``.
    ``vctk`` has no metadata file (one ``.txt`` per clip): an empty list.
    """
    check_format(fmt)
    if fmt == "ljspeech":
        return [f"{c.file_id}|{c.text}|{c.text}" for c in clips]
    if fmt == "coqui":
        return [COQUI_HEADER] + [f"{audio_relpath(c, fmt)}|{c.text}|{c.speaker}" for c in clips]
    return []


EVAL_HEADER = "file|speaker|text|language"


def eval_lines(clips: list[TtsClip], fmt: str) -> list[str]:
    """``eval.csv``: a header, then ``file|speaker|text|language`` per heldout clip."""
    return [EVAL_HEADER] + [
        f"{export_relpath(c, fmt)}|{c.speaker}|{c.text}|{c.language}" for c in clips
    ]


def d_vector_key(clip: TtsClip, fmt: str, dataset_name: str = DATASET_NAME) -> str:
    """coqui's ``audio_unique_name`` of the clip's sample."""
    return f"{dataset_name}#{audio_relpath(clip, fmt).removesuffix('.wav')}"


def d_vector_map(
    clips: list[TtsClip], fmt: str, dataset_name: str = DATASET_NAME
) -> dict[str, dict[str, Any]]:
    """coqui's ``d_vector_file`` content: sample key -> ``{"name", "embedding"}``."""
    return {
        d_vector_key(c, fmt, dataset_name): {
            "name": c.speaker,
            "embedding": [round(float(x), 7) for x in c.embedding],
        }
        for c in clips
    }


def speaker_means(clips: list[TtsClip]) -> dict[str, FloatArray]:
    """Speaker (safe name) -> unit mean of its clips' embeddings, sorted by speaker."""
    sums: dict[str, FloatArray] = {}
    for clip in clips:
        sums[clip.speaker] = sums.get(clip.speaker, np.zeros(EMBEDDING_DIM, np.float32)) + (
            clip.embedding
        )
    out: dict[str, FloatArray] = {}
    for speaker in sorted(sums):
        norm = float(np.linalg.norm(sums[speaker]))
        if norm > 0:
            out[speaker] = (sums[speaker] / norm).astype(np.float32)
    return out


def speakers_file(selection: Selection) -> dict[str, dict[str, Any]]:
    """``speakers.json``: one d-vector per speaker, the mean of its *training* clips.

    Speakers with heldout clips only have no entry: their reference would be
    made of the very clips they are evaluated on.
    """
    return {
        speaker: {"name": speaker, "embedding": [round(float(x), 7) for x in vector]}
        for speaker, vector in speaker_means(selection.train).items()
    }


def check_format(fmt: str) -> None:
    """TtsDataError unless ``fmt`` is one of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise TtsDataError(f"unknown TTS export format {fmt!r}; use one of {', '.join(FORMATS)}")


# -- evaluation ----------------------------------------------------------------


def cosine(a: FloatArray, b: FloatArray) -> float:
    """Cosine similarity of two vectors (0.0 when either is zero)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


@dataclass(frozen=True)
class SpeechScores:
    """Zero-shot TTS metrics over a set of utterances."""

    n: int
    similarity: float  # mean encoder cosine to the speaker's reference embedding
    wer: float  # word error rate of the engine's ASR against the intended text
    words: int

    @classmethod
    def of(cls, similarities: list[float], errors: int, words: int) -> SpeechScores:
        mean = float(np.mean(similarities)) if similarities else 0.0
        return cls(len(similarities), round(mean, 4), round(errors / words if words else 0.0, 4),
                   words)  # fmt: skip
