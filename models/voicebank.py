"""The voice bank's computations: voices as records, search, nearest voices, voice checks, mels.

Pure functions on arrays and records; reading releases, decoding uploads and
running synthesisers live in :mod:`convoice.service.bank` and
:mod:`convoice.service.synthesisers`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from convoice.records import FloatArray

DATASET, SHIPPED = "dataset", "shipped"  # the two kinds of bank voice
# Two halves of an upload whose mean embeddings are less alike than this are two voices:
# one voice's 2 s windows agree at about 0.85-0.95, two voices' at 0.4-0.85 (resemblyzer).
TWO_VOICES_BELOW = 0.75
MIN_SHARE = 0.2  # the second voice must hold this share of the speech windows
# A second local speaker of the segmentation model in one chunk, with this much speech and this
# share of the first one's, is a second voice. Seen: a real two-person conversation (pyannote's
# sample) 2.0-3.3 s and 31-57 %; one person's turns cut out of it (a little bleed) 1.4-1.6 s, 17 %.
MIN_LOCAL_S = 1.5
MIN_LOCAL_SHARE = 0.25


class VoiceCheckError(ValueError):
    """An uploaded recording cannot serve as a reference voice; ``code`` says which rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Attribution:
    """One Creative Commons source a dataset speaker's clips come from."""

    recording_id: str
    title: str
    url: str
    uploader: str
    license: str
    text: str  # the attribution line as the release states it


@dataclass(frozen=True)
class BankVoice:
    """A voice of the bank: a dataset speaker of the release or a shipped synthesiser voice."""

    voice_id: str
    kind: str  # DATASET | SHIPPED
    name: str
    languages: tuple[str, ...]
    hours: float = 0.0
    n_clips: int = 0
    synthesiser: str = ""  # shipped voices: the synthesiser that speaks them
    licence: str = ""  # shipped voices: the licence of the voice
    sample_clips: tuple[str, ...] = ()  # dataset voices: clip ids to play
    attributions: tuple[Attribution, ...] = ()
    embedding: FloatArray | None = field(default=None, repr=False, compare=False)

    def public(self) -> dict[str, object]:
        """The voice as the API shows it (no embedding)."""
        return {
            "id": self.voice_id,
            "kind": self.kind,
            "name": self.name,
            "languages": list(self.languages),
            "hours": round(self.hours, 4),
            "n_clips": self.n_clips,
            "synthesiser": self.synthesiser,
            "licence": self.licence,
            "attributions": [a.__dict__ for a in self.attributions],
        }


def normalise_exclude(value: object) -> frozenset[str]:
    """The opt-out list from settings: a TOML list or a comma-separated string (environment)."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple | set | frozenset):
        items = [str(v) for v in value]
    else:
        raise ValueError(f"[service] exclude must be a list of speaker ids, not {value!r}")
    return frozenset(item.strip() for item in items if item.strip())


def search(
    voices: list[BankVoice], language: str = "", query: str = "", kind: str = ""
) -> list[BankVoice]:
    """Voices speaking ``language`` (its base code matches: ``en`` finds ``en-us``) whose id or
    name contains ``query`` (case-insensitive), of ``kind`` when given."""
    lang = language.strip().lower().split("-")[0]
    needle = query.strip().lower()
    out = []
    for voice in voices:
        if lang and lang not in {code.lower().split("-")[0] for code in voice.languages}:
            continue
        if needle and needle not in voice.voice_id.lower() and needle not in voice.name.lower():
            continue
        if kind and voice.kind != kind:
            continue
        out.append(voice)
    return out


def cosine(a: FloatArray, b: FloatArray) -> float:
    """Cosine similarity; 0.0 when either vector is zero."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def nearest(
    embedding: FloatArray, voices: list[BankVoice], k: int = 5
) -> list[tuple[BankVoice, float]]:
    """The ``k`` voices most similar to ``embedding`` (those with an embedding), best first."""
    scored = [(v, cosine(embedding, v.embedding)) for v in voices if v.embedding is not None]
    scored.sort(key=lambda item: -item[1])
    return scored[:k]


def check_duration(seconds: float, low: float, high: float) -> None:
    """VoiceCheckError unless ``low`` <= ``seconds`` <= ``high``."""
    if seconds < low:
        raise VoiceCheckError(
            "too_short", f"the recording is {seconds:.1f} s long; a voice needs {low:g}-{high:g} s"
        )
    if seconds > high:
        raise VoiceCheckError(
            "too_long", f"the recording is {seconds:.1f} s long; a voice needs {low:g}-{high:g} s"
        )


def check_speech(speech_seconds: float, minimum: float = 1.5) -> None:
    """VoiceCheckError when the voice activity detector found less than ``minimum`` s of speech."""
    if speech_seconds < minimum:
        raise VoiceCheckError(
            "no_speech",
            f"no speech found (only {speech_seconds:.1f} s of voice activity; at least"
            f" {minimum:g} s of one person speaking is needed)",
        )


