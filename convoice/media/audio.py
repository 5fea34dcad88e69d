"""Audio: a recording decoded to 16 kHz mono float32 (whole, or read from its WAV range by
range), encoded clip bytes, WAV bytes."""

from __future__ import annotations

import errno
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from convoice.media import ffmpeg
from convoice.media.errors import IngestError, mentions_full_disk
from convoice.records import SAMPLE_RATE, FloatArray, SkipReason


@dataclass(frozen=True)
class Audio:
    samples: npt.NDArray[np.float32]  # shape: (num_samples,)
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class WavSamples:
    """The samples of a 16 kHz mono WAV on disk, read one range at a time.

    ``samples[a:b]`` reads those samples only, as float32 (the values
    :func:`decode` gives): what holds a recording's samples for the stages that
    go over all of it, so that memory does not grow with its length.
    """

    path: Path
    frames: int

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, index: slice, /) -> FloatArray:
        import soundfile

        if not isinstance(index, slice):
            raise TypeError(f"WavSamples reads ranges (a slice), not {type(index).__name__}")
        start, stop, step = index.indices(self.frames)
        if step != 1:
            raise ValueError("WavSamples reads ranges with a step of 1 only")
        with soundfile.SoundFile(str(self.path)) as wav:
            wav.seek(start)
            data = wav.read(max(0, stop - start), dtype="float32", always_2d=False)
        return np.ascontiguousarray(data, dtype=np.float32)


@dataclass(frozen=True)
class StreamedAudio:
    """A recording like :class:`Audio` whose samples stay in its WAV until a range is read."""

    samples: WavSamples
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


AnyAudio = Audio | StreamedAudio
"""A recording's audio as the stages take it: held whole, or read range by range."""


def open_audio(path: Path) -> AnyAudio:
    """``path``'s audio: a 16 kHz mono WAV (what the download makes) is read range by range
    (:class:`StreamedAudio`); any other file is decoded whole (:func:`decode`).

    Raises:
        IngestError: as :func:`decode`.
    """
    frames = _wav_frames(path)
    if frames is None:
        return decode(path)
    if frames == 0:
        raise IngestError(SkipReason.NO_AUDIO, f"{path.name} decodes to no audio")
    return StreamedAudio(WavSamples(path, frames), SAMPLE_RATE)


def decode(path: Path) -> Audio:
    """Decode any file ffmpeg reads into 16 kHz mono float32 samples.

    The samples are allocated once (4 bytes a sample: 0.7 GB for three hours):
    a 16 kHz mono WAV, what the download makes, is read straight into the array;
    anything else is decoded by ffmpeg into a temporary file first, never
    through a pipe buffer that would be copied.

    Raises:
        IngestError: ``corrupt_media`` when ffmpeg cannot decode it, ``no_audio``
            when it decodes to nothing.
    """
    samples = _read_wav(path)
    if samples is None:
        with tempfile.TemporaryDirectory(prefix="convoice-decode-") as tmp:
            raw = Path(tmp) / "audio.f32"
            _ffmpeg_to_raw(path, raw)
            samples = np.fromfile(raw, dtype=np.float32)
    if samples.size == 0:
        raise IngestError(SkipReason.NO_AUDIO, f"{path.name} decodes to no audio")
    return Audio(samples, SAMPLE_RATE)


def read_encoded(data: bytes, always_2d: bool = False) -> tuple[npt.NDArray[np.float32], int]:
    """The float32 samples and the rate of encoded audio (a clip's FLAC or WAV bytes).

    One column per channel when the audio has more than one (always with ``always_2d``).
    """
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=always_2d)
    return samples, int(rate)


def wav_bytes(samples: npt.NDArray[np.float32], rate: int) -> bytes:
    """``samples`` as the bytes of a 16-bit PCM WAV file at ``rate``."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(samples, np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def to_mono(samples: np.ndarray) -> np.ndarray:
    """The channels of ``samples`` averaged; mono samples as they are."""
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def _wav_frames(path: Path) -> int | None:
    """How many samples a readable 16 kHz mono WAV holds, or None for any other file."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError):
        return None
    if info.format != "WAV" or (info.samplerate, info.channels) != (SAMPLE_RATE, 1):
        return None
    return int(info.frames)


def _read_wav(path: Path) -> npt.NDArray[np.float32] | None:
    """The samples of a readable 16 kHz mono WAV, or None for any other file."""
    import soundfile

    if _wav_frames(path) is None:
        return None
    data, _ = soundfile.read(str(path), dtype="float32", always_2d=False)
    return np.ascontiguousarray(data, dtype=np.float32)


def _ffmpeg_to_raw(path: Path, raw: Path) -> None:
    args = ["-nostdin", "-v", "error", "-y", "-i", str(path), "-f", "f32le", "-ac", "1",
            "-ar", str(SAMPLE_RATE), str(raw)]  # fmt: skip
    proc = ffmpeg.run("ffmpeg", args, timeout=7200)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        detail = stderr.strip().splitlines()[-1:] or ["?"]
        if mentions_full_disk(stderr):  # the disk, not the media
            raise OSError(errno.ENOSPC, f"ffmpeg: {detail[0]}", str(raw))
        raise IngestError(
            SkipReason.CORRUPT_MEDIA, f"ffmpeg cannot decode {path.name}: {detail[0]}"
        )
