"""Label Studio tasks built from clip rows: context audio written, candidates and references heard.

The task's layout itself is :func:`convoice.review.layout.task_payload`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.records import Recording, StoredClip
from convoice.review.audio import audio_url, write_context_audio, write_reference_audio
from convoice.review.layout import Reference, SpeakerOption, speaker_options, task_payload

if TYPE_CHECKING:
    from convoice.storage import Store


def with_references(
    store: Store,
    options: Sequence[SpeakerOption],
    references: Mapping[str, Reference],
    urls: dict[str, str],
    s3: bool,
) -> list[SpeakerOption]:
    """``options`` with the URL of each speaker's reference clip (written on first use)."""
    out = []
    for option in options:
        ref = references.get(option.speaker_id)
        if ref is not None and option.speaker_id not in urls:
            urls[option.speaker_id] = audio_url(store, write_reference_audio(store, ref), s3)
        out.append(replace(option, reference=urls.get(option.speaker_id, "")))
    return out


def build_tasks(
    store: Store,
    rows: Sequence[StoredClip],
    recordings: Mapping[str, Recording],
    context_s: float,
    s3: bool = False,
    references: Mapping[str, Reference] | None = None,
) -> list[dict[str, Any]]:
    """The Label Studio tasks of ``rows`` (their context audio written first).

    ``s3``: the audio is named by its ``s3://`` URI (for the project's S3
    storage), else by its local-files URL. ``references``: per speaker, the
    clip to hear it by (:func:`convoice.review.layout.reference_clips`).
    """
    speakers = store.speakers()
    ids = [s.speaker_id for s in speakers]
    centroids = (
        np.stack([s.centroid for s in speakers]) if speakers else np.zeros((0, 0), dtype=np.float32)
    )
    names = {s.speaker_id: s.name for s in speakers}
    counts = {s.speaker_id: s.n_clips for s in speakers}
    tasks = []
    urls: dict[str, str] = {}
    for row in rows:
        recording = recordings[row.recording_id]
        key, context_start = write_context_audio(store, row, recording, context_s)
        vector = row.identity_vector(centroids.shape[1] if ids else None)  # the registry's
        embedding = np.asarray(vector, dtype=np.float32) if vector else None
        options = speaker_options(
            embedding, str(row.speaker_id or ""), ids, centroids, names, counts
        )
        options = with_references(store, options, references or {}, urls, s3)
        url = audio_url(store, key, s3)
        tasks.append(task_payload(row, options, url, context_start, str(recording.title)))
    return tasks
