"""Made-up voices and minimal ``clips`` rows for the consolidation tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from convoice.models.consolidate import unit_rows
from convoice.storage.schema import CLIP_SCHEMA

DIM = 192  # CAM++'s embedding size


def voices(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random unit vectors (unlike voices: near-orthogonal in 192 dimensions)."""
    return unit_rows(np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32))


def near(v: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at about ``cosine`` from ``v``."""
    noise = np.random.default_rng(seed).standard_normal(v.shape).astype(np.float32)
    noise -= (noise @ v) * v
    noise /= np.linalg.norm(noise)
    return (cosine * v + np.sqrt(1 - cosine**2) * noise).astype(np.float32)


def clip_rows(
    rows: Sequence[tuple[str, str, str]],
    speaker_embeddings: Sequence[np.ndarray] | None = None,
    recording_speakers: Sequence[str] | None = None,
) -> pa.Table:
    """Accepted 3 s clips from (clip id, recording id, speaker id) rows.

    ``speaker_embeddings``: one CAM++ vector per row (the split step reads them);
    without it the column is null, as in a store made before CAM++.
    ``recording_speakers``: each clip's local speaker ("S0", ...; a re-label reads it).
    """
    n = len(rows)
    columns = {
        "clip_id": pa.array([r[0] for r in rows]),
        "recording_id": pa.array([r[1] for r in rows]),
        "speaker_id": pa.array([r[2] for r in rows]),
        "start": pa.array([0.0] * n),
        "end": pa.array([3.0] * n),
        "duration": pa.array([3.0] * n),
        "status": pa.array(["accepted"] * n),
        "audio_uri": pa.array([f"audio/clips/{r[1]}/{r[0]}.flac" for r in rows]),
        "embedding": pa.array([[0.1] * 256] * n, CLIP_SCHEMA.field("embedding").type),
    }
    if recording_speakers is not None:
        columns["recording_speaker"] = pa.array(list(recording_speakers), pa.string())
    if speaker_embeddings is not None:
        columns["speaker_embedding"] = pa.array(
            [np.asarray(v).tolist() for v in speaker_embeddings],
            CLIP_SCHEMA.field("speaker_embedding").type,
        )
    arrays = [columns.get(f.name, pa.nulls(n, f.type)) for f in CLIP_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=CLIP_SCHEMA)