def split_voices(windows: FloatArray) -> tuple[float, float]:
    """How far apart the two most different groups of speech windows are.

    ``windows`` (shape: (n, 256), unit norm) are embeddings of consecutive
    speech windows. The two least similar windows seed two groups, every window
    joins the nearer seed, and the result is the cosine between the two group
    means and the share of the smaller group. One voice gives a high cosine.
    """
    n = len(windows)
    if n < 4:
        return 1.0, 0.0
    sims = windows @ windows.T  # shape: (n, n)
    i, j = np.unravel_index(int(np.argmin(sims)), sims.shape)
    group = sims[:, i] >= sims[:, j]  # True: with seed i
    if group.all() or not group.any():
        return 1.0, 0.0
    a, b = windows[group].mean(axis=0), windows[~group].mean(axis=0)
    share = min(int(group.sum()), int((~group).sum())) / n
    return cosine(a, b), share


def check_one_voice(windows: FloatArray, local_seconds: list[list[float]] | None = None) -> None:
    """VoiceCheckError when the recording holds two clearly different voices.

    Two rules: the segmentation model hears a second local speaker inside one
    10 s chunk with at least :data:`MIN_LOCAL_S` of speech and
    :data:`MIN_LOCAL_SHARE` of the first one's (``local_seconds``: per chunk,
    seconds per local speaker; a conversation), or the speech windows fall into
    two groups that sound like different people (``windows``; one person after
    another).
    """
    for chunk, seconds in enumerate(local_seconds or []):
        talkers = sorted(seconds, reverse=True)
        if len(talkers) >= 2 and talkers[1] >= max(MIN_LOCAL_S, MIN_LOCAL_SHARE * talkers[0]):
            raise VoiceCheckError(
                "several_voices",
                f"more than one voice: two people speak within seconds of each other (chunk"
                f" {chunk + 1}: {talkers[0]:.1f} s and {talkers[1]:.1f} s); upload one person"
                " speaking alone",
            )
    similarity, share = split_voices(windows)
    if similarity < TWO_VOICES_BELOW and share >= MIN_SHARE:
        raise VoiceCheckError(
            "several_voices",
            f"more than one voice: two parts of the recording sound like different people"
            f" (similarity {similarity:.2f}); upload one person speaking alone",
        )


# -- mel spectrograms ------------------------------------------------------------


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def mel_filterbank(rate: int, n_fft: int, n_mels: int) -> npt.NDArray[np.float64]:
    """Triangular mel filters (HTK scale), shape (n_mels, n_fft // 2 + 1)."""
    freqs = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    edges = 700.0 * (
        10 ** (np.linspace(0.0, _hz_to_mel(np.array(rate / 2.0)), n_mels + 2) / 2595.0) - 1.0
    )
    bank = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - lo) / max(mid - lo, 1e-9)
        falling = (hi - freqs) / max(hi - mid, 1e-9)
        bank[m] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def mel_spectrogram_db(
    samples: FloatArray, rate: int, n_mels: int = 80, hop_s: float = 0.0125
) -> FloatArray:
    """Log-mel spectrogram in dB (0 = the loudest bin), shape (n_mels, frames), floor -80 dB."""
    n_fft = 1 << int(np.ceil(np.log2(rate * 0.05)))  # about 50 ms windows
    hop = max(1, int(rate * hop_s))
    audio = np.asarray(samples, dtype=np.float64)
    if len(audio) < n_fft:
        audio = np.pad(audio, (0, n_fft - len(audio)))
    frames = 1 + (len(audio) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(audio[index] * np.hanning(n_fft), axis=1)) ** 2  # (frames, bins)
    mel = mel_filterbank(rate, n_fft, n_mels) @ spectrum.T  # shape: (n_mels, frames)
    db = 10.0 * np.log10(np.maximum(mel, 1e-12))
    return np.maximum(db - db.max(), -80.0).astype(np.float32)


# -- text language ---------------------------------------------------------------

_STOPWORDS = {
    "en": "the and is of to a in that it you was for on are with this be have not",
    "de": "der die das und ist nicht ich sie ein eine zu mit den auf wir es",
    "fr": "le la les et est un une des du je vous nous pas que qui dans pour",
    "es": "el la los las y es un una de que en no por con para se muy",
    "pt": "o a os as e é um uma de que em não por com para se muito você",
    "it": "il lo la gli le e è un una di che in non per con sono molto",
    "nl": "de het een en is van dat niet ik je we zijn met voor op",
    "tr": "bir ve bu da de ne için çok ben sen o ile mi değil var",
}


def guess_language(text: str) -> str:
    """A rough guess of the language of ``text`` among the roadmap's eleven ("" when unsure).

    Script decides Russian (Cyrillic), Chinese (Han) and Persian (Arabic script);
    Latin-script languages are told apart by their commonest words.
    """
    if re.search(r"[\u0400-\u04ff]", text):
        return "ru"
    if re.search(r"[\u4e00-\u9fff]", text):
        return "zh"
    if re.search(r"[\u0600-\u06ff]", text):
        return "fa"
    words = re.findall(r"[^\W\d_]+", text.lower())
    scores = {lang: sum(w in set(stop.split()) for w in words) for lang, stop in _STOPWORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] > 0 else ""
