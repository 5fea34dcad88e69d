"""ffprobe and ffmpeg on a downloaded file: which audio track, decode it, check the WAV."""

from __future__ import annotations

import errno
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convoice.config import IngestSettings
from convoice.media import ffmpeg
from convoice.media.errors import IngestError, mentions_full_disk
from convoice.media.ytdlp import short
from convoice.records import SAMPLE_RATE, SkipReason


@dataclass(frozen=True)
class AudioTrack:
    """The audio stream of a downloaded file that the engine decodes, and why that one."""

    index: int  # ffprobe's stream index in the file
    position: int  # 1-based among the file's audio streams
    count: int  # audio streams in the file
    codec: str
    sample_rate: int
    channels: int
    duration: float | None  # the stream's own duration; None when the file does not say
    language: str = ""
    title: str = ""
    default: bool = False

    def describe(self) -> str:
        """``"track 2 of 3 (default, eng, 'Original'): aac 48000 Hz 6 ch"``."""
        marks = ["default"] if self.default and self.count > 1 else []
        marks += [self.language] if self.language else []
        marks += [repr(self.title)] if self.title else []
        which = f"track {self.position} of {self.count}"
        which += f" ({', '.join(marks)})" if marks else ""
        return f"{which}: {self.codec} {self.sample_rate} Hz {self.channels} ch"


RAW_AUDIO: dict[str, tuple[str, int]] = {
    ".ulaw": ("mulaw", 8000), ".ul": ("mulaw", 8000), ".mulaw": ("mulaw", 8000),
    ".alaw": ("alaw", 8000), ".al": ("alaw", 8000),
    ".sln": ("s16le", 8000), ".sln12": ("s16le", 12000), ".sln16": ("s16le", 16000),
    ".sln24": ("s16le", 24000), ".sln32": ("s16le", 32000), ".sln44": ("s16le", 44100),
    ".sln48": ("s16le", 48000), ".sln96": ("s16le", 96000), ".sln192": ("s16le", 192000),
}  # fmt: skip
"""Headerless audio named by its file's extension (Asterisk's telephone sound formats): the
ffmpeg format and sample rate, mono. Without them ffprobe cannot read ``.ulaw``, ``.alaw`` or
``.sln16`` at all, and reads ``.ul`` and ``.al`` as 44.1 kHz (the speech five times too
fast). Such a file has no length in it, so one cut short cannot be told from a short one."""


def raw_input_args(path: Path) -> list[str]:
    """The ffmpeg/ffprobe options that go before ``path`` when it is headerless audio
    (:data:`RAW_AUDIO`); none for any other file (its container says what it holds)."""
    raw = RAW_AUDIO.get(path.suffix.lower())
    if raw is None:
        return []
    return ["-f", raw[0], "-sample_rate", str(raw[1]), "-ch_layout", "mono"]


def choose_audio_track(path: Path) -> AudioTrack:
    """The audio stream to label: the one marked default, else the original, else the first.

    Raises:
        IngestError: ``corrupt_media`` when ffprobe cannot read the file, ``no_audio``
            when it has no audio stream.
    """
    probe = _ffprobe(path)
    if probe is None:
        raise IngestError(
            SkipReason.CORRUPT_MEDIA,
            "the downloaded file is not valid media (truncated or corrupt)",
        )
    if "ogg" in str(probe.get("format", {}).get("format_name", "")) and not _ogg_ends(path):
        raise IngestError(  # an Ogg file cut short is only an Ogg file that ends early otherwise
            SkipReason.CORRUPT_MEDIA, "truncated: the Ogg stream has no end-of-stream page"
        )
    streams = probe.get("streams", [])
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not audio:
        raise IngestError(SkipReason.NO_AUDIO, "the media has no audio stream")
    marked = [s for s in audio if (s.get("disposition") or {}).get("default")]
    original = [s for s in audio if (s.get("disposition") or {}).get("original")]
    chosen = (marked or original or audio)[0]
    tags = {str(k).lower(): str(v) for k, v in (chosen.get("tags") or {}).items()}
    duration = _wav_declared_seconds(path) or _stream_duration(chosen, tags)
    if duration is None and not any(s.get("codec_type") == "video" for s in streams):
        duration = _float(probe.get("format", {}).get("duration"))  # audio only: the same
    return AudioTrack(
        index=int(chosen.get("index", 0)),
        position=audio.index(chosen) + 1,
        count=len(audio),
        codec=str(chosen.get("codec_name") or "?"),
        sample_rate=int(chosen.get("sample_rate") or 0),
        channels=int(chosen.get("channels") or 0),
        duration=duration,
        language=tags.get("language", "") if tags.get("language") != "und" else "",
        title=tags.get("title", ""),
        default=bool((chosen.get("disposition") or {}).get("default")),
    )


