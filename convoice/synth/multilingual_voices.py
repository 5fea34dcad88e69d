"""The voices of the multilingual corpus, what each speaks, and their split into two halves.

Whisper base cannot hear espeak-ng's formant speech in most languages (Russian,
Portuguese, Dutch, Turkish, Persian: under 40 % of clips detected right), so a
language is spoken by natural-sounding voices where one ships offline:

- mbrola diphone voices (Debian non-free, ``make system`` installs them; see
  README "Languages" for their licence), driven by espeak-ng (``-v mb-XX``).
  Each was checked with Whisper base on four sentences (language detected,
  espeak-ng's "unknown diphone" warnings); left out as unusable: nl1 (detected
  English, 140 warnings), cn1 (espeak-ng 1.51 has no voice file for it), the
  Spanish es1, es2, es4, mx2 (20-60 warnings per four sentences, WER 0.57-0.90:
  espeak-ng's Spanish phonemes do not match their diphones). The
  German and Dutch voices with an ``-en`` variant (German/Dutch phonemes mapped
  onto English) are the code-switching speakers: one voice, two languages.
- festival's Russian voice (msu_ru_nsh: Whisper base hears it nearly word for word).
- espeak-ng's variants (``+m3`` ...), which speak every language: Chinese and
  Spanish (no usable mbrola voice), and any language a half has no other voice for.

Reserved voices (``../shared/notes/evaluation.md``: mbrola de4, de5, fr1, fr4,
RHVoice) are never used.

The split: a voice is in the same half as in :func:`convoice.synth.inventory.halves`
when that inventory knows it (festival voices, and every mbrola voice: the main
benchmark deals them within their language, ``mbrola-<lang>``, as this corpus
always has), else it is dealt by the same rule
(:func:`convoice.synth.inventory.split`) within its group (espeak-ng variants).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convoice.engines import loaders
from convoice.records import FloatArray
from convoice.synth import inventory
from convoice.synth.speech import TARGET_RMS_DBFS, SynthesisError, synthesize, trimmed

CACHE_VERSION = "ml-2"
ESPEAK_LANGUAGES = {
    "en": "en-us", "ru": "ru", "de": "de", "fr": "fr-fr", "es": "es", "pt": "pt",
    "zh": "cmn-latn-pinyin", "it": "it", "fa": "fa", "nl": "nl", "tr": "tr",
}  # fmt: skip
# espeak-ng's "cmn" voice reads Chinese characters as pinyin spelled in English;
# "cmn-latn-pinyin" reads them as Mandarin.
ESPEAK_VARIANTS = ("m3", "f2", "m5", "f4")
# mbrola voices per language (the espeak-ng voice of each language it speaks); the
# main benchmark's inventory holds the list, so that both corpora split them alike.
MBROLA: dict[str, tuple[str, ...]] = inventory.MBROLA
MBROLA_ENGLISH = ("de1", "de2", "de6", "nl2")  # voices with an ``mb-XX-en`` variant
FESTIVAL = {"ru_nsh": "ru"}  # festival's Italian diphone voices do not read UTF-8 text


@dataclass(frozen=True)
class Voice:
    """One speaker of the corpus: its label and the engine voice for each language it speaks."""

    name: str
    group: str  # for the split: "espeak", "mbrola-<lang>" or "festival"
    speaks: tuple[tuple[str, str], ...]  # (language, engine voice)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(lang for lang, _ in self.speaks)

    def engine_voice(self, language: str) -> str:
        for lang, voice in self.speaks:
            if lang == language:
                return voice
        raise SynthesisError(f"voice {self.name!r} does not speak {language!r}")


def _mbrola(lang: str, db: str) -> Voice:
    speaks = [(lang, f"mb-{db}")]
    if db in MBROLA_ENGLISH:
        speaks.append(("en", f"mb-{db}-en"))
    return Voice(f"mb-{db}", f"mbrola-{lang}", tuple(speaks))


@functools.cache
def voices() -> tuple[Voice, ...]:
    """Every voice of the corpus, installed or not."""
    out = [
        Voice(f"espeak-{v}", "espeak", tuple((k, f"{e}+{v}") for k, e in ESPEAK_LANGUAGES.items()))
        for v in ESPEAK_VARIANTS
    ]
    out += [_mbrola(lang, db) for lang, dbs in MBROLA.items() for db in dbs]
    out += [Voice(name, "festival", ((lang, name),)) for name, lang in FESTIVAL.items()]
    return tuple(out)


@functools.cache
def halves() -> dict[str, str]:
    """Voice name -> "tune" or "report" (fixed in code, whatever is installed): the
    main benchmark's half for the voices it knows (festival's, every mbrola voice)."""
    known = inventory.halves()
    rest = {v.name: v.group for v in voices() if v.name not in known}
    return inventory.split(rest, rest) | {
        v.name: known[v.name] for v in voices() if v.name in known
    }


def installed(voice: Voice) -> bool:
    if voice.group.startswith("mbrola"):
        return inventory.mbrola_installed(voice.name.removeprefix("mb-"))
    return voice.group != "festival" or shutil.which("festival") is not None


def half_voices(half: str) -> tuple[Voice, ...]:
    """The installed voices of one half, in :func:`voices` order."""
    if half not in {"tune", "report"}:
        raise ValueError(f"half must be 'tune' or 'report', got {half!r}")
    which = halves()
    return tuple(v for v in voices() if which[v.name] == half and installed(v))


def by_name(name: str) -> Voice:
    for v in voices():
        if v.name == name:
            return v
    raise SynthesisError(f"no voice {name!r} in the multilingual corpus")


def _level(audio: FloatArray) -> FloatArray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= 0.0:
        raise SynthesisError("espeak-ng produced silence")
    audio = trimmed(audio, peak)
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    gain = min(10 ** (TARGET_RMS_DBFS / 20) / max(rms, 1e-9), 0.95 / peak)
    return (audio * gain).astype(np.float32)


def _espeak(voice: str, text: str) -> FloatArray:
    import soundfile as sf

    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None or sox is None:
        raise SynthesisError("espeak-ng and sox are needed: install the Debian packages")
    with tempfile.TemporaryDirectory(prefix="convoice-ml-") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        for cmd, made in (
            ([espeak, "-v", voice, "-w", str(raw), "--", text], raw),
            ([sox, "-V1", "-G", str(raw), "-r", "16000", "-c", "1", "-e", "floating-point",
              "-b", "32", str(out)], out),
        ):  # fmt: skip
            done = subprocess.run(
                cmd, capture_output=True, text=True, errors="replace", check=False
            )
            if done.returncode != 0 or not made.is_file():
                raise SynthesisError(f"{cmd[0]} {voice} failed: {done.stderr.strip()[-300:]}")
        data, _ = sf.read(out, dtype="float32", always_2d=True)
    return _level(np.ascontiguousarray(data[:, 0]))


def speak(speaker: str, language: str, text: str) -> FloatArray:
    """``text`` in ``language`` by the voice named ``speaker`` (float32 mono, 16 kHz);
    "flite-<voice>": a voice of :mod:`convoice.synth.speech`, English only."""
    if speaker.startswith("flite-"):
        if language != "en":
            raise SynthesisError(f"flite speaks English only, not {language!r}")
        return synthesize(speaker.removeprefix("flite-"), text)
    voice = by_name(speaker)
    engine_voice = voice.engine_voice(language)
    if voice.group == "festival":
        return synthesize(engine_voice, text)
    key = f"{CACHE_VERSION}\x1f{engine_voice}\x1f{text}".encode()
    cached = loaders.cache_dir() / "tts-ml" / f"{hashlib.sha256(key).hexdigest()}.npy"
    if cached.is_file():
        return np.asarray(np.load(cached), dtype=np.float32)
    audio = _espeak(engine_voice, text)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".tmp.npy")
    np.save(partial, audio)
    partial.replace(cached)
    return audio
