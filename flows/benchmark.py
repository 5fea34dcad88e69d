"""``convoice bench``: quality and speed of the engine against baselines, in one run.

Speed is reported as ratios against baselines timed in the same run on the
same audio (these machines are noisy): faster-whisper alone at its fastest
setting (batched, greedy, no word timestamps), and the standard pieces run
one after another on whole files (pyannote's pipeline at its defaults, then
faster-whisper, then resemblyzer per turn). Quality is measured on a corpus
generated from distinct voices, where one speaker talks in several episodes,
and on the real two-speaker recording that ships with pyannote.audio.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from convoice.config import Settings, load_settings
from convoice.flows.ingest import ingest_flow
from convoice.models import evaluation, labelling
from convoice.models.metrics import diarization_error_rate, read_rttm
from convoice.storage import Store
from convoice.tasks import loaders, samples, stages
from convoice.tasks.audio import decode


@dataclass
class BenchmarkResult:
    corpus: str
    audio_seconds: float
    whisper_fastest_s: float = 0.0
    naive_s: float = 0.0
    naive_steps: dict[str, float] = field(default_factory=dict)
    flow_s: float = 0.0
    flow_stages: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    registry_match_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ratio_to_whisper(self) -> float:
        return self.flow_s / self.whisper_fastest_s if self.whisper_fastest_s else float("nan")

    @property
    def ratio_to_naive(self) -> float:
        return self.flow_s / self.naive_s if self.naive_s else float("nan")

    def to_json(self) -> str:
        data = asdict(self)
        data["ratio_to_whisper"] = self.ratio_to_whisper
        data["ratio_to_naive"] = self.ratio_to_naive
        return json.dumps(data, indent=2)

    def render(self) -> str:
        a = self.audio_seconds
        lines = [
            f"corpus: {self.corpus}, {a:.1f} s of audio",
            "speed (wall s, real-time factor on this machine):",
            f"  faster-whisper alone, batched, fastest: {self.whisper_fastest_s:8.1f} s  "
            f"RTF {self.whisper_fastest_s / a:.3f}",
            (
                f"  naive pieces one after another:        {self.naive_s:8.1f} s  "
                f"RTF {self.naive_s / a:.3f}  "
                + " ".join(f"{k} {v:.1f}" for k, v in self.naive_steps.items())
                if self.naive_s
                else "  naive pieces one after another:        not run (--no-naive)"
            ),
            f"  convoice ingest flow (everything):      {self.flow_s:8.1f} s  "
            f"RTF {self.flow_s / a:.3f}",
            f"  flow / whisper alone = {self.ratio_to_whisper:.2f} (bar <= 1.5); "
            f"flow / naive = {self.ratio_to_naive:.2f} (bar < 1)",
            "  flow stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.flow_stages.items()),
            "quality:",
        ]
        lines += [f"  {k}: {v:.4f}" for k, v in self.quality.items()]
        lines.append(
            "identity matching of one 3-speaker recording against a registry of N speakers: "
            + ", ".join(f"N={k}: {v:.1f} ms" for k, v in self.registry_match_ms.items())
        )
        return "\n".join(lines)


def _warm_up() -> None:
    """Load every model and start Prefect's local server before anything is timed."""
    from prefect import flow

    @flow(name="convoice-warm-up")
    def warm() -> None:
        return None

    warm()
    loaders.segmentation_model()
    loaders.voice_encoder()
    loaders.whisper_model()


def time_whisper_fastest(wavs: list[Path]) -> float:
    """faster-whisper alone on the same audio: batched, greedy, VAD, no word timestamps."""
    from faster_whisper import BatchedInferencePipeline

    pipeline = BatchedInferencePipeline(loaders.whisper_model())
    total = 0.0
    for wav in wavs:
        samples = decode(wav).samples
        start = time.perf_counter()
        segments, _ = pipeline.transcribe(samples, batch_size=8, beam_size=1, vad_filter=True)
        list(segments)
        total += time.perf_counter() - start
    return total


def time_naive(wavs: list[Path]) -> tuple[float, dict[str, float]]:
    """pyannote's pipeline at its defaults, then faster-whisper, then resemblyzer per turn."""
    from convoice.tasks.pipelines import naive_baseline, offline_pipeline

    pipeline = offline_pipeline()  # built once, like the engine's models
    steps: dict[str, float] = {}
    total = 0.0
    for wav in wavs:
        samples = decode(wav).samples
        start = time.perf_counter()
        result = naive_baseline(samples, pipeline)
        total += time.perf_counter() - start
        for k, v in result.step_seconds.items():
            steps[k] = round(steps.get(k, 0.0) + v, 2)
    return total, steps


