"""``convoice bench``: quality and speed of the engine against baselines, in one run.

Speed is reported as ratios against baselines timed in the same run on the
same audio (these machines are noisy): faster-whisper alone at its fastest
setting (batched, greedy, no word timestamps), and the standard pieces run
one after another on whole files (pyannote's pipeline at its defaults, then
faster-whisper, then resemblyzer per turn). Quality is measured on a corpus
generated for one half of the voice split (:mod:`convoice.synth.inventory`; the
reporting half by default, ``--split tune`` the other: see
:mod:`convoice.bench.corpus`), or on an operator's own annotated corpus
(``--corpus DIR``), and on the real two-speaker recording that ships with
pyannote.audio. ``--quick`` keeps the small seven-voice corpus of the tests.

``convoice bench --scale`` measures how the engine scales instead: the ingest
flow's throughput on the quick corpus with one thread-pool worker, then a
local Dask cluster of one and two worker processes (ratios to the first, in
the same run; the datasets must come out the same), and the wall time and
peak memory of matching a recording's speakers against N known speakers and
of a release from a clips table of N synthetic rows, each in a fresh process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import numpy as np

from convoice.config import Settings, load_settings
from convoice.engines import loaders
from convoice.flows.ingest import ingest_flow
from convoice.media.audio import decode
from convoice.models import evaluation, labelling
from convoice.models.metrics import diarization_error_rate, read_rttm
from convoice.records import ClipStatus, LabelSource
from convoice.storage import Store
from convoice.synth import samples
from convoice.tasks import stages

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass
class BenchmarkResult:
    corpus: str
    audio_seconds: float
    whisper_fastest_s: float = 0.0
    whisper_words_s: float = 0.0  # the same with word_timestamps=True (--profile)
    process_s: float = 0.0  # `convoice ingest` as a process, start to exit (--profile)
    naive_s: float = 0.0
    naive_steps: dict[str, float] = field(default_factory=dict)
    flow_s: float = 0.0
    flow_stages: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    registry_match_ms: dict[str, float] = field(default_factory=dict)
    reliability: list[dict[str, float]] = field(default_factory=list)
    review: list[dict[str, Any]] = field(default_factory=list)  # evaluation.ReviewRow
    hard_pairs: list[tuple[str, str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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

    def profile_rows(self) -> list[tuple[str, float]]:
        """(what, wall seconds) of the ``--profile`` table, Whisper alone first."""
        rows = [
            ("faster-whisper base int8, batched 8, greedy, VAD, no word timestamps",
             self.whisper_fastest_s),
            ("the same with word_timestamps=True", self.whisper_words_s),
            ("`convoice ingest` as a process (CLI start to exit)", self.process_s),
            ("the flow (in this process, models loaded)", self.flow_s),
        ]  # fmt: skip
        rows += [(f"  {name}", seconds) for name, seconds in self.flow_stages.items()]
        if self.naive_s:
            rows.append(("naive chain (pyannote defaults, Whisper, resemblyzer)", self.naive_s))
        return rows

    def render_profile(self) -> str:
        """The per-stage table of issue 12: seconds and ratio to Whisper alone, one run."""
        base = self.whisper_fastest_s
        lines = [
            f"profile: {self.corpus}, {self.audio_seconds:.1f} s of audio (one run, same audio)",
            f"  {'':<72} {'wall s':>8} {'/ Whisper alone':>16}",
        ]
        for what, seconds in self.profile_rows():
            ratio = f"{seconds / base:16.2f}" if base else f"{'-':>16}"
            lines.append(f"  {what:<72} {seconds:8.1f} {ratio}")
        if self.naive_s:
            lines.append(f"  naive chain / flow = {self.naive_s / self.flow_s:.1f} (bar >= 10)")
        return "\n".join(lines)

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
        if self.reliability:
            lines.append("reliability of speaker_confidence (bin: clips, mean confidence, right):")
            lines += [
                f"  [{b['low']:.1f}, {b['high']:.1f}{']' if b['high'] >= 1 else ')'}: "
                f"{b['clips']:5.0f}  "
                f"{b['mean_confidence']:.3f}  {b['accuracy']:.3f}"
                for b in self.reliability
            ]
        lines += render_review(self.review)
        if self.hard_pairs:
            lines.append(
                "hard pairs (same group, resemblyzer centroid cosine > 0.8): "
                + ", ".join(f"{a}-{b} {c:.2f}" for a, b, c in self.hard_pairs)
            )
        lines += [f"note: {n}" for n in self.notes]
        lines.append(
            "identity matching of one 3-speaker recording against a registry of N speakers: "
            + ", ".join(f"N={k}: {v:.1f} ms" for k, v in self.registry_match_ms.items())
        )
        return "\n".join(lines)


def render_review(rows: list[dict[str, Any]]) -> list[str]:
    """Review share next to precision, per label kind and per reason."""
    if not rows:
        return []

    def pct(x: float | None) -> str:
        return "    -" if x is None else f"{x:5.3f}"

    lines = [
        "review share of speech next to precision (right: labels right among the accepted /",
        "among those sent to review; a reason's labels are its kind's):",
        "  what                              review  accepted  right(acc)  right(review)",
    ]
    for r in rows:
        acc = f"{r['accepted_share']:8.3f}" if not r["what"].startswith("reason:") else "       -"
        lines.append(
            f"  {r['what']:<32} {r['review_share']:7.3f}  {acc}  {pct(r['accepted_right']):>10}"
            f"  {pct(r['review_right']):>13}"
        )
    return lines


def _warm_up() -> None:
    """Load every model and start Prefect's local server before anything is timed."""
    from prefect import flow

    @flow(name="convoice-warm-up")
    def warm() -> None:
        return None

    warm()
    loaders.segmentation_model()
    loaders.voice_encoder()
    loaders.campplus_model()
    loaders.whisper_model()


