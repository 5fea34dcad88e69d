"""``convoice bench --service``: what the voice bank's synthesisers cost and how they sound.

Three measurements in one run, on this machine:

- latency of synthesising a 20-word sentence per synthesiser (p50 and p95 over
  ``requests`` calls after one warm-up call, synthesis only: the time a running
  service spends before it measures the result);
- speaker similarity to a reference voice of "matched" speech against the plain
  nearest shipped voice on the same references and sentences (the match must
  gain). References: real recorded people (the LibriVox reader of Debian's
  ``pocketsphinx-testdata``, the two speakers of the recording that ships in
  pyannote.audio) and the dataset speakers of the release;
- Whisper's word error rate of each synthesiser's output on the sentences.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.models.metrics import WerCount, wer_count
from convoice.service import speak as sp
from convoice.service.bank import Bank, embed, load_bank, score, to_rate

if TYPE_CHECKING:
    from convoice.config import Settings

# Original 20-word sentences written for this benchmark.
SENTENCES = (
    "The old ferry leaves the harbour at seven every morning and returns late in the evening"
    " with very tired passengers.",
    "My sister planted tomatoes and beans behind the house because the soil there gets the most"
    " sunshine all summer long.",
    "We waited almost an hour for the bus, so next time we will simply walk across the"
    " city park instead.",
    "The library keeps its oldest maps in a cool dark room that visitors may enter only with a"
    " trained guide.",
    "After the storm the whole village helped to clear the fallen branches from the roads and"
    " the old school yard.",
)
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


@dataclass
class ServiceBenchmark:
    """The figures, ready to print or save."""

    requests: int
    latency: dict[str, dict[str, float]] = field(default_factory=dict)  # synthesiser -> p50, p95
    wer: dict[str, float] = field(default_factory=dict)
    similarity: list[dict[str, Any]] = field(default_factory=list)  # per reference

    def render(self) -> str:
        lines = [f"latency of a 20-word sentence, synthesis only ({self.requests} requests each):"]
        for name, figures in self.latency.items():
            lines.append(
                f"  {name:<28} p50 {figures['p50']:.2f} s  p95 {figures['p95']:.2f} s"
                f"  (audio {figures['audio_s']:.1f} s)  Whisper WER {self.wer.get(name, 0):.3f}"
            )
        lines.append("speaker similarity to the reference: plain nearest shipped voice -> matched")
        for row in self.similarity:
            gain = row["matched"] - row["plain"]
            lines.append(
                f"  {row['reference']:<28} {row['base']:<14} {row['plain']:.3f}"
                f" -> {row['matched']:.3f} ({gain:+.3f})"
            )
        if self.similarity:
            plain = float(np.mean([r["plain"] for r in self.similarity]))
            matched = float(np.mean([r["matched"] for r in self.similarity]))
            lines.append(f"  mean {plain:.3f} -> {matched:.3f} ({matched - plain:+.3f})")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def real_references() -> list[sp.Target]:
    """Recorded people that ship on this machine: the LibriVox reader, pyannote's two speakers."""
    import soundfile

    targets = []
    wavs = sorted(LIBRIVOX.glob("*.wav"))
    if wavs:
        pieces = [to_rate(*_mono(soundfile.read(p, dtype="float32"))) for p in wavs]
        audio = np.concatenate(pieces)
        targets.append(sp.Target("librivox reader (real)", embed(audio), audio))
    targets += _pyannote_speakers()
    return targets


def _mono(read: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    data, rate = read
    return (data if data.ndim == 1 else data[:, 0]), rate


def _pyannote_speakers() -> list[sp.Target]:
    import importlib.util

    import soundfile

    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        return []
    sample = Path(next(iter(spec.submodule_search_locations))) / "sample"
    if not (sample / "sample.wav").is_file():
        return []
    audio, rate = _mono(soundfile.read(sample / "sample.wav", dtype="float32"))
    audio = to_rate(audio, rate)
    turns: dict[str, list[np.ndarray]] = {}
    for line in (sample / "sample.rttm").read_text().splitlines():
        parts = line.split()
        start, length, who = float(parts[3]), float(parts[4]), parts[7]
        turns.setdefault(who, []).append(audio[int(start * 16000) : int((start + length) * 16000)])
    out = []
    for who, pieces in sorted(turns.items()):
        joined = np.concatenate(pieces)
        if len(joined) >= 3 * 16000:
            out.append(sp.Target(f"pyannote sample {who} (real)", embed(joined), joined))
    return out


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_synthesiser(
    bank: Bank, target: sp.Target, mode: str, settings: Settings, requests: int
) -> tuple[dict[str, float], float, str]:
    """p50/p95 synthesis time, Whisper WER over the sentences, and the synthesiser's name."""
    times, audio_s, name = [], [], ""
    counts = WerCount(0, 0)
    sp.synthesise(bank, target, SENTENCES[0], "en", mode, settings)  # warm: models, profiles
    for i in range(requests):
        text = SENTENCES[i % len(SENTENCES)]
        started = time.perf_counter()
        speech = sp.synthesise(bank, target, text, "en", mode, settings)
        times.append(time.perf_counter() - started)
        audio_s.append(len(speech.samples) / speech.rate)
        name = speech.synthesiser if speech.kind != "shipped" else speech.voice
        if i < len(SENTENCES):
            heard = score(
                to_rate(speech.samples, speech.rate), target.embedding, text, "en", settings
            )
            counts = counts + wer_count(text, heard.heard)
    figures = {"p50": _percentile(times, 50), "p95": _percentile(times, 95),
               "audio_s": float(np.mean(audio_s))}  # fmt: skip
    return figures, counts.wer, name


def compare_match(bank: Bank, targets: list[sp.Target], settings: Settings) -> list[dict[str, Any]]:
    """Similarity of plain nearest-shipped and matched speech to each reference."""
    rows = []
    for target in targets:
        plain, matched, base = [], [], ""
        for text in SENTENCES[:2]:
            near = sp.synthesise(bank, target, text, "en", "nearest", settings)
            moved = sp.synthesise(bank, target, text, "en", "match", settings)
            base = near.voice
            plain.append(float(np.dot(embed(to_rate(near.samples, near.rate)), target.embedding)))
            matched.append(
                float(np.dot(embed(to_rate(moved.samples, moved.rate)), target.embedding))
            )
        rows.append({"reference": target.name, "base": base, "plain": float(np.mean(plain)),
                     "matched": float(np.mean(matched))})  # fmt: skip
    return rows


def run_service_benchmark(
    settings: Settings, release: str | None = None, requests: int = 20
) -> ServiceBenchmark:
    """Measure every synthesiser the service has (see the module)."""
    bank = load_bank(settings, release)
    result = ServiceBenchmark(requests)
    references = real_references() + [
        sp.bank_target(bank, v.voice_id) for v in bank.voices.values() if v.kind == "dataset"
    ]
    runs: list[tuple[sp.Target, str]] = [
        (sp.bank_target(bank, voice), "nearest")
        for voice in ("espeak-ng:en", "flite:slt", "piper:joe")
        if voice in bank.voices
    ]
    if references:
        runs.append((references[0], "match"))
        if sp.syn.latest_vits(settings) is not None or settings.service.checkpoint_dir:
            runs.append((references[0], "clone"))
    for target, mode in runs:
        figures, wer, name = time_synthesiser(bank, target, mode, settings, requests)
        result.latency[name], result.wer[name] = figures, wer
    result.similarity = compare_match(bank, references, settings)
    return result