def time_registry_matching(sizes: tuple[int, ...] = (1_000, 10_000, 100_000)) -> dict[str, float]:
    """Matching cost grows with the number of known speakers, never with past clips."""
    from convoice.models.clustering import normalize
    from convoice.models.registry import match_speakers

    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for n in sizes:
        known = normalize(rng.normal(size=(n, 256)).astype(np.float32))
        ids = [f"spk_{i}" for i in range(n)]
        mine = normalize(rng.normal(size=(3, 256)).astype(np.float32))
        match_speakers("warm-up", mine, ids, known, 0.8, 0.72, 0.05)
        start = time.perf_counter()
        for _ in range(5):
            match_speakers("rec", mine, ids, known, 0.8, 0.72, 0.05)
        out[str(n)] = round((time.perf_counter() - start) / 5 * 1000, 2)
    return out


def run_benchmark(
    quick: bool = False, naive: bool = True, workdir: str | None = None
) -> BenchmarkResult:
    """Generate (or reuse) the corpus, time the baselines and the flow, score the labels."""
    root = Path(workdir) if workdir else loaders.cache_dir() / ("bench-quick" if quick else "bench")
    corpus = (
        samples.make_corpus(root / "corpus", n_episodes=4, turns_per_episode=10, seed=3)
        if quick
        else samples.make_corpus(root / "corpus", n_episodes=8, turns_per_episode=24, seed=1)
    )
    wavs = [ep.audio_path for ep in corpus.episodes]
    audio_s = sum(ep.duration for ep in corpus.episodes)
    desc = f"{len(corpus.episodes)} episodes, {len(corpus.speakers)} voices"
    result = BenchmarkResult(corpus=desc, audio_seconds=audio_s)
    _warm_up()
    result.whisper_fastest_s = time_whisper_fastest(wavs)
    if naive:
        result.naive_s, result.naive_steps = time_naive(wavs)
    home = tempfile.mkdtemp(prefix="convoice-bench-")
    with samples.serve_directory(corpus.root) as base_url:
        sources = Path(home) / "sources.csv"
        samples.write_sources_csv(corpus, base_url, sources)
        start = time.perf_counter()
        report = ingest_flow(sources_file=str(sources), home=home)
        result.flow_s = time.perf_counter() - start
    result.flow_stages = report.stage_seconds
    store = Store.open(load_settings(home=home))
    result.quality = score_corpus(store, corpus)
    result.quality["der_pyannote_sample_engine"] = engine_der(load_settings(home=home))
    if naive:
        result.quality["der_pyannote_sample_naive"] = naive_der()
    result.registry_match_ms = time_registry_matching()
    return result


def score_corpus(store: Store, corpus: samples.Corpus) -> dict[str, float]:
    """Quality of the labels in ``store`` against the corpus truth."""
    by_name = {ep.media_path.name: ep for ep in corpus.episodes}
    truth: dict[str, list[evaluation.RefTurn]] = {}
    for rec in store.recordings().to_pylist():
        episode = by_name.get(rec["url"].rsplit("/", 1)[-1])
        if episode is not None:
            truth[rec["recording_id"]] = [
                evaluation.RefTurn(t.start, t.end, t.speaker, t.text) for t in episode.turns
            ]
    raw = sum(ep.duration for ep in corpus.episodes)
    return evaluation.score(store.clips().to_pylist(), truth, raw)


def engine_der(settings: Settings) -> float:
    """DER of the engine's own diarization on pyannote's real two-speaker sample."""
    wav, rttm = samples.pyannote_sample()
    audio = decode(wav)
    seg = stages.segment.fn(audio, settings)
    vectors = stages.embed_speakers.fn(audio, seg)
    empty = np.zeros((0, 256), dtype=np.float32)
    speakers, _ = stages.identify.fn("sample", seg, vectors, [], empty, settings)
    return diarization_error_rate(read_rttm(str(rttm)), labelling.diarization_output(seg, speakers))


def naive_der() -> float:
    """DER of pyannote's pipeline at its default settings on the same sample."""
    from convoice.tasks.pipelines import diarize_whole, offline_pipeline

    wav, rttm = samples.pyannote_sample()
    turns = diarize_whole(offline_pipeline(), decode(wav).samples)
    return diarization_error_rate(read_rttm(str(rttm)), turns)