def time_whisper_fastest(wavs: list[Path], words: bool = False) -> float:
    """faster-whisper alone on the same audio: batched, greedy, VAD, no word timestamps
    (``words``: with them)."""
    from faster_whisper import BatchedInferencePipeline

    pipeline = BatchedInferencePipeline(loaders.whisper_model())
    total = 0.0
    for wav in wavs:
        samples = decode(wav).samples
        start = time.perf_counter()
        segments, _ = pipeline.transcribe(
            samples, batch_size=8, beam_size=1, vad_filter=True, word_timestamps=words
        )
        list(segments)
        total += time.perf_counter() - start
    return total


def time_ingest_process(sources: Path, home: Path) -> float:
    """Wall seconds of ``convoice ingest --sources`` in a process of its own, start to exit."""
    cmd = [sys.executable, "-m", "convoice.cli.root", "ingest", "--sources", str(sources)]
    cmd += ["--home", str(home)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"convoice ingest exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds


def time_naive(wavs: list[Path]) -> tuple[float, dict[str, float]]:
    """pyannote's pipeline at its defaults, then faster-whisper, then resemblyzer per turn."""
    from convoice.bench.naive import naive_baseline, offline_pipeline

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


SPLITS = ("report", "tune", "seven")
"""``report``/``tune``: the halves of the voice split; ``seven``: the former corpus of the
seven tuning voices (20 minutes)."""


def bench_corpus(
    root: Path, quick: bool, split: str, corpus_dir: str | None
) -> tuple[samples.Corpus, list[str]]:
    """The corpus to run on, and notes (skipped files of an operator's corpus)."""
    from convoice.bench import corpus as half_corpus

    if corpus_dir:
        return half_corpus.load_annotated(corpus_dir)
    if quick:
        return samples.make_corpus(root / "corpus", n_episodes=4, turns_per_episode=10, seed=3), []
    if split == "seven":
        return samples.make_corpus(root / "corpus", n_episodes=8, turns_per_episode=24, seed=1), []
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return half_corpus.make_half_corpus(root / f"corpus-{split}", half=split), []


def _describe(corpus: samples.Corpus) -> str:
    desc = f"{len(corpus.episodes)} episodes, {len(corpus.speakers)} speakers"
    ids = corpus.metadata.get("identities", {})
    if ids:
        real = sum(1 for v in ids.values() if v["real"])
        meta = corpus.metadata
        desc += f" ({real} real people), {meta['half']} half, rule {meta['split_rule']}"
    elif corpus.metadata.get("half") == "own":
        desc += f", {corpus.root}"
    return desc


def run_benchmark(
    quick: bool = False,
    naive: bool = True,
    workdir: str | None = None,
    split: str = "report",
    corpus_dir: str | None = None,
    profile: bool = False,
) -> BenchmarkResult:
    """Generate (or reuse) the corpus, time the baselines and the flow, score the labels.

    ``profile`` also times Whisper with word timestamps and ``convoice ingest`` as a
    process of its own (into a second store) on the same audio.
    """
    name = "bench-quick" if quick else "bench"
    root = Path(workdir) if workdir else loaders.cache_dir() / name
    corpus, notes = bench_corpus(root, quick, split, corpus_dir)
    wavs = [ep.audio_path for ep in corpus.episodes]
    audio_s = sum(ep.duration for ep in corpus.episodes)
    result = BenchmarkResult(corpus=_describe(corpus), audio_seconds=audio_s, notes=notes)
    _warm_up()
    result.whisper_fastest_s = time_whisper_fastest(wavs)
    if profile:
        result.whisper_words_s = time_whisper_fastest(wavs, words=True)
    if naive:
        result.naive_s, result.naive_steps = time_naive(wavs)
    home = tempfile.mkdtemp(prefix="convoice-bench-")
    with samples.serve_directory(corpus.root) as base_url:
        sources = Path(home) / "sources.csv"
        samples.write_sources_csv(corpus, base_url, sources)
        start = time.perf_counter()
        report = ingest_flow(sources_file=str(sources), home=home)
        result.flow_s = time.perf_counter() - start
        if profile:
            process_home = Path(tempfile.mkdtemp(prefix="convoice-bench-process-"))
            result.process_s = time_ingest_process(sources, process_home)
            shutil.rmtree(process_home, ignore_errors=True)
    result.flow_stages = report.stage_seconds
    store = Store.open(load_settings(home=home))
    clips, episodes = store.clips().to_pylist(), episodes_by_recording(store, corpus)
    result.quality = score_corpus(clips, episodes, corpus)
    truth = corpus_truth(episodes, corpus)
    result.reliability = [asdict(b) for b in evaluation.reliability_of(clips, truth)]
    result.review = [asdict(r) for r in evaluation.review_table(clips, truth)]
    result.quality["der_pyannote_sample_engine"] = engine_der(load_settings(home=home))
    if naive:
        result.quality["der_pyannote_sample_naive"] = naive_der()
    if corpus.metadata.get("identities"):
        result.hard_pairs = hard_pairs(corpus)
    result.registry_match_ms = time_registry_matching()
    return result


def episodes_by_recording(store: Store, corpus: samples.Corpus) -> dict[str, samples.Episode]:
    """Recording id -> the corpus episode it was ingested from (by the media file name)."""
    by_name = {ep.media_path.name: ep for ep in corpus.episodes}
    out = {}
    for rec in store.recordings().to_pylist():
        episode = by_name.get(unquote(rec["url"].rsplit("/", 1)[-1]))
        if episode is not None:
            out[rec["recording_id"]] = episode
    return out


def corpus_truth(
    episodes: dict[str, samples.Episode], corpus: samples.Corpus
) -> dict[str, list[evaluation.RefTurn]]:
    """Reference turns per recording id; turns of non-English voices carry no text (no WER)."""
    ids = corpus.metadata.get("identities", {})

    def text(turn: samples.TruthTurn) -> str:
        return turn.text if ids.get(turn.speaker, {}).get("language", "en") == "en" else ""

    return {
        rid: [evaluation.RefTurn(t.start, t.end, t.speaker, text(t)) for t in ep.turns]
        for rid, ep in episodes.items()
    }


def score_corpus(
    clips: list[dict[str, Any]], episodes: dict[str, samples.Episode], corpus: samples.Corpus
) -> dict[str, float]:
    """Quality of the labels against the corpus truth."""
    ids = corpus.metadata.get("identities", {})
    real = frozenset(name for name, v in ids.items() if v["real"])
    raw = sum(ep.duration for ep in corpus.episodes)
    out = evaluation.score(clips, corpus_truth(episodes, corpus), raw, real)
    texts = corpus.metadata.get("transcripts", {})
    if texts:
        mapped = {
            rid: texts[ep.episode_id] for rid, ep in episodes.items() if ep.episode_id in texts
        }
        out["wer_transcripts_all_clips"] = evaluation.recording_wer(clips, mapped).wer
    return out


def hard_pairs(corpus: samples.Corpus, threshold: float = 0.8) -> list[tuple[str, str, float]]:
    """Same-group identities whose resemblyzer centroids (over their clean turns) exceed
    ``threshold`` in cosine: the pairs the corpus puts to the engine."""
    from convoice.models.clustering import normalize

    encoder = loaders.voice_encoder()
    vectors: dict[str, list[np.ndarray]] = {}
    for ep in corpus.episodes:
        samples_ = decode(ep.audio_path).samples
        for t in ep.turns:
            if any(o is not t and o.start < t.end and o.end > t.start for o in ep.turns):
                continue
            seg = samples_[int(t.start * 16000) : int(t.end * 16000)]
            vectors.setdefault(t.speaker, []).append(encoder.embed_utterance(seg))
    names = sorted(vectors)
    cent = normalize(np.stack([np.mean(vectors[n], axis=0) for n in names]).astype(np.float32))
    groups = {n: v["group"] for n, v in corpus.metadata["identities"].items()}
    sims = cent @ cent.T
    return [
        (a, b, round(float(sims[i, j]), 3))
        for i, a in enumerate(names)
        for j, b in enumerate(names)
        if i < j and groups.get(a) == groups.get(b) and sims[i, j] > threshold
    ]


def engine_der(settings: Settings) -> float:
    """DER of the engine's own diarization on pyannote's real two-speaker sample."""
    wav, rttm = samples.pyannote_sample()
    audio = decode(wav)
    seg = stages.segment.fn(audio, settings)
    vectors = stages.embed_speakers.fn(audio, seg, "", settings.identity.encoder)
    empty = np.zeros((0, 0), dtype=np.float32)
    speakers, _ = stages.identify.fn("sample", seg, vectors, [], empty, settings)
    return diarization_error_rate(read_rttm(str(rttm)), labelling.diarization_output(seg, speakers))


def naive_der() -> float:
    """DER of pyannote's pipeline at its default settings on the same sample."""
    from convoice.bench.naive import diarize_whole, offline_pipeline

    wav, rttm = samples.pyannote_sample()
    turns = diarize_whole(offline_pipeline(), decode(wav).samples)
    return diarization_error_rate(read_rttm(str(rttm)), turns)


# -- scale: throughput with workers, cost of matching and release with size -------------

SCALE_RUNNERS: tuple[tuple[str, str, int], ...] = (
    ("threads, 1 worker", "threads", 1),
    ("dask-local, 1 worker", "dask-local", 1),
    ("dask-local, 2 workers", "dask-local", 2),
    ("warm Dask, 1 worker", "dask", 1),
    ("warm Dask, 2 workers", "dask", 2),
)
"""(label, runner kind, workers): ``dask-local`` runs start their cluster and load the
models inside the timed run, as an operator's run does; ``dask`` runs use a local
cluster started and warmed (models loaded) before the clock starts: the steady state
a long run reaches. The threads run uses the models :func:`_warm_up` loaded."""


@dataclass(frozen=True)
class CostCase:
    """One measured operation at one size, run in a fresh process."""

    what: str  # "match", "consolidate" or "release"
    n: int
    seconds: float
    peak_mb: float  # the process's peak resident memory during the operation (VmHWM)
    base_mb: float  # its resident memory before the operation (imports, inputs)
    note: str = ""


@dataclass
class ScaleResult:
    corpus: str
    audio_seconds: float
    cores: int
    runs: dict[str, float] = field(default_factory=dict)  # runner label -> wall seconds
    workers_used: dict[str, int] = field(default_factory=dict)
    startup_s: dict[str, float] = field(default_factory=dict)  # warm clusters: start + load
    costs: list[CostCase] = field(default_factory=list)

    def throughput(self, label: str) -> float:
        """Audio seconds labelled per wall second."""
        return self.audio_seconds / self.runs[label]

    def to_json(self) -> str:
        data = asdict(self)
        data["throughput"] = {k: self.throughput(k) for k in self.runs}
        return json.dumps(data, indent=2)

    def render(self) -> str:
        lines = [
            f"scale: {self.corpus}, {self.audio_seconds:.1f} s of audio, {self.cores} cores",
            "ingest throughput (audio s per wall s; ratio to the first run; same dataset each):",
        ]
        base = next(iter(self.runs), None)
        for label, wall in self.runs.items():
            ratio = self.throughput(label) / self.throughput(base) if base else float("nan")
            warm = (
                f", cluster start + model load before: {self.startup_s[label]:.1f} s"
                if label in self.startup_s
                else ""
            )
            lines.append(
                f"  {label:<22} wall {wall:7.1f} s  throughput {self.throughput(label):5.2f}  "
                f"x{ratio:.2f}  ({self.workers_used.get(label, 0)} processes{warm})"
            )
        lines.append("cost with size (each case in a fresh process):")
        for c in self.costs:
            lines.append(
                f"  {c.what:<8} N={c.n:>9,}  {c.seconds:9.3f} s  peak {c.peak_mb:8.0f} MB "
                f"(before {c.base_mb:6.0f} MB)  {c.note}"
            )
        return "\n".join(lines)


def _load_models(model: str, compute_type: str) -> None:
    """Load every model in this (Dask worker) process, as its tasks will."""
    threads = int(os.environ.get("CONVOICE_TORCH_THREADS", "0"))
    loaders.segmentation_model()
    loaders.voice_encoder()
    loaders.campplus_model()
    loaders.whisper_model(model, compute_type, threads)


@contextlib.contextmanager
def warm_cluster(workers: int) -> Iterator[tuple[str, float]]:
    """A local Dask cluster with the models loaded in every worker; (address, seconds)."""
    from distributed import Client, LocalCluster

    from convoice.config import RunnerSettings
    from convoice.tasks.runner import local_cluster_kwargs

    asr = load_settings().asr
    start = time.perf_counter()
    kwargs = local_cluster_kwargs(RunnerSettings(kind="dask-local", workers=workers))
    with LocalCluster(**kwargs) as cluster, Client(cluster, set_as_default=False) as client:
        client.run(_load_models, asr.model, asr.compute_type)
        yield cluster.scheduler_address, time.perf_counter() - start


def time_runners(
    sources: Path, homes: Path, runners: tuple[tuple[str, str, int], ...] = SCALE_RUNNERS
) -> tuple[ScaleResult, dict[str, list[tuple[str, str, str]]]]:
    """Wall time of the ingest flow on each runner, and each run's (clip, speaker, text)."""
    from convoice.config import RunnerSettings

    out = ScaleResult(corpus="", audio_seconds=0.0, cores=os.cpu_count() or 1)
    datasets: dict[str, list[tuple[str, str, str]]] = {}
    for i, (label, kind, workers) in enumerate(runners):
        home = homes / f"run{i}"
        with contextlib.ExitStack() as stack:
            address = ""
            if kind == "dask":
                address, out.startup_s[label] = stack.enter_context(warm_cluster(workers))
            settings = RunnerSettings(kind=kind, workers=workers, address=address)
            start = time.perf_counter()
            report = ingest_flow(
                sources_file=str(sources), home=str(home), runner_settings=settings
            )
            out.runs[label] = time.perf_counter() - start
        out.workers_used[label] = len(report.workers)
        clips = Store(str(home)).clips().sort_by("clip_id")
        datasets[label] = list(
            zip(
                clips["clip_id"].to_pylist(),
                clips["speaker_id"].to_pylist(),
                clips["text"].to_pylist(),
                strict=True,
            )
        )
    return out, datasets


def synthetic_clips(
    n: int, start: int = 0, speakers: int = 500, per_recording: int = 500, seed: int = 0
) -> pa.Table:
    """``n`` clip rows (numbered from ``start``) with random unit 256-d embeddings."""
    import pyarrow as pa

    from convoice.storage.schema import CLIP_SCHEMA, EMBEDDING_DIM

    rng = np.random.default_rng(seed + start)
    index = np.arange(start, start + n)
    emb = rng.standard_normal((n, EMBEDDING_DIM), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rec = index // per_recording
    begin = (index % per_recording) * 10.0
    uris = [f"audio/clips/rec_{r:09d}/clip_{i:012d}.flac" for r, i in zip(rec, index, strict=True)]
    columns: dict[str, pa.Array] = {
        "clip_id": pa.array([f"clip_{i:012d}" for i in index]),
        "recording_id": pa.array([f"rec_{r:09d}" for r in rec]),
        "start": pa.array(begin),
        "end": pa.array(begin + 5.0),
        "duration": pa.array(np.full(n, 5.0)),
        "speaker_id": pa.array([f"spk_{i % speakers:08d}" for i in index]),
        "recording_speaker": pa.array(["S0"] * n),
        "speaker_confidence": pa.array(np.full(n, 0.9)),
        "overlap_nearby": pa.array(np.zeros(n, dtype=bool)),
        "text": pa.array(["a synthetic clip of speech for the scale benchmark"] * n),
        "status": pa.array([ClipStatus.ACCEPTED.value] * n),
        "review_reasons": pa.array([[] for _ in range(n)], pa.list_(pa.string())),
        "speaker_label_source": pa.array([LabelSource.MACHINE.value] * n),
        "transcript_label_source": pa.array([LabelSource.MACHINE.value] * n),
        "embedding": pa.FixedSizeListArray.from_arrays(emb.reshape(-1), EMBEDDING_DIM).cast(
            CLIP_SCHEMA.field("embedding").type
        ),
        "audio_uri": pa.array(uris),
    }
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in CLIP_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=CLIP_SCHEMA)


def write_synthetic_store(root: Path, n: int, batch: int = 100_000) -> None:
    """A store whose clips table holds ``n`` synthetic rows, appended in batches."""
    store = Store(str(root))
    speakers = max(1, n // 200)
    for start in range(0, n, batch):
        rows = synthetic_clips(min(batch, n - start), start=start, speakers=speakers)
        store.tables.append("clips", rows)


def write_registry_store(root: Path, n_clips: int, clips_per_speaker: int = 10) -> int:
    """A store of ``n_clips`` clip rows of ``n_clips / clips_per_speaker`` CAM++-sized speakers.

    Every recording holds 50 speakers. A tenth of the speakers are one person
    split in two ids in different recordings (cosine about 0.8: consolidation
    must merge them), and 1 % are such pairs inside one recording (it must not).
    Returns how many merges are due.
    """
    import pyarrow as pa

    from convoice.models.consolidate import unit_rows
    from convoice.records import Speaker
    from convoice.storage.review_state import save_speakers
    from convoice.storage.schema import CLIP_SCHEMA

    n_speakers = max(100, n_clips // clips_per_speaker)
    rng = np.random.default_rng(7)
    vectors = unit_rows(rng.standard_normal((n_speakers, 192), dtype=np.float32))
    twins = n_speakers // 10
    half = n_speakers // 2
    noise = unit_rows(rng.standard_normal((twins, 192), dtype=np.float32))
    vectors[half : half + twins] = unit_rows(0.8 * vectors[:twins] + 0.6 * noise)
    inside = np.arange(twins, twins + n_speakers // 50, 2)  # pairs (i, i + 1): one recording
    vectors[inside + 1] = unit_rows(0.8 * vectors[inside] + 0.6 * noise[: len(inside)])
    speakers = [
        Speaker(f"spk_{i:08d}", vectors[i] * clips_per_speaker, clips_per_speaker, 50.0, 1,
                "2025-01-01", "2025-01-01")
        for i in range(n_speakers)
    ]  # fmt: skip
    save_speakers(Store(str(root)), speakers)
    index = np.arange(n_speakers * clips_per_speaker)
    speaker = index // clips_per_speaker
    columns = {
        "clip_id": pa.array([f"clip_{i:012d}" for i in index]),
        "recording_id": pa.array([f"rec_{r:07d}" for r in speaker // 50]),
        "speaker_id": pa.array([f"spk_{i:08d}" for i in speaker]),
    }
    n = len(index)
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in CLIP_SCHEMA]
    Store(str(root)).tables.append("clips", pa.Table.from_arrays(arrays, schema=CLIP_SCHEMA))
    return twins


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> None:
    """Start the peak (``VmHWM``) afresh, so it measures the operation, not its set-up."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:  # not Linux, or not allowed: the peak then includes the set-up
        pass


def _peak_mb() -> float:
    """This process's peak resident memory since it started (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the parent's high-water mark over a
    fork/vfork and exec, so a small child reports its large parent's peak.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cost_case(what: str, n: int, root: str) -> CostCase:
    """Measure one case in this process (meant to run in a fresh one: see :func:`measure`)."""
    if what == "match":
        from convoice.models.clustering import normalize
        from convoice.models.registry import match_speakers

        rng = np.random.default_rng(0)
        known = normalize(rng.standard_normal((n, 256), dtype=np.float32))
        ids = [f"spk_{i}" for i in range(n)]
        mine = normalize(rng.standard_normal((3, 256), dtype=np.float32))
        base = _rss_mb()
        _reset_peak()
        start = time.perf_counter()
        for _ in range(3):
            match_speakers("rec", mine, ids, known, 0.8, 0.72, 0.05)
        seconds = (time.perf_counter() - start) / 3
        note = f"3 recording speakers vs N known, {known.nbytes / 2**20:.0f} MB of centroids"
    elif what == "consolidate":
        from convoice.config import ConsolidationSettings
        from convoice.storage.consolidation import consolidate_store

        store = Store(root)
        base = _rss_mb()
        _reset_peak()
        start, cpu = time.perf_counter(), time.process_time()
        done = consolidate_store(store, ConsolidationSettings(), run_id="scale")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        note = (
            f"{done.speakers_before:,} speakers -> {done.speakers_after:,}"
            f" ({len(done.merges):,} merged), CPU {cpu:.1f} s"
        )
    elif what == "release":
        store = Store(root)
        base = _rss_mb()
        _reset_peak()
        start = time.perf_counter()
        release = store.release(note=f"scale benchmark, {n} clips")
        seconds = time.perf_counter() - start
        if release.n_clips != n:
            raise RuntimeError(f"the release has {release.n_clips} clips, not {n}")
        size = sum(p.stat().st_size for p in Path(release.path).glob("*.parquet"))
        note = f"{release.n_speakers} speakers, {size / 2**20:.0f} MB of Parquet"
    else:
        raise ValueError(f"unknown case {what!r}: 'match', 'consolidate' or 'release'")
    return CostCase(what, n, round(seconds, 4), round(_peak_mb(), 1), round(base, 1), note)


def measure(what: str, n: int, root: Path) -> CostCase:
    """Run :func:`cost_case` in a fresh Python process (so its peak memory is its own)."""
    code = (
        "import json, dataclasses, sys; from convoice.bench.quality import cost_case; "
        f"print(json.dumps(dataclasses.asdict(cost_case({what!r}, {n}, {str(root)!r}))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} N={n} failed: {proc.stderr[-2000:]}")
    return CostCase(**json.loads(proc.stdout.strip().splitlines()[-1]))


def run_scale_benchmark(
    sizes: tuple[int, ...] = (100_000, 1_000_000),
    workdir: str | None = None,
    ingest: bool = True,
) -> ScaleResult:
    """Ingest throughput per runner on the quick corpus; matching and release cost by size."""
    root = Path(workdir) if workdir else loaders.cache_dir() / "bench-quick"
    corpus = samples.make_corpus(root / "corpus", n_episodes=4, turns_per_episode=10, seed=3)
    audio_s = sum(ep.duration for ep in corpus.episodes)
    desc = f"{len(corpus.episodes)} episodes, {len(corpus.speakers)} voices"
    result = ScaleResult(corpus=desc, audio_seconds=audio_s, cores=os.cpu_count() or 1)
    scratch = Path(tempfile.mkdtemp(prefix="convoice-bench-scale-"))
    try:
        if ingest:
            _warm_up()
            with samples.serve_directory(corpus.root) as base_url:
                sources = samples.write_sources_csv(corpus, base_url, scratch / "sources.csv")
                timed, datasets = time_runners(sources, scratch)
            result.runs, result.workers_used = timed.runs, timed.workers_used
            result.startup_s = timed.startup_s
            first = next(iter(datasets.values()))
            for label, rows in datasets.items():
                if rows != first:
                    raise RuntimeError(f"the {label} run labelled differently from the first")
        for n in sizes:
            result.costs.append(measure("match", n, scratch))
        for n in sizes:
            store_root = scratch / f"store-{n}"
            write_synthetic_store(store_root, n)
            result.costs.append(measure("release", n, store_root))
            shutil.rmtree(store_root, ignore_errors=True)
        for n in sizes:  # n clips of n / 10 speakers
            store_root = scratch / f"registry-{n}"
            due = write_registry_store(store_root, n)
            case = measure("consolidate", n, store_root)
            result.costs.append(dataclasses.replace(case, note=f"{case.note}; {due:,} due"))
            shutil.rmtree(store_root, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result
