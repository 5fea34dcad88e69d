"""Score a trained TTS model on the heldout clips of its export.

Evaluation follows zero-shot TTS papers: each heldout clip's text is
synthesized from its speaker's mean training embedding; speaker similarity is
the resemblyzer cosine between the synthesized audio and that embedding, and
intelligibility the word error rate of the engine's Whisper against the text.
The same two numbers on the real heldout clips are the ceiling.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convoice.engines import loaders
from convoice.models import tts_data
from convoice.models.asr import AsrOptions, transcribe_clips
from convoice.models.embed import embed_regions
from convoice.models.metrics import WerCount, wer_count
from convoice.records import SAMPLE_RATE as ENCODER_RATE
from convoice.records import Region
from convoice.training.tts import load_model, synthesize
from convoice.training.tts_export import read_export, resample

if TYPE_CHECKING:
    from convoice.config import Settings


@dataclass(frozen=True)
class EvalItem:
    """One heldout clip: its real audio and the synthesized one, scored."""

    file: str
    speaker: str
    text: str
    similarity_synth: float
    similarity_real: float
    transcript_synth: str
    transcript_real: str
    wer_synth: float
    wer_real: float


@dataclass(frozen=True)
class TtsEvaluation:
    """Speaker similarity and WER of synthesized speech, and of the real clips (the ceiling)."""

    synthesized: tts_data.SpeechScores
    reference: tts_data.SpeechScores
    items: list[EvalItem]
    skipped: int  # heldout clips of speakers without training clips

    def metrics(self) -> dict[str, float]:
        return {
            "eval/similarity_synth": self.synthesized.similarity,
            "eval/wer_synth": self.synthesized.wer,
            "eval/similarity_real": self.reference.similarity,
            "eval/wer_real": self.reference.wer,
            "eval/n": float(self.synthesized.n),
        }

    def summary(self) -> str:
        s, r = self.synthesized, self.reference
        return (
            f"evaluation on {s.n} heldout sentences ({s.words} words): synthesized speaker"
            f" similarity {s.similarity:.3f}, WER {s.wer:.3f}; real clips (ceiling) similarity"
            f" {r.similarity:.3f}, WER {r.wer:.3f}"
            + (
                f"; {self.skipped} heldout clips of speakers without training clips"
                if self.skipped
                else ""
            )
        )


def read_eval_list(data: Path) -> list[dict[str, str]]:
    """The export's ``eval.csv`` rows: file, speaker, text, language."""
    with (data / "eval.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="|", quoting=csv.QUOTE_NONE))


def asr_language(settings: Settings, rows: list[dict[str, str]]) -> str:
    """The language Whisper is told: ``[asr] language``, else the clips' one language, else ""."""
    languages = {row.get("language") or "" for row in rows}
    if settings.asr.language:
        return settings.asr.language
    return languages.pop() if len(languages) == 1 else ""


@dataclass(frozen=True)
class _Scores:
    """Per clip: cosine to its reference embedding, Whisper's transcript, its word errors."""

    similarities: list[float]
    heard: list[str]
    counts: list[WerCount]

    def total(self) -> WerCount:
        return sum(self.counts, WerCount(0, 0))

    def speech(self) -> tts_data.SpeechScores:
        total = self.total()
        return tts_data.SpeechScores.of(self.similarities, total.errors, total.words)


def _scores(
    settings: Settings,
    audios: list[np.ndarray],
    refs: list[np.ndarray],
    texts: list[str],
    language: str,
) -> _Scores:
    """Cosine to each reference embedding, Whisper's transcript and its word errors.

    Whisper is told the ``language`` (as zero-shot TTS papers score intelligibility),
    so that noise is not taken for another language.
    """
    gap = np.zeros(ENCODER_RATE // 2, dtype=np.float32)
    regions, pieces, cursor = [], [], 0.0
    for audio in audios:
        pieces += [audio, gap]
        regions.append(Region(cursor, cursor + len(audio) / ENCODER_RATE))
        cursor += (len(audio) + len(gap)) / ENCODER_RATE
    samples = np.concatenate(pieces).astype(np.float32)
    embeddings = embed_regions(loaders.voice_encoder(), samples, list(regions))
    similarities = [tts_data.cosine(e, r) for e, r in zip(embeddings, refs, strict=True)]
    asr = settings.asr
    whisper = loaders.whisper_model(asr.model, asr.compute_type, asr.cpu_threads)
    options = AsrOptions(asr.batch_size, asr.beam_size, language)
    transcripts = transcribe_clips(whisper, samples, regions, options)
    heard = [t.text if t is not None else "" for t in transcripts]
    counts = [wer_count(text, hyp) for text, hyp in zip(texts, heard, strict=True)]
    return _Scores(similarities, heard, counts)


def evaluate(settings: Settings, checkpoint: Path, data: Path) -> TtsEvaluation | None:
    """Score the model at ``checkpoint`` on the heldout clips of the export ``data``.

    At most ``[tts] eval_clips`` clips; None when the export has no heldout clip
    of a speaker with training clips (there is nothing honest to evaluate on).
    """
    read_export(data)
    speakers = json.loads((data / "speakers.json").read_text())
    rows = read_eval_list(data)
    usable = [row for row in rows if row["speaker"] in speakers][: settings.tts.eval_clips]
    if not usable:
        return None
    model = load_model(checkpoint)
    rate = int(model.config.audio.sample_rate)
    refs = [np.asarray(speakers[row["speaker"]]["embedding"], np.float32) for row in usable]
    texts = [row["text"] for row in usable]
    synth = [
        resample(synthesize(model, row["text"], ref), rate, ENCODER_RATE)
        for row, ref in zip(usable, refs, strict=True)
    ]
    real = [_real_audio(data / row["file"]) for row in usable]
    language = asr_language(settings, usable)
    synth_scores = _scores(settings, synth, refs, texts, language)
    real_scores = _scores(settings, real, refs, texts, language)
    return TtsEvaluation(
        synthesized=synth_scores.speech(),
        reference=real_scores.speech(),
        items=_items(usable, synth_scores, real_scores),
        skipped=len([row for row in rows if row["speaker"] not in speakers]),
    )


def _real_audio(path: Path) -> np.ndarray:
    """A heldout clip of the export, at the encoder's rate."""
    import soundfile

    audio, real_rate = soundfile.read(path, dtype="float32")
    return resample(audio, real_rate, ENCODER_RATE)


def _items(rows: list[dict[str, str]], synth: _Scores, real: _Scores) -> list[EvalItem]:
    """One scored item per heldout clip, rounded as the report shows it."""
    return [
        EvalItem(
            row["file"],
            row["speaker"],
            row["text"],
            round(ss, 4),
            round(sr, 4),
            hs,
            hr,
            round(ws.wer, 4),
            round(wr.wer, 4),
        )
        for row, ss, sr, hs, hr, ws, wr in zip(
            rows,
            synth.similarities,
            real.similarities,
            synth.heard,
            real.heard,
            synth.counts,
            real.counts,
            strict=True,
        )
    ]
