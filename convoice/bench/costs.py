"""Cost with size for ``convoice bench --scale``: one operation at one size, in a fresh process.

Matching a recording's speakers against N known speakers, consolidating a
registry of N clips, and a release from a clips table of N synthetic rows: wall
time and the process's own peak resident memory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convoice.records import ClipStatus, LabelSource
from convoice.storage import Store

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class CostCase:
    """One measured operation at one size, run in a fresh process."""

    what: str  # "match", "consolidate" or "release"
    n: int
    seconds: float
    peak_mb: float  # the process's peak resident memory during the operation (VmHWM)
    base_mb: float  # its resident memory before the operation (imports, inputs)
    note: str = ""


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
        "import json, dataclasses, sys; from convoice.bench.costs import cost_case; "
        f"print(json.dumps(dataclasses.asdict(cost_case({what!r}, {n}, {str(root)!r}))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} N={n} failed: {proc.stderr[-2000:]}")
    return CostCase(**json.loads(proc.stdout.strip().splitlines()[-1]))
