"""Speaking a text in a voice: choose the synthesiser honestly, run it, measure the result.

A request names a bank voice or carries a checked reference recording, and a
``mode``:

- ``clone``: a model that speaks in any voice it is given (an operator's
  XTTS-v2/YourTTS directory, else the engine's VITS from ``convoice retrain
  tts``); when neither exists the request is refused with the nearest bank
  voices, never answered with another voice;
- ``match``: the nearest shipped voice of the language, moved toward the
  reference with the WORLD vocoder, labelled as a match;
- ``nearest``: the nearest shipped voice of the language, as itself.

A shipped bank voice always speaks as itself, whatever the mode.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.models import voicebank as vb
from convoice.service import synthesisers as syn
from convoice.service.bank import Bank, Reference, Refusal, embed, score, to_rate, voice_audio

if TYPE_CHECKING:
    from convoice.config import Settings

MODES = ("clone", "match", "nearest")


@dataclass(frozen=True)
class Target:
    """Whom to speak as: a bank voice or an uploaded reference."""

    name: str  # a voice id, or "your recording"
    embedding: np.ndarray
    samples: np.ndarray  # 16 kHz reference speech (sample clips, or the upload's speech)
    voice: vb.BankVoice | None = None  # None for an upload

    @property
    def shipped(self) -> bool:
        return self.voice is not None and self.voice.kind == vb.SHIPPED


@dataclass
class SpeechResult:
    """One synthesised text with its measurements."""

    speech: syn.Speech
    text: str
    language: str
    target: str
    similarity: float | None  # None when not measured
    wer: float | None
    heard: str
    synth_seconds: float
    reference_samples: np.ndarray = field(repr=False)
    created: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        s = self.speech
        return {
            "synthesiser": s.synthesiser,
            "kind": s.kind,
            "voice": s.voice,
            "label": s.label,
            "target": self.target,
            "text": self.text,
            "language": self.language,
            "similarity": self.similarity,
            "wer": self.wer,
            "heard": self.heard,
            "seconds": round(len(s.samples) / s.rate, 3),
            "synth_seconds": round(self.synth_seconds, 3),
            "details": s.details,
        }


def bank_target(bank: Bank, voice_id: str) -> Target:
    voice = bank.get(voice_id)
    embedding = voice.embedding if voice.embedding is not None else np.zeros(256, np.float32)
    return Target(voice_id, embedding, voice_audio(bank, voice_id), voice)


def upload_target(reference: Reference) -> Target:
    return Target("your recording", reference.embedding, reference.samples)


def check_text(text: str, settings: Settings) -> str:
    text = " ".join((text or "").split())
    if not text:
        raise Refusal(422, "empty_text", "the text is empty: type something to say")
    limit = settings.service.max_text_chars
    if len(text) > limit:
        raise Refusal(422, "text_too_long", f"the text has {len(text)} characters; at most {limit}")
    return text


def pick_language(text: str, language: str, target: Target) -> str:
    """The language asked for, else guessed from the text, else the voice's first, else English."""
    chosen = (language or "").strip().lower()
    if chosen and chosen != "auto":
        return chosen.split("-")[0]
    guessed = vb.guess_language(text)
    if guessed:
        return guessed
    return (
        target.voice.languages[0].split("-")[0] if target.voice and target.voice.languages else "en"
    )


def nearest_shipped(bank: Bank, target: Target, language: str) -> syn.ShippedVoice:
    """The shipped voice of ``language`` closest to the target; Refusal when none speaks it."""
    candidates = [
        v for v in bank.voices.values() if v.kind == vb.SHIPPED and language in v.languages
    ]
    ranked = vb.nearest(target.embedding, candidates, k=1)
    if not ranked:
        raise Refusal(422, "unsupported_language", f"no installed synthesiser speaks {language!r}")
    return bank.shipped[ranked[0][0].voice_id]


def suggestions(bank: Bank, target: Target, k: int = 3) -> list[dict[str, Any]]:
    others = [v for v in bank.voices.values() if v.voice_id != target.name]
    return [
        {"id": v.voice_id, "kind": v.kind, "similarity": round(s, 4)}
        for v, s in vb.nearest(target.embedding, others, k)
    ]


