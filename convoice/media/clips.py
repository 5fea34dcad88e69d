"""A recording's clips alone: their samples end to end, for transcription."""

from __future__ import annotations

import dataclasses

import numpy as np

from convoice.media.audio import AnyAudio, Audio
from convoice.models.diarize import ClipRegion, Segmentation
from convoice.records import FloatArray, Region, sample_index


def clips_only(audio: AnyAudio, seg: Segmentation) -> tuple[Audio, Segmentation]:
    """The clips' samples end to end, and ``seg`` with its clip regions moved onto them.

    What transcription needs of a recording: for three hours of audio with ten
    minutes of clips, 40 MB instead of 690 MB, so the whole recording need not be
    held while Whisper runs (a :class:`StreamedAudio` reads each clip from its
    WAV). The clips' own lengths and order are kept.
    """
    rate = audio.sample_rate
    guard = np.zeros(rate // 100, dtype=np.float32)  # 10 ms apart: no sample bleeds over
    pieces: list[FloatArray] = []
    clips: list[ClipRegion] = []
    cursor = 0
    for clip in seg.clips:
        piece = audio.samples[
            sample_index(clip.region.start, rate) : sample_index(clip.region.end, rate)
        ]
        start = cursor / rate
        clips.append(dataclasses.replace(clip, region=Region(start, start + len(piece) / rate)))
        pieces += [piece, guard]
        cursor += len(piece) + len(guard)
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return Audio(samples.astype(np.float32, copy=False), rate), dataclasses.replace(
        seg, clips=clips
    )
