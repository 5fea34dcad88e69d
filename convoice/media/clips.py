"""A recording's clips alone: their samples end to end, for transcription."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from convoice.media.audio import AnyAudio, Audio, StreamedAudio, WavSamples
from convoice.models.diarize import ClipRegion, Segmentation
from convoice.records import FloatArray, Region, sample_index


def clips_only(
    audio: AnyAudio, seg: Segmentation, path: Path | None = None
) -> tuple[Audio | StreamedAudio, Segmentation]:
    """The clips' samples end to end, and ``seg`` with its clip regions moved onto them.

    What transcription needs of a recording: for three hours of audio with ten
    minutes of clips, 40 MB instead of 690 MB, so the whole recording need not be
    held while Whisper runs (a :class:`StreamedAudio` reads each clip from its
    WAV). The clips' own lengths and order are kept. With ``path``, the clips go
    into a float32 WAV there (the same values) and are read back clip by clip
    (:class:`StreamedAudio`): three hours of dense speech hold 2.7 hours of clips,
    0.6 GB, which a recording waiting for Whisper's turn no longer keeps in memory.
    """
    rate = audio.sample_rate
    guard = np.zeros(rate // 100, dtype=np.float32)  # 10 ms apart: no sample bleeds over
    pieces: list[FloatArray] = []
    clips: list[ClipRegion] = []
    cursor = 0
    wav = None
    if path is not None:
        import soundfile

        wav = soundfile.SoundFile(str(path), "w", rate, 1, subtype="FLOAT", format="WAV")
    try:
        for clip in seg.clips:
            piece = audio.samples[
                sample_index(clip.region.start, rate) : sample_index(clip.region.end, rate)
            ]
            start = cursor / rate
            clips.append(dataclasses.replace(clip, region=Region(start, start + len(piece) / rate)))
            if wav is not None:
                wav.write(np.asarray(piece, dtype=np.float32))
                wav.write(guard)
            else:
                pieces += [piece, guard]
            cursor += len(piece) + len(guard)
    finally:
        if wav is not None:
            wav.close()
    moved = dataclasses.replace(seg, clips=clips)
    if path is not None:
        return StreamedAudio(WavSamples(path, cursor), rate), moved
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return Audio(samples.astype(np.float32, copy=False), rate), moved
