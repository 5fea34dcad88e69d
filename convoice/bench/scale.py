"""``convoice bench --scale``: how the engine scales with workers and with size.

The ingest flow's throughput on the quick corpus with one thread-pool worker,
then a local Dask cluster of one and two worker processes (ratios to the first,
in the same run; the datasets must come out the same), and the wall time and
peak memory of matching a recording's speakers against N known speakers, of
consolidating a registry and of a release from a clips table of N synthetic
rows, each in a fresh process (:mod:`convoice.bench.costs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convoice.bench.baselines import warm_up
from convoice.bench.costs import CostCase, measure, write_registry_store, write_synthetic_store
from convoice.config import load_settings
from convoice.engines import loaders
from convoice.flows.ingest import run_ingest
from convoice.storage import Store
from convoice.synth import samples
from convoice.synth.serve import serve_directory, write_sources_csv

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
a long run reaches. The threads run uses the models
:func:`~convoice.bench.baselines.warm_up` loaded."""


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
    loaders.segmenter()  # what the segment stage runs (ONNX Runtime, else torch)
    loaders.voice_encoder_net()
    loaders.campplus_encoder()
    loaders.whisper_model(model, compute_type, threads)


@contextlib.contextmanager
def warm_cluster(workers: int) -> Iterator[tuple[str, float]]:
    """A local Dask cluster with the models loaded in every worker; (address, seconds)."""
    from distributed import Client, LocalCluster

    from convoice.config import RunnerSettings
    from convoice.orchestration.runner import local_cluster_kwargs

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
            report = run_ingest(sources_file=str(sources), home=str(home), runner_settings=settings)
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
            warm_up()
            with serve_directory(corpus.root) as base_url:
                sources = write_sources_csv(corpus, base_url, scratch / "sources.csv")
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