def clone(bank: Bank, target: Target, text: str, language: str, settings: Settings) -> syn.Speech:
    """The operator's checkpoint, else the engine's VITS; Refusal 409 with advice when neither."""
    if settings.service.checkpoint_dir:
        try:
            checked = syn.check_checkpoint_dir(settings.service.checkpoint_dir)
            with tempfile.TemporaryDirectory(prefix="convoice-ref-") as tmp:
                wav = Path(tmp) / "reference.wav"
                _write_wav(wav, target.samples, 16000)
                return syn.speak_operator(checked, text, language, [wav], target.name)
        except syn.SynthesiserUnavailable as err:
            raise Refusal(503, "checkpoint_unavailable", str(err)) from err
    checkpoint = syn.latest_vits(settings)
    if checkpoint is not None:
        try:
            return syn.speak_vits(checkpoint, text, target.embedding, target.name)
        except syn.SynthesiserUnavailable as err:
            raise Refusal(422, "cannot_speak", str(err)) from err
    raise Refusal(
        409,
        "no_cloning_synthesiser",
        f"nothing installed can speak in the voice of {target.name}: no operator checkpoint"
        " ([service] checkpoint_dir) and no `convoice retrain tts` run in the store. Choose the"
        " nearest bank voice below, or mode 'match' (a shipped voice moved toward this one,"
        " labelled as a match)",
        {"nearest": suggestions(bank, target)},
    )


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    import soundfile

    soundfile.write(path, samples, rate, subtype="PCM_16")


def synthesise(
    bank: Bank, target: Target, text: str, language: str, mode: str, settings: Settings
) -> syn.Speech:
    """Run the synthesiser the mode asks for (see the module)."""
    if mode not in MODES:
        raise Refusal(422, "bad_mode", f"mode {mode!r}: use one of {', '.join(MODES)}")
    if target.shipped:
        own = target.voice.languages if target.voice else ()
        if language not in own:
            langs = ", ".join(own)
            raise Refusal(422, "wrong_language", f"{target.name} speaks {langs}, not {language!r}")
        return syn.speak_shipped(bank.shipped[target.name], text)
    if mode == "clone":
        return clone(bank, target, text, language, settings)
    base = nearest_shipped(bank, target, language)
    if mode == "nearest":
        speech = syn.speak_shipped(base, text)
        label = (
            f"{base.name}: the shipped voice nearest to {target.name}, speaking as itself;"
            " not the requested voice"
        )
        return syn.Speech(
            speech.samples, speech.rate, speech.synthesiser, syn.SHIPPED, base.voice_id, label
        )
    profile = target_profile(bank, target)

    def closeness(audio: np.ndarray) -> float:  # the speaker encoder guides the match
        return vb.cosine(embed(audio), target.embedding)

    return syn.speak_matched(base, text, profile, target.name, closeness)


def target_profile(bank: Bank, target: Target) -> Any:
    """The WORLD profile of the target voice (cached for bank voices)."""
    from convoice.models.voicematch import MatchError, reference_profile

    if target.voice is not None and target.name in bank.profiles:
        return bank.profiles[target.name]
    try:
        found = reference_profile(target.samples)
    except MatchError as err:
        raise Refusal(422, "cannot_match", f"{target.name}: {err}") from err
    if target.voice is not None:
        bank.profiles[target.name] = found
    return found


def speak(
    bank: Bank,
    target: Target,
    text: str,
    language: str,
    mode: str,
    settings: Settings,
    measure: bool = True,
) -> SpeechResult:
    """Synthesise and (with ``measure``) score: similarity to the target, Whisper's WER."""
    text = check_text(text, settings)
    language = pick_language(text, language, target)
    started = time.perf_counter()
    speech = synthesise(bank, target, text, language, mode, settings)
    took = time.perf_counter() - started
    similarity: float | None = None
    wer: float | None = None
    heard = ""
    if measure:
        scores = score(
            to_rate(speech.samples, speech.rate), target.embedding, text, language, settings
        )
        similarity, wer, heard = scores.similarity, scores.wer, scores.heard
    return SpeechResult(
        speech, text, language, target.name, similarity, wer, heard, took, target.samples
    )
