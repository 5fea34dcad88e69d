"""The language of every clip, and the Whisper model that should transcribe it.

Whisper detects a language from the first decoder step over its encoder
output. Its encoder is trained on 30 s inputs, and a 1-8 s clip padded to
30 s costs a full encoder pass (``method="padded"``). CTranslate2 also
encodes a clip at its own length, about twenty times cheaper, with a less
sure answer (``method="short"``, the default; a clip under ``min_s`` gets silence after it
up to that length, and clips share an encoder batch only at equal length, so a clip's
language never depends on its neighbours). With ``method="short+padded"``
a clip whose short answer is below ``min_probability`` is encoded again,
padded: on the multilingual benchmark that re-encoding cost six times the
short pass for under one point of accuracy, so it is not the default.

A clip is rarely alone: every clip's distribution is combined with its
recording speaker's as a prior, the language being the one with the highest

    log p(language | clip) + speaker_weight * log p(language | speaker)

where p(language | speaker) is by default the duration-weighted mean of that
speaker's clip distributions: a mixture, so a speaker who speaks two
languages keeps both.

A confidently detected switch of language (code-switching) stands, and short
or unsure clips take their speaker's language. Opt-in (``window_s = 30``, with
``speaker_weight = 1``: it is sharper than the mean), p(language | speaker) is
Whisper's distribution over one padded 30 s window of that speaker's clips end
to end (one encoder pass per speaker, the length Whisper was trained on): on
the tuning half it was right for more of the same clips (86.1 % -> 89.8 %) but
not as ingested (87.0 % either way), at about four times the detection's cost,
so it is not the default.

``weights`` multiply a language's probability everywhere before it is used
(then renormalised): Latin (``la``), which no one speaks in today's video but
which Whisper hears in synthetic and accented speech of many languages, is
weighted 0.1 by default. Measured on the tuning half of ``convoice bench
--languages`` (README "Languages").

Every guess also names its runner-up language and that one's probability:
with ``decode_runner_up`` (opt-in) :func:`convoice.models.asr.transcribe_clips`
transcribes a clip in it too and keeps the language whose words Whisper finds
likelier; with ``decode_below`` (opt-in) an unsure clip is transcribed in all its
``alternatives`` (the rest of its ``decode_top`` likeliest languages and its speaker's
majority language). On the tuning half neither mended more clips than it broke (README
"Languages", session 22).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from convoice.engines import encoder_tally
from convoice.engines.lanes import side_by_side
from convoice.models.packing import FloatArray
from convoice.records import SAMPLE_RATE, Region, Samples, sample_index

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

METHODS = ("short", "short+padded", "padded")
# Per-language Whisper defaults (``[asr] model = ""``); see README, "Languages".
DEFAULT_MODELS: dict[str, str] = {}
DEFAULT_MODEL = "base"

Distribution = dict[str, float]  # language -> probability, summing to 1


class LanguageError(ValueError):
    """A language setting is malformed."""


@dataclass(frozen=True)
class DetectOptions:
    method: str = "short"  # "short" (clip at its own length), "short+padded" (padded when
    # unsure) or "padded" (every clip padded to 30 s)
    min_probability: float = 0.8  # below this a short guess is unsure: redone padded if asked
    candidates: tuple[str, ...] = ()  # only these languages (() = all Whisper knows)
    batch_size: int = 8
    # a shorter clip is encoded with silence after it up to this many seconds ("short" only):
    # alone, a tight 1-3 s clip was heard worse than in the padded batches it had before
    min_s: float = 3.0
    pool_speakers: bool = True  # every clip's distribution times its speaker's (a prior)
    speaker_weight: float = 2.0  # the exponent of the speaker's distribution (0: none)
    window_s: float = 0.0  # > 0: the speaker's prior is one padded window of its clips this
    # long (opt-in, with speaker_weight 1); 0: the duration-weighted mean of its clips'
    # distributions
    weights: tuple[tuple[str, float], ...] = (("la", 0.1),)  # language -> factor on its p
    # > 0: a clip whose runner-up language has at least this probability is transcribed in
    # that language too, and takes it when Whisper's words are likelier there (README
    # "Languages", :func:`convoice.models.asr.transcribe_clips`); 0: off.
    decode_runner_up: float = 0.0
    # > 0: a clip whose language probability is below this is transcribed in each of its
    # ``alternatives`` too (the next of the ``decode_top`` likeliest languages, and its
    # speaker's majority language with ``decode_speaker``), and takes the one whose words
    # Whisper reads likeliest (:func:`convoice.models.asr.transcribe_clips`); 0: off.
    decode_below: float = 0.0
    decode_top: int = 3
    decode_speaker: bool = True


@dataclass(frozen=True)
class LanguageGuess:
    language: str
    probability: float
    method: str  # "pinned", "short", "padded", "speaker" (the speaker's prior changed it) or
    # "decoded" (the runner-up, whose transcript Whisper scored higher)
    runner_up: str = ""  # the second language of the same distribution ("" = none)
    runner_up_probability: float = 0.0
    # the languages a transcript may still choose (language, probability), likeliest first:
    # the next of the distribution's top ``decode_top``, then the speaker's majority language
    alternatives: tuple[tuple[str, float], ...] = ()


def detect_languages(
    model: WhisperModel,
    samples: Samples,
    clips: list[Region],
    options: DetectOptions,
    speakers: Sequence[int] | None = None,
) -> list[LanguageGuess]:
    """One language guess per clip; ``speakers``: the recording speaker of each clip."""
    if options.method not in METHODS:
        raise LanguageError(f"language detection {options.method!r}: use one of {METHODS}")
    if options.speaker_weight < 0:
        raise LanguageError(f"speaker weight {options.speaker_weight}: must be 0 or more")
    if not 0 <= options.min_s <= WINDOW_MAX_S:
        raise LanguageError(f"least clip length {options.min_s} s: use 0 to {WINDOW_MAX_S:.0f}")
    if options.window_s < 0 or options.window_s > WINDOW_MAX_S:
        raise LanguageError(f"language window {options.window_s} s: use 0 to {WINDOW_MAX_S:.0f}")
    if not 0 <= options.decode_runner_up <= 1:
        raise LanguageError(f"runner-up decoding {options.decode_runner_up}: use 0 to 1")
    if not 0 <= options.decode_below <= 1:
        raise LanguageError(f"decoding below {options.decode_below}: use 0 to 1")
    if options.decode_top < 1:
        raise LanguageError(f"decoding the top {options.decode_top} languages: use 1 or more")
    if any(f <= 0 for _, f in options.weights):
        raise LanguageError(f"language weights {dict(options.weights)}: must be over 0")
    if not clips:
        return []
    padded = options.method == "padded"
    dists = _detect(model, samples, clips, options, padded)
    methods = ["padded" if padded else "short"] * len(clips)
    unsure = [i for i, d in enumerate(dists) if max(d.values()) < options.min_probability]
    if unsure and options.method == "short+padded":
        again = _detect(model, samples, [clips[i] for i in unsure], options, padded=True)
        for i, dist in zip(unsure, again, strict=True):
            dists[i], methods[i] = dist, "padded"
    keep = options.decode_top
    guesses = [_top(d, m, keep) for d, m in zip(dists, methods, strict=True)]
    if speakers is not None and options.pool_speakers:
        labels = list(speakers)
        if options.window_s > 0:
            priors = window_priors(model, samples, clips, labels, options)
        else:
            priors = speaker_priors(dists, labels, [c.duration for c in clips])
        guesses = _pool(guesses, dists, labels, priors, options.speaker_weight, keep,
                        options.decode_speaker)  # fmt: skip
    return guesses


WINDOW_MAX_S = 30.0  # Whisper's input: a longer window would be cut
WINDOW_GAP_S = 0.2  # silence between a speaker's clips in its window


def window_priors(
    model: WhisperModel,
    samples: Samples,
    clips: Sequence[Region],
    speakers: Sequence[int],
    options: DetectOptions,
) -> dict[int, Distribution]:
    """Per speaker, the language distribution of its clips end to end (in time order, apart
    by :data:`WINDOW_GAP_S` of silence), the first ``options.window_s`` seconds, padded."""
    gap = np.zeros(int(WINDOW_GAP_S * SAMPLE_RATE), dtype=np.float32)
    limit = int(options.window_s * SAMPLE_RATE)
    labels = sorted(set(speakers))
    windows = []
    for speaker in labels:
        mine = sorted((c for c, s in zip(clips, speakers, strict=True) if s == speaker),
                      key=lambda c: c.start)  # fmt: skip
        parts = [p for c in mine for p in (_cut(samples, c), gap)]
        windows.append(np.concatenate(parts)[:limit].astype(np.float32, copy=False))
    out: dict[int, Distribution] = {}
    for first in range(0, len(labels), options.batch_size):
        chunk = windows[first : first + options.batch_size]
        feats = [_features(model, w, padded=True) for w in chunk]
        found = _distributions(model, feats, options.candidates, options.weights)
        out.update(zip(labels[first : first + options.batch_size], found, strict=True))
    return out


def _top(dist: Distribution, method: str, keep: int = 3, also: str = "") -> LanguageGuess:
    """The likeliest language of ``dist``, its runner-up, and as ``alternatives`` the rest of
    the ``keep`` likeliest and ``also`` (a speaker's majority language; "" = none)."""
    ranked = sorted(dist, key=lambda k: -dist[k])
    others = [k for k in dict.fromkeys([*ranked[1:keep], also]) if k and k != ranked[0]]
    alternatives = tuple((k, round(dist.get(k, 0.0), 4)) for k in others)
    if len(ranked) < 2:
        return LanguageGuess(ranked[0], round(dist[ranked[0]], 4), method,
                             alternatives=alternatives)  # fmt: skip
    first, second = ranked[0], ranked[1]
    return LanguageGuess(first, round(dist[first], 4), method, second, round(dist[second], 4),
                         alternatives)  # fmt: skip


FLOOR = 1e-4  # the least probability a language is given before taking its logarithm


def speaker_priors(
    dists: Sequence[Distribution], speakers: Sequence[int], durations: Sequence[float]
) -> dict[int, Distribution]:
    """Per speaker, the duration-weighted mean of its clips' distributions (a mixture)."""
    out: dict[int, Distribution] = {}
    for speaker in set(speakers):
        mine = [i for i, s in enumerate(speakers) if s == speaker]
        weight = sum(durations[i] for i in mine) or 1.0
        prior: Distribution = {}
        for i in mine:
            for lang, p in dists[i].items():
                prior[lang] = prior.get(lang, 0.0) + p * durations[i] / weight
        out[speaker] = prior
    return out


def combine(dist: Distribution, prior: Distribution, weight: float) -> Distribution:
    """``dist`` times ``prior`` to the power ``weight`` (a sum of log-probabilities), normalised."""
    if weight < 0:
        raise LanguageError(f"speaker weight {weight}: must be 0 or more")
    scores = {
        k: np.log(max(p, FLOOR)) + weight * np.log(max(prior.get(k, 0.0), FLOOR))
        for k, p in dist.items()
    }
    top = max(scores.values(), default=0.0)
    joint = {k: float(np.exp(v - top)) for k, v in scores.items()}
    total = sum(joint.values()) or 1.0
    return {k: v / total for k, v in joint.items()}


def _pool(
    guesses: list[LanguageGuess],
    dists: list[Distribution],
    speakers: list[int],
    priors: Mapping[int, Distribution],
    weight: float,
    keep: int = 3,
    majority: bool = True,
) -> list[LanguageGuess]:
    """Every clip: its distribution combined with its speaker's (:func:`combine`); with
    ``majority`` the speaker's likeliest language is among the clip's alternatives."""
    out = []
    for guess, dist, speaker in zip(guesses, dists, speakers, strict=True):
        prior = priors[speaker]
        also = max(prior, key=lambda k: prior[k]) if majority and prior else ""
        pooled = _top(combine(dist, prior, weight), guess.method, keep, also)
        if pooled.language != guess.language:
            pooled = dataclasses.replace(pooled, method="speaker")
        out.append(pooled)
    return out


def _features(model: WhisperModel, audio: FloatArray, padded: bool) -> FloatArray:
    from faster_whisper.audio import pad_or_trim

    features = model.feature_extractor(audio)  # shape: (n_mels, frames)
    if padded:
        return np.asarray(pad_or_trim(features), dtype=np.float32)  # shape: (n_mels, 3000)
    frames = min(features.shape[-1] + features.shape[-1] % 2, 3000)  # the encoder halves it
    return np.asarray(pad_or_trim(features, frames), dtype=np.float32)


FRAMES_PER_S = 100  # Whisper's log-mel frames: a 10 ms hop


def _distributions(
    model: WhisperModel,
    features: list[FloatArray],
    candidates: Sequence[str],
    weights: Sequence[tuple[str, float]] = (),
) -> list[Distribution]:
    width = max(f.shape[-1] for f in features)
    batch = np.stack([np.pad(f, ((0, 0), (0, width - f.shape[-1]))) for f in features])
    encoded = model.encode(np.ascontiguousarray(batch))  # shape: (batch, width // 2, d_model)
    encoder_tally.add(encoder_tally.LANGUAGE, len(features), len(features) * width / FRAMES_PER_S)
    out = []
    for result in model.model.detect_language(encoded):
        probs = {token[2:-2]: float(p) for token, p in result}
        if candidates:
            probs = {k: v for k, v in probs.items() if k in candidates} or probs
        for lang, factor in weights:
            if lang in probs:
                probs[lang] *= factor
        total = sum(probs.values()) or 1.0
        out.append({k: v / total for k, v in probs.items()})
    return out


def _cut(samples: Samples, clip: Region) -> FloatArray:
    return np.asarray(samples[sample_index(clip.start) : sample_index(clip.end)])


def _cut_length(samples: Samples, clip: Region) -> int:
    """The number of samples :func:`_cut` gives, without reading them."""
    cut = slice(sample_index(clip.start), sample_index(clip.end))
    return len(range(*cut.indices(len(samples))))


def _detect(
    model: WhisperModel,
    samples: Samples,
    clips: list[Region],
    options: DetectOptions,
    padded: bool,
) -> list[Distribution]:
    """Each clip's language distribution, independent of the other clips.

    Clips are encoded together only when their features have the same number of frames
    (up to ``options.batch_size`` at once): padding a clip to a longer neighbour changes
    what Whisper's encoder hears in it (its self-attention spans the padding), so a clip's
    language would depend on which clips share its batch. Same-length batches give the
    same distributions as each clip alone; most clips differ in length, so they are
    encoded one by one, which costs no more CPU than padded batches (README "Languages").
    A clip under ``options.min_s`` is first given silence (zeros in the audio, what Whisper
    was trained on) up to that length, the same whatever its neighbours.
    """
    least = round(options.min_s * SAMPLE_RATE)
    groups: dict[int, list[int]] = {}  # padded: all one length; else by sample count
    for i, c in enumerate(clips):
        length = 0 if padded else max(_cut_length(samples, c), least)
        groups.setdefault(length, []).append(i)
    batches = [
        members[first : first + options.batch_size]
        for length in sorted(groups)
        for members in [groups[length]]
        for first in range(0, len(members), options.batch_size)
    ]

    def cut(batch: list[int]) -> list[FloatArray]:  # read here, in order (a streamed WAV)
        cuts = [_cut(samples, clips[i]) for i in batch]
        if not padded:  # silence after a short clip, up to the least length
            cuts = [np.pad(c, (0, max(least - len(c), 0))) for c in cuts]
        return cuts

    def heard(cuts: list[FloatArray]) -> list[Distribution]:
        feats = [_features(model, c.astype(np.float32, copy=False), padded) for c in cuts]
        return _distributions(model, feats, options.candidates, options.weights)

    dists: list[Distribution] = [{} for _ in clips]
    found = side_by_side((cut(batch) for batch in batches), heard)  # each batch on its own
    for batch, batch_dists in zip(batches, found, strict=True):
        for i, dist in zip(batch, batch_dists, strict=True):
            dists[i] = dist
    return dists


def choose_model(pinned: str, per_language: Mapping[str, str], language: str) -> str:
    """The Whisper for ``language``: the operator's map, else the pinned model, else defaults."""
    chosen = per_language.get(language)
    if chosen:
        return chosen
    return pinned or DEFAULT_MODELS.get(language, DEFAULT_MODEL)
