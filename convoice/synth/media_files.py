"""Sample media files: 16 kHz audio as a WAV or an MP4, silence, music, a broken download."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from convoice.records import SAMPLE_RATE, FloatArray
from convoice.synth.speech import require


def write_media(path: str | Path, audio: FloatArray) -> Path:
    """Write 16 kHz ``audio`` as a WAV, or as an MP4 (black H.264 video + AAC audio).

    Written beside ``path`` and renamed onto it, so a reader (or a second writer: two
    benchmarks building one cached corpus) never sees a half-written file.
    """
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix not in {".wav", ".mp4"}:
        raise ValueError(f"{path}: only .wav and .mp4 are written")
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        if suffix == ".wav":
            sf.write(partial, audio, SAMPLE_RATE, subtype="PCM_16")
        else:
            with tempfile.TemporaryDirectory(prefix="convoice-media-") as tmp:
                wav = Path(tmp) / "audio.wav"
                sf.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
                _mux_mp4(wav, partial, len(audio) / SAMPLE_RATE)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _mux_mp4(wav: Path, mp4: Path, seconds: float) -> None:
    """A video as real ones are: black H.264 at 10 fps with AAC audio (16 kHz mono)."""
    cmd = [require("ffmpeg", "ffmpeg"), "-nostdin", "-y", "-v", "error", "-f", "lavfi"]
    cmd += ["-i", "color=c=black:s=320x240:r=10", "-i", str(wav), "-shortest", "-t", f"{seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"]
    done = subprocess.run([*cmd, str(mp4)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not write {mp4}: {done.stderr.strip()[-500:]}")


def make_silence(path: str | Path, seconds: float) -> Path:
    """Digital silence, as a ``.wav`` or a ``.mp4`` (decided by the suffix)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    return write_media(Path(path), np.zeros(round(seconds * SAMPLE_RATE), np.float32))


def _midi_hz(note: int) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def make_music(path: str | Path, seconds: float, seed: int = 0) -> Path:
    """Chords, a bass line, a kick drum and hi-hats at 100 bpm: music without any speech."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    out = np.zeros(n, np.float64)
    beat = 0.6
    chords = ((57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62))  # Am F C G
    for b in range(int(seconds / beat) + 1):
        start = round(b * beat * SAMPLE_RATE)
        length = min(round(beat * SAMPLE_RATE), n - start)
        if length <= 0:
            break
        t = np.arange(length) / SAMPLE_RATE
        chord = chords[(b // 4) % len(chords)]
        tone = np.zeros(length)
        for note in (*chord, chord[0] - 12):
            f = _midi_hz(note)
            for h, amp in ((1, 1.0), (2, 0.4), (3, 0.2)):
                tone += amp * np.sin(2 * np.pi * f * h * t)
        tone *= np.exp(-t * 3.0) * 0.12
        if b % 2 == 0:  # kick drum: a falling sine
            tone += 0.6 * np.sin(2 * np.pi * (50 * t + 6 * (1 - np.exp(-t * 25)))) * np.exp(-t * 18)
        half = length // 2  # hi-hat on the off-beat: a short burst of noise
        hat = np.diff(rng.standard_normal(length - half + 1)) * np.exp(-t[: length - half] * 60)
        tone[half:] += 0.08 * hat
        out[start : start + length] += tone
    out *= 0.8 / max(float(np.max(np.abs(out))), 1e-9)
    return write_media(Path(path), out.astype(np.float32))


def make_truncated(src: str | Path, dst: str | Path) -> Path:
    """Copy the first half of the bytes of ``src`` to ``dst``: a broken download."""
    data = Path(src).read_bytes()
    if not data:
        raise ValueError(f"{src} is empty")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst
