"""The audio files of one recording in the store: its FLAC and one FLAC per kept clip."""

from __future__ import annotations

from convoice.media.audio import AnyAudio
from convoice.models import labelling
from convoice.models.clip_embeddings import Embeddings
from convoice.models.diarize import Segmentation
from convoice.models.labelling import RecordingSpeakers
from convoice.records import sample_index
from convoice.storage import Store


def write_audio(
    store: Store, recording_id: str, audio: AnyAudio, seg: Segmentation,
    speakers: RecordingSpeakers, vectors: Embeddings,
) -> tuple[str, dict[str, str]]:  # fmt: skip
    """Write the recording's FLAC and one FLAC per clip that will be kept.

    A long recording is encoded a block at a time (:meth:`Store.write_flac`), so a
    :class:`~convoice.media.audio.StreamedAudio` is never read whole.
    """
    rate = audio.sample_rate
    clip_audio: dict[str, str] = {}
    for region, emb, vec, label in zip(
        seg.clips, vectors.clips, vectors.identity_clips, speakers.clip_labels.tolist(),
        strict=True,
    ):  # fmt: skip
        if not labelling.keeps_clip(label, emb, vec):  # build_clips leaves these out
            continue
        start, end = region.region.start, region.region.end
        cid = labelling.clip_id(recording_id, start, end)
        piece = audio.samples[sample_index(start, rate) : sample_index(end, rate)]  # as embedded
        clip_audio[cid] = store.write_flac(store.clip_audio_key(recording_id, cid), piece, rate)
    uri = store.write_flac(store.recording_audio_key(recording_id), audio.samples, rate)
    return uri, clip_audio
