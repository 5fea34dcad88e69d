"""Memory and time of ingesting long recordings: ``convoice bench --long 0.5,3``.

For each length it makes one video with ffmpeg (a black picture at 1 fps and a
sound track where the real two-speaker conversation that ships with
pyannote.audio, 30 s, comes back every ``speech_every_s`` seconds with quiet
noise in between), serves it on 127.0.0.1 and runs ``convoice ingest URL`` on it
in a process of its own, the way an operator does. The peak resident memory of
that process (and of what it waited for: ffmpeg, yt-dlp) comes from ``wait4``.
The lengths run one after the other in the same benchmark, so the short one is
the baseline of the long ones: each prints its peak in GiB and GB and its ratio
to the first (flat in length: x1.00), and whether it is under the issue's bar
(3 GB).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from convoice.synth.recordings import pyannote_sample
from convoice.synth.serve import serve_directory


@dataclass(frozen=True)
class LongRun:
    hours: float
    speech_minutes: float
    exit_code: int
    peak_rss_gib: float  # ru_maxrss (KiB) / 1024**2
    wall_s: float
    summary: str  # the ingest's own summary line
    files: int = 1  # recordings in the one sources file (2: two of ``hours / 2`` each)


def make_long_media(path: Path, hours: float, speech_every_s: float = 600.0) -> float:
    """A ``hours`` long MP4 with the sample conversation every ``speech_every_s``; speech s."""
    speech, _ = pyannote_sample()
    seconds = hours * 3600
    with tempfile.TemporaryDirectory(prefix="convoice-long-") as tmp:
        block = Path(tmp) / "block.wav"  # the conversation, then quiet (seeded) noise to the period
        _ffmpeg("-i", str(speech), "-f", "lavfi", "-i",
                f"anoisesrc=c=pink:a=0.002:r=16000:seed=1:d={speech_every_s}", "-filter_complex",
                "[0:a]apad[s];[s][1:a]amix=inputs=2:duration=shortest:normalize=0",
                "-ac", "1", "-ar", "16000", str(block))  # fmt: skip
        _ffmpeg("-stream_loop", "-1", "-i", str(block), "-f", "lavfi", "-i",
                "color=c=black:s=160x120:r=1", "-t", f"{seconds}", "-map", "1:v", "-map", "0:a",
                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-b:a", "48k",
                str(path))  # fmt: skip
    per_block = min(30.0, speech_every_s)
    return (seconds // speech_every_s) * per_block + min(seconds % speech_every_s, per_block)


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {done.stderr.strip()[-500:]}")


def measure_ingest(url: str | list[str], home: Path) -> tuple[int, float, float, str]:
    """Run ``convoice ingest`` on ``url`` (or each of a list, one batch; declared CC0 in a
    sources file): exit code, peak RSS (GiB), wall seconds, summary line."""
    home.mkdir(parents=True, exist_ok=True)
    sources = home / "sources.csv"
    urls = [url] if isinstance(url, str) else url
    rows = "".join(f"{u},CC0-1.0\n" for u in urls)
    sources.write_text(f"url,license\n{rows}", encoding="utf-8")
    cmd = [sys.executable, "-m", "convoice.cli.root", "ingest", "--sources", str(sources)]
    cmd += ["--home", str(home)]
    env = {**os.environ, "COLUMNS": "250"}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the benchmark's
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        out = stdout.read().decode(errors="replace")
    wall = time.perf_counter() - started
    summary = next((line for line in out.splitlines() if "recordings labelled" in line), out[-300:])
    return proc.returncode, usage.ru_maxrss / 1024**2, wall, summary.strip()


def run_long_benchmark(
    hours: list[float], speech_every_s: float = 600.0, dense: bool = False, pair: bool = False
) -> list[LongRun]:
    """Make, serve and ingest one recording per length; the figures of each.

    ``dense``: a conversation throughout (:mod:`convoice.bench.long_dense`) instead of
    the sample every ``speech_every_s``. ``pair``: then one more ingest, of two
    recordings of the first length in one sources file (the threads runner's
    pipeline prepares the second while the first is transcribed).
    """
    from convoice.bench.long_dense import make_dense_media

    runs: list[LongRun] = []
    with tempfile.TemporaryDirectory(prefix="convoice-bench-long-") as tmp:
        root = Path(tmp)
        www = root / "www"
        www.mkdir()

        def make(name: str, h: float, seed: int = 11) -> float:
            if dense:
                return make_dense_media(www / name, h, seed)
            return make_long_media(www / name, h, speech_every_s)

        kind = "dense" if dense else "long"
        with serve_directory(www) as base:
            for h in hours:
                name = f"{kind}-{h:g}h.mp4"
                speech_s = make(name, h)
                code, peak, wall, summary = measure_ingest(base + name, root / f"home-{h:g}")
                runs.append(LongRun(h, speech_s / 60, code, peak, wall, summary))
                (www / name).unlink()
            if pair and hours:
                h = hours[0]
                names = [f"{kind}-{h:g}h-{k}.mp4" for k in (1, 2)]
                speech_s = sum(make(n, h, 11 + k) for k, n in enumerate(names))
                code, peak, wall, summary = measure_ingest(
                    [base + n for n in names], root / "home-pair"
                )
                runs.append(LongRun(2 * h, speech_s / 60, code, peak, wall, summary, files=2))
    return runs


BAR_GB = 3.0  # issue 10: a three-hour file processed with peak memory under 3 GB


def render(runs: list[LongRun]) -> str:
    lines = ["hours  speech min  exit  peak GiB  peak GB  x first  wall s  (ingest's summary)"]
    for r in runs:
        gb, ratio = r.peak_rss_gib * 1024**3 / 1e9, r.peak_rss_gib / runs[0].peak_rss_gib
        hours = f"{r.hours:5g}" if r.files == 1 else f"2x{r.hours / 2:g}"
        lines.append(
            f"{hours:>5s}  {r.speech_minutes:10.1f}  {r.exit_code:4d}  {r.peak_rss_gib:8.2f}  "
            f"{gb:7.2f}  {ratio:7.2f}  {r.wall_s:6.0f}  {r.summary}"
        )
    everything, runs = runs, [r for r in runs if r.files == 1]
    pairs = [(base, runs[-1]) for base in dict.fromkeys(runs[:1] + runs[-2:-1])]
    for base, last in pairs:
        if base is last:
            continue
        rss, wall = last.peak_rss_gib / base.peak_rss_gib, last.wall_s / base.wall_s
        longer = last.hours / base.hours
        lines.append(
            f"{last.hours:g} h vs {base.hours:g} h: peak RSS x{rss:.2f} for x{longer:g} the length,"
            f" wall x{wall:.2f} (same run; the machine may be shared)"
        )
    worst = max(r.peak_rss_gib * 1024**3 / 1e9 for r in everything)
    under = "under" if worst < BAR_GB else "NOT under"
    lines.append(f"highest peak {worst:.2f} GB: {under} the {BAR_GB:g} GB bar")
    return "\n".join(lines)
