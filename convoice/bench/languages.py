"""``convoice bench --languages``: language per clip and Whisper per language, in one run.

Ingests the multilingual development corpus (:mod:`convoice.synth.multilingual`)
with the engine's settings and reports per reference language: clip language
accuracy, WER (CER for Chinese) of auto-accepted clips and of all clips, and
the shares of speech auto-accepted and sent to review. On the same clips it
then times and scores the ways to detect a clip's language, and transcribes
them again with each Whisper model asked for (routing as the engine does it),
so quality and cost of the models compare within one run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from convoice.config import Settings, load_settings
from convoice.engines import loaders
from convoice.flows.ingest import run_ingest
from convoice.media.audio import decode
from convoice.media.tracks import choose_audio_track, extract_audio
from convoice.models import asr, lang_eval, language, routing
from convoice.records import Region, ReviewReason
from convoice.storage import Store
from convoice.synth import multilingual, samples
from convoice.synth.serve import BENCH_PORT, serve_preferring, served_note, write_sources_csv

Row = dict[str, Any]
WER_BAR = 0.08
# The ways to detect a clip's language that the benchmark compares (same clips, same model).
# The padded ways ("padded", "short+padded": a 30 s encoder pass per clip) were compared
# here before (README "Languages": under a point more right at 7-17 times the cost) and are left out
# to keep the run short.
OPERATOR = "short, speaker, [asr] languages = roadmap + real (operator)"
DETECTORS: dict[str, language.DetectOptions] = {
    "short only": language.DetectOptions(min_probability=0.0, pool_speakers=False),
    # the rule before: the speaker's prior the mean of its clips' distributions, no weights
    "short, speaker, no weights (before)": language.DetectOptions(weights=()),
    "short, speaker, la x 0.1 (engine default)": language.DetectOptions(),
    "short, speaker's 30 s window, weight 1 (opt-in)": language.DetectOptions(
        window_s=30.0, speaker_weight=1.0
    ),
    # an operator setting, not the default: `[asr] languages` = the roadmap's eleven and
    # the real people's (compare_detection adds the corpus's languages outside the roadmap)
    OPERATOR: language.DetectOptions(candidates=multilingual.ROADMAP),
}


@dataclass
class LanguageBenchmark:
    corpus: str
    audio_seconds: float
    flow_s: float = 0.0
    engine: dict[str, dict[str, float]] = field(default_factory=dict)  # language -> figures
    accuracy: dict[str, float] = field(default_factory=dict)  # episode kind -> clip accuracy
    detection: dict[str, dict[str, float]] = field(default_factory=dict)  # way -> acc, s
    models: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    model_seconds: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    suggested: dict[str, str] = field(default_factory=dict)
    bars: dict[str, dict[str, float]] = field(default_factory=dict)  # language -> fitted bar
    served_on: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def render(self) -> str:
        lines = [
            f"corpus: {self.corpus}, {self.audio_seconds:.0f} s of audio; "
            f"ingest flow {self.flow_s:.0f} s (machine shared: compare ratios only)",
            served_note(self.served_on),
            "clip language right: " + ", ".join(f"{k} {v:.1%}" for k, v in self.accuracy.items()),
            "per language (engine as configured; WER = CER for zh):",
            f"  {'lang':5} {'clips':>5} {'lang ok':>8} {'WER acc':>8} {'WER all':>8} "
            f"{'accepted':>9} {'review':>7}",
        ]
        for lang, f in self.engine.items():
            lines.append(
                f"  {lang:5} {f['clips']:5.0f} {f['language_accuracy']:8.1%} "
                f"{_pct(f, 'wer_accepted')} {_pct(f, 'wer_all')} "
                f"{f['accepted_share']:9.1%} {f['review_share']:7.1%}"
            )
        lines.append("language detection on the same clips (Whisper base):")
        for way, f in self.detection.items():
            lines.append(f"  {way:52} right {f['accuracy']:6.1%}  {f['seconds']:7.1f} s")
        lines += self._render_bars()
        lines += self._render_models()
        return "\n".join(lines)

    def _render_bars(self) -> list[str]:
        lines = [
            f"raw transcript bars fitted on these clips (accepted WER <= {WER_BAR:.0%}; "
            "[routing] transcript_confidence_by_language, fit on --split tune only):"
        ]
        for lang, f in self.bars.items():
            share = f["accepted_words"] / f["words"] if f["words"] else 0.0
            bar = f"{f['bar']:.2f}" if f["bar"] == f["bar"] else "none"
            lines.append(
                f"  {lang:5} bar {bar:>4}  WER {_pct(f, 'wer').strip():>6} "
                f"on {share:6.1%} of the words"
            )
        return lines

    def _render_models(self) -> list[str]:
        lines = ["models on the same clips and languages (WER acc / WER all / accepted):"]
        for name, why in self.unavailable.items():
            lines.append(f"  {name}: unavailable: {why}")
        for name, per in self.models.items():
            lines.append(f"  {name}: {self.model_seconds[name]:.1f} s")
            for lang, f in per.items():
                lines.append(
                    f"    {lang:5} {_pct(f, 'wer_accepted')} {_pct(f, 'wer_all')} "
                    f"{f['accepted_share']:9.1%}"
                )
        if self.suggested:
            lines.append("suggested [asr] models: " + json.dumps(self.suggested))
        return lines


def _pct(figures: Mapping[str, float], key: str) -> str:
    value = figures.get(key)
    return f"{value:8.1%}" if value is not None and value == value else f"{'-':>8}"


def _figures(scores: Mapping[str, lang_eval.LanguageScore]) -> dict[str, dict[str, float]]:
    out = {}
    for lang in [*multilingual.ROADMAP, *sorted(set(scores) - set(multilingual.ROADMAP))]:
        s = scores.get(lang)
        if s is None:
            continue
        out[lang] = {
            "clips": float(s.clips),
            "language_accuracy": s.language_accuracy,
            "wer_accepted": s.wer_accepted.wer if s.wer_accepted.words else float("nan"),
            "wer_all": s.wer_all.wer if s.wer_all.words else float("nan"),
            "accepted_words": float(s.wer_accepted.words),
            "accepted_share": s.accepted_share,
            "review_share": s.review_share,
        }
    return out


@dataclass
class _Recording:
    """One ingested episode: its audio, its clips as stored, their reference sentences."""

    episode_id: str
    samples: Any
    clips: list[Row]
    refs: list[lang_eval.RefSentence]

    @property
    def regions(self) -> list[Region]:
        return [Region(c["start"], c["end"]) for c in self.clips]

    @property
    def speakers(self) -> list[int]:
        labels = sorted({c["recording_speaker"] for c in self.clips})
        return [labels.index(c["recording_speaker"]) for c in self.clips]


def _recordings(store: Store, corpus: samples.Corpus) -> list[_Recording]:
    by_name = {ep.media_path.name: ep for ep in corpus.episodes}
    refs = multilingual.references(corpus)
    clips: dict[str, list[Row]] = {}
    for c in store.clips().to_pylist():
        clips.setdefault(c["recording_id"], []).append(c)
    out = []
    for rec in store.recordings().to_pylist():
        ep = by_name.get(rec["url"].rsplit("/", 1)[-1])
        if ep is not None and rec["recording_id"] in clips:
            mine = sorted(clips[rec["recording_id"]], key=lambda c: c["start"])
            out.append(_Recording(ep.episode_id, ingested_audio(ep.media_path), mine,
                                  refs[ep.episode_id]))  # fmt: skip
    return out


def ingested_audio(media: Path) -> Any:
    """The samples the engine ingested from ``media``: its audio track decoded as the download
    decodes it (for the corpus's MP4s, AAC), not the lossless WAV the corpus was made from.
    Whisper hears a short clip's language differently in the two, so re-detecting on the WAV
    was not re-detecting the clips as ingested (README "Languages")."""
    with tempfile.TemporaryDirectory(prefix="convoice-bench-audio-") as tmp:
        wav = extract_audio(media, choose_audio_track(media), Path(tmp) / "audio.wav")
        return decode(wav).samples


def _accuracy(recs: Sequence[_Recording], rows: Mapping[str, Sequence[Row]]) -> float:
    right = total = 0
    for rec in recs:
        for c in rows[rec.episode_id]:
            total += 1
            right += int(c["language"] == lang_eval.clip_language(c, rec.refs))
    return right / total if total else 0.0


def compare_detection(recs: Sequence[_Recording], model: Any) -> dict[str, dict[str, float]]:
    """Accuracy and seconds of each way in :data:`DETECTORS`, on the same clips (the
    operator's list holds every language the corpus's references speak: an operator lists
    their sources' languages)."""
    spoken = sorted({r.language for rec in recs for r in rec.refs} - set(multilingual.ROADMAP))
    out = {}
    for way, options in DETECTORS.items():
        if way == OPERATOR:
            options = replace(options, candidates=(*multilingual.ROADMAP, *spoken))
        start = time.perf_counter()
        rows = {}
        for rec in recs:
            guesses = language.detect_languages(
                model, rec.samples, rec.regions, options, rec.speakers
            )
            rows[rec.episode_id] = [
                {**c, "language": g.language} for c, g in zip(rec.clips, guesses, strict=True)
            ]
        seconds = time.perf_counter() - start
        out[way] = {"accuracy": _accuracy(recs, rows), "seconds": seconds}
    return out


def _retranscribe(rec: _Recording, whisper: Any, settings: Settings) -> list[Row]:
    """The recording's clips transcribed again by ``whisper``, in their detected languages."""
    guesses = [
        language.LanguageGuess(c["language"] or "en", c["language_probability"] or 0.0, "stored")
        for c in rec.clips
    ]
    options = asr.AsrOptions(settings.asr.batch_size, settings.asr.beam_size)
    found = asr.transcribe_clips(whisper, rec.samples, rec.regions, options, languages=guesses)
    rows = []
    for c, t in zip(rec.clips, found, strict=True):
        other = [r for r in c["review_reasons"] if r not in routing.TEXT_REASONS]
        duration = c["end"] - c["start"]
        mine = (
            routing.transcript_reasons(t, duration, settings.routing)
            if t
            else [ReviewReason.NO_SPEECH]
        )
        words = [{"word": w.word, "start": w.start, "end": w.end} for w in t.words] if t else []
        rows.append({**c, "words": words, "status": routing.clip_status([*other, *mine])})
    return rows


def compare_models(
    recs: Sequence[_Recording], names: Sequence[str], settings: Settings
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, float], dict[str, str]]:
    """Per model: figures per language and seconds, on the same clips and languages."""
    figures, seconds, unavailable = {}, {}, {}
    for name in names:
        try:
            whisper = loaders.whisper_model(
                name, settings.asr.compute_type, settings.asr.cpu_threads
            )
        except loaders.ModelUnavailable as err:
            unavailable[name] = str(err).splitlines()[0][:300]
            continue
        start = time.perf_counter()
        rows = [row for rec in recs for row in _retranscribe(rec, whisper, settings)]
        seconds[name] = time.perf_counter() - start
        truth = {rec.clips[0]["recording_id"]: rec.refs for rec in recs}
        figures[name] = _figures(lang_eval.score_languages(rows, truth))
    return figures, seconds, unavailable


def suggest(models: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, str]:
    """Per language, the cheapest listed model that meets the WER bar (else the best one)."""
    out = {}
    names = list(models)
    for lang in multilingual.ROADMAP:
        scored = [(n, models[n][lang]["wer_accepted"]) for n in names if lang in models[n]]
        scored = [(n, w) for n, w in scored if w == w]
        if not scored:
            continue
        meeting = [n for n, w in scored if w <= WER_BAR]
        out[lang] = meeting[0] if meeting else min(scored, key=lambda x: x[1])[0]
    return out


def write_clips(recs: Sequence[_Recording], path: Path) -> None:
    """Every clip as stored, with its episode, reference language and reference text (JSON
    lines): the material to read wrong-language and badly transcribed clips from."""
    keep = ("recording_id", "start", "end", "recording_speaker", "language",
            "language_probability", "status", "review_reasons", "transcript_score_raw",
            "text")  # fmt: skip
    with path.open("w", encoding="utf-8") as out:
        for rec in recs:
            for c in rec.clips:
                refs = [r for r in rec.refs if r.end > c["start"] and r.start < c["end"]]
                row = {k: c.get(k) for k in keep}
                row |= {
                    "episode_id": rec.episode_id,
                    "reference_language": lang_eval.clip_language(c, rec.refs),
                    "reference_text": " ".join(r.text for r in refs),
                    "word_probabilities": [w.get("probability") for w in c.get("words") or []],
                }
                out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def run_language_benchmark(
    turns: int = 6,
    models: Sequence[str] = ("base", "small"),
    workdir: str | None = None,
    progress: Callable[[str], None] = print,
    half: str = "report",
    quick: bool = False,
    clips_out: Path | None = None,
) -> LanguageBenchmark:
    """Make (or reuse) one half's corpus, ingest it, score it, compare detectors and models.

    ``half``: the voices reported on ("report") or the ones settings may look at
    ("tune"); ``quick``: only the episodes of :data:`multilingual.QUICK`; ``clips_out``:
    write every clip as ingested, with its reference language and text, here (JSON lines).
    """
    root = Path(workdir) if workdir else loaders.cache_dir() / "bench-languages"
    only = multilingual.QUICK if quick else ()
    name = f"corpus-{half}-{turns}" + ("-quick" if quick else "")
    corpus = multilingual.make_corpus(root / name, turns=turns, only=only, half=half)
    audio_s = sum(ep.duration for ep in corpus.episodes)
    spoken = {lang for langs in corpus.metadata["languages"].values() for lang in langs}
    real = [e for e in corpus.episodes if e.episode_id.startswith("real-")]
    desc = (
        f"{len(corpus.episodes)} episodes in {len(spoken)} languages "
        f"({len(real)} of them real people's), {half} half of the voices"
    )
    result = LanguageBenchmark(corpus=desc, audio_seconds=audio_s)
    home = tempfile.mkdtemp(prefix="convoice-bench-lang-")
    progress("ingesting the corpus")
    with serve_preferring(corpus.root, BENCH_PORT) as base_url:
        result.served_on = base_url
        sources = write_sources_csv(corpus, base_url, Path(home) / "sources.csv")
        start = time.perf_counter()
        run_ingest(sources_file=str(sources), home=home)
        result.flow_s = time.perf_counter() - start
    settings = load_settings(home=home)
    recs = _recordings(Store.open(settings), corpus)
    truth = {rec.clips[0]["recording_id"]: rec.refs for rec in recs}
    result.engine = _figures(lang_eval.score_languages([c for r in recs for c in r.clips], truth))
    every = [c for r in recs for c in r.clips]
    fitted = lang_eval.fit_transcript_bars(every, truth, WER_BAR)
    result.bars = {
        lang: {"bar": f.bar if f.bar is not None else float("nan"), "wer": f.wer,
               "accepted_words": float(f.accepted_words), "words": float(f.words)}
        for lang, f in fitted.items()
    }  # fmt: skip
    if clips_out is not None:
        write_clips(recs, clips_out)
    rows = {rec.episode_id: rec.clips for rec in recs}
    mixed = [r for r in recs if not r.episode_id.startswith("mono-")]
    result.accuracy = {
        "all": _accuracy(recs, rows),
        "mixed (interviews, code-switching)": _accuracy(mixed, rows),
        "interviews": _accuracy([r for r in recs if r.episode_id.startswith("interview")], rows),
    }
    real_recs = [r for r in recs if r.episode_id.startswith("real-")]
    if real_recs:
        result.accuracy["real people's interviews"] = _accuracy(real_recs, rows)
    progress("comparing language detection")
    detector = loaders.whisper_model(settings.asr.model, settings.asr.compute_type)
    result.detection = compare_detection(recs, detector)
    progress("comparing models")
    result.models, result.model_seconds, result.unavailable = compare_models(recs, models, settings)
    result.suggested = suggest(result.models)
    shutil.rmtree(home, ignore_errors=True)  # the benchmark's store
    return result