def _float(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if number > 0 else None


def _stream_duration(stream: dict[str, Any], tags: dict[str, str]) -> float | None:
    """A stream's own duration: its header's, else Matroska's ``DURATION`` tag."""
    own = _float(stream.get("duration"))
    if own is not None:
        return own
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", tags.get("duration", "").strip())
    if match is None:
        return None
    return int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3]) or None


def _ogg_ends(path: Path) -> bool:
    """Whether an Ogg file's last page carries the end-of-stream flag (RFC 3533, 6).

    Every complete Ogg stream ends with such a page; a download cut short ends
    with a page without it, or with part of a page.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - 65_536))  # one page is at most 65,307 bytes
        tail = handle.read()
    start = tail.rfind(b"OggS\x00")
    if start < 0 or start + 27 > len(tail):
        return False
    header_type, segments = tail[start + 5], tail[start + 26]
    body = sum(tail[start + 27 : start + 27 + segments])
    complete = start + 27 + segments + body == len(tail)
    return bool(header_type & 0x04) and complete


def _wav_declared_seconds(path: Path) -> float | None:
    """The length a WAV's header declares (ffprobe guesses it from the file's size instead)."""
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        elif chunk == b"data":  # 0 or 0xFFFFFFFF: written by a stream that did not know
            known = byte_rate > 0 and 0 < size < 0xFFFFFFFF
            return size / byte_rate if known else None
        pos += 8 + size + (size & 1)
    return None


def extract_audio(path: Path, track: AudioTrack, wav: Path) -> Path:
    """Decode ``track`` of ``path`` into a 16 kHz mono 16-bit WAV (channels mixed down).

    Raises:
        IngestError: ``corrupt_media`` when ffmpeg cannot decode it.
    """
    args = ["-nostdin", "-v", "error", "-y", *raw_input_args(path), "-i", str(path),
            "-map", f"0:{track.index}",
            "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
            str(wav)]  # fmt: skip
    done = ffmpeg.run("ffmpeg", args, timeout=7200, text=True)
    if done.returncode != 0 or not wav.exists():
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if mentions_full_disk(done.stderr):  # the disk, not the media
            raise OSError(errno.ENOSPC, f"ffmpeg: {short(detail)}", str(wav))
        raise IngestError(
            SkipReason.CORRUPT_MEDIA, f"ffmpeg cannot decode its audio: {short(detail)}"
        )
    return wav


def _ffprobe(path: Path) -> dict[str, Any] | None:
    """ffprobe's streams and format of ``path``, or None when it cannot read the file."""
    args = ["-v", "error", "-show_streams", "-show_format", "-of", "json", *raw_input_args(path),
            str(path)]  # fmt: skip
    done = ffmpeg.run("ffprobe", args, timeout=120, text=True)
    if done.returncode != 0:
        return None
    data: dict[str, Any] = json.loads(done.stdout or "{}")
    if not data.get("streams"):
        return None
    return data


def check_audio(path: Path, settings: IngestSettings, expected_s: float | None = None) -> float:
    """Verify a WAV is 16 kHz mono, not empty, not truncated, not too long; its duration.

    ``expected_s`` is the duration the source's audio track declares: a WAV
    shorter than that (by more than 1 s or 5 %) was decoded from a truncated file.
    The WAV is ffmpeg's own output (:func:`extract_audio`), so its header is read
    in-process (its data chunk's length, as ffprobe reads it) rather than by a third
    ffprobe/ffmpeg process per download.

    Raises:
        IngestError: ``corrupt_media``, ``no_audio`` or ``too_long``.
    """
    import soundfile  # libsndfile reads the header in this process: no ffprobe to start

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError) as err:  # LibsndfileError is a RuntimeError
        raise IngestError(SkipReason.CORRUPT_MEDIA, f"{path.name}: not a readable WAV") from err
    rate, channels = int(info.samplerate), int(info.channels)
    if (rate, channels) != (SAMPLE_RATE, 1):
        raise IngestError(SkipReason.CORRUPT_MEDIA, f"{path.name}: {rate} Hz, {channels} channels")
    duration = float(info.frames) / rate
    if duration <= 0:
        raise IngestError(SkipReason.NO_AUDIO, "the audio track decodes to no samples")
    if duration > settings.max_duration_s:
        limit = settings.max_duration_s
        raise IngestError(
            SkipReason.TOO_LONG, f"{duration:.0f} s of audio is over the {limit:.0f} s limit"
        )
    if expected_s and duration < expected_s - max(1.0, 0.05 * expected_s):
        raise IngestError(
            SkipReason.CORRUPT_MEDIA,
            f"truncated: {duration:.1f} s of audio decoded of the {expected_s:.1f} s "
            "its audio track declares",
        )
    return duration
