"""The baselines ``convoice bench`` times on the same audio as the flow, in the same run.

faster-whisper alone at its fastest setting (batched, greedy, no word
timestamps), the naive chain of standard pieces on whole files (pyannote's
pipeline at its defaults, then faster-whisper, then resemblyzer per turn), the
ingest command as a process of its own, and registry matching by size.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convoice import cpu_clock
from convoice.bench.naive import DEFAULT_EMBEDDING, user_whisper
from convoice.engines import loaders
from convoice.media.audio import decode
from convoice.models.metrics import diarization_error_rate, parse_rttm
from convoice.synth.recordings import pyannote_sample


def warm_up() -> None:
    """Load every model and start Prefect's local server before anything is timed."""
    from prefect import flow

    @flow(name="convoice-warm-up")
    def warm() -> None:
        return None

    warm()
    loaders.segmenter()  # what the segment stage runs (ONNX Runtime, else torch)
    loaders.voice_encoder_net()
    loaders.campplus_encoder()  # what the embed stage runs (ONNX Runtime, else torch)
    loaders.whisper_model()  # the flow's: a share of the cores per lane
    user_whisper()  # Whisper alone's and the naive chain's: every core


@dataclass(frozen=True)
class Timing:
    """Wall seconds and CPU seconds (user + sys, this process and its finished children)."""

    seconds: float
    cpu_s: float


def time_whisper_fastest(wavs: list[Path], words: bool = False) -> float:
    """faster-whisper alone on the same audio: batched, greedy, VAD, no word timestamps
    (``words``: with them); wall seconds."""
    return time_whisper(wavs, words).seconds


def time_whisper(wavs: list[Path], words: bool = False) -> Timing:
    """:func:`time_whisper_fastest` with its CPU seconds (decoding the files not counted)."""
    from faster_whisper import BatchedInferencePipeline

    pipeline = BatchedInferencePipeline(user_whisper())
    total, cpu = 0.0, 0.0
    for wav in wavs:
        samples = decode(wav).samples
        start, cpu_start = time.perf_counter(), cpu_clock.cpu_seconds()
        segments, _ = pipeline.transcribe(
            samples, batch_size=8, beam_size=1, vad_filter=True, word_timestamps=words
        )
        list(segments)
        total += time.perf_counter() - start
        cpu += cpu_clock.cpu_seconds() - cpu_start
    return Timing(total, cpu)


@dataclass(frozen=True)
class ProcessTiming:
    """``convoice ingest`` as a process: start to exit, and its flow's own wall time."""

    seconds: float  # CLI start to exit
    flow_s: float  # the flow's wall time in that process, from its report's summary line
    cpu_s: float = 0.0  # its CPU seconds, user + sys, with its children (Prefect's server)

    @property
    def outside_flow_s(self) -> float:
        """Start-up and exit: imports, Prefect's server, settings, the flow run's set-up."""
        return self.seconds - self.flow_s


_WALL = re.compile(r"; wall (\d+(?:\.\d+)?) s \(RTF")


def time_ingest_process(sources: Path, home: Path) -> ProcessTiming:
    """``convoice ingest --sources`` in a process of its own, start to exit."""
    cmd = [sys.executable, "-m", "convoice.cli.root", "ingest", "--sources", str(sources)]
    cmd += ["--home", str(home)]
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"convoice ingest exited {proc.returncode}: {proc.stderr[-2000:]}")
    found = _WALL.findall(" ".join(proc.stdout.split()))
    if not found:
        raise RuntimeError(f"no wall time in convoice ingest's summary: {proc.stdout[-2000:]}")
    return ProcessTiming(seconds, float(found[-1]), cpu)


def time_naive(
    wavs: list[Path], embedding: str = DEFAULT_EMBEDDING
) -> tuple[float, dict[str, float]]:
    """pyannote's pipeline at its defaults (with ``embedding``, one of
    :data:`convoice.bench.naive.EMBEDDINGS`), then faster-whisper, then resemblyzer per turn."""
    from convoice.bench.naive import naive_baseline, offline_pipeline

    pipeline = offline_pipeline(embedding=embedding)  # built once, like the engine's models
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


def naive_der(embedding: str = DEFAULT_EMBEDDING) -> float:
    """DER of pyannote's pipeline at its default settings (with ``embedding``) on the sample."""
    from convoice.bench.naive import diarize_whole, offline_pipeline

    wav, rttm = pyannote_sample()
    turns = diarize_whole(offline_pipeline(embedding=embedding), decode(wav).samples)
    return diarization_error_rate(parse_rttm(Path(rttm).read_text(encoding="utf-8")), turns)
