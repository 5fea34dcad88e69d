"""Dense long recordings for ``convoice bench --long H,H --long-dense``.

Real long Creative Commons videos (lectures, podcasts, council meetings) are
speech almost throughout: 1,500-2,500 clips per three hours, where the sparse
long file of :func:`convoice.bench.long.make_long_media` holds about nine
minutes of speech. :func:`make_dense_block` lays out a conversation of four
tuning-half voices of the corpus (pyannote's Diane and Sheila, recorded; flite's
``rms`` and ``slt``, synthetic; none of the reserved list) turn after turn with
short pauses and quiet noise under it; :func:`make_dense_media` loops that block
to the length asked for. :func:`run_stages` (``python -m convoice.bench.long_dense``,
a process of its own) times the stages that scale with clips per recording,
without Whisper: decode, segment, embed, identify (the recording's own speakers,
its clustering), write audio, clips for Whisper, match against the registry,
build and route the clips, commit the rows; each with its wall and CPU seconds
and the process's peak resident memory while it ran.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convoice.records import SAMPLE_RATE, FloatArray

DENSE_VOICES = ("pyannote_diane", "pyannote_sheila", "rms", "slt")
"""Tuning-half identities of the corpus (``convoice bench --voices``); none reserved."""
BLOCK_S = 600.0  # the conversation that repeats: ten minutes
SPEECH_SHARE = 0.9  # about this much of the block is speech (short pauses between turns)


def _voice_lines(seed: int) -> list[list[FloatArray]]:
    """Each voice's utterances, 16 kHz float32 (recorded ones cut from their files)."""
    from convoice.synth import inventory
    from convoice.synth.sentences import pick_sentences
    from convoice.synth.speech import synthesize

    everyone = {i.name: i for i in inventory.all_identities()}
    lines: list[list[FloatArray]] = []
    for k, name in enumerate(DENSE_VOICES):
        ident = everyone[name]
        if ident.real:
            lines.append([inventory.load_utterance(u) for u in inventory.utterances(ident)])
        else:
            lines.append([synthesize(name, t) for t in pick_sentences(12, seed + k)])
    return lines


def make_dense_block(seed: int = 11) -> FloatArray:
    """A :data:`BLOCK_S` conversation: turns of 1-3 utterances of one voice, another voice
    next, 0.1-0.5 s apart, quiet pink-ish noise under all of it."""
    rng = np.random.default_rng(seed)
    lines = _voice_lines(seed)
    total = int(BLOCK_S * SAMPLE_RATE)
    out = np.zeros(total, dtype=np.float32)
    cursor, who = 0, 0
    while cursor < total:
        who = (who + int(rng.integers(1, len(lines)))) % len(lines)
        for _ in range(int(rng.integers(1, 4))):
            utt = lines[who][int(rng.integers(len(lines[who])))]
            end = min(total, cursor + len(utt))
            out[cursor:end] = utt[: end - cursor]
            cursor = end + int(rng.uniform(0.1, 0.5) * SAMPLE_RATE)
            if cursor >= total:
                break
    noise = np.cumsum(rng.standard_normal(total).astype(np.float32)) * 1e-4
    noise -= np.convolve(noise, np.ones(400) / 400, mode="same").astype(np.float32)
    return (out + noise.astype(np.float32)).astype(np.float32)


def make_dense_media(path: Path, hours: float, seed: int = 11) -> float:
    """``path`` (``.wav``: 16 kHz mono PCM; else an MP4 with a black picture) ``hours``
    long, the dense block looped; returns the seconds of speech in it (estimated)."""
    import soundfile as sf

    from convoice.bench.long import _ffmpeg

    seconds = hours * 3600
    with tempfile.TemporaryDirectory(prefix="convoice-dense-") as tmp:
        block = Path(tmp) / "block.wav"
        sf.write(block, make_dense_block(seed), SAMPLE_RATE, subtype="PCM_16")
        loop = ["-stream_loop", "-1", "-i", str(block)]
        if path.suffix == ".wav":
            _ffmpeg(*loop, "-t", f"{seconds}", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le",
                    str(path))  # fmt: skip
        else:
            _ffmpeg(*loop, "-f", "lavfi", "-i", "color=c=black:s=160x120:r=1", "-t",
                    f"{seconds}", "-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-preset",
                    "ultrafast", "-c:a", "aac", "-b:a", "48k", str(path))  # fmt: skip
    return seconds * SPEECH_SHARE


@dataclass(frozen=True)
class StageCost:
    stage: str
    wall_s: float
    cpu_s: float  # the whole process's (user + system) while the stage ran
    rss_before_gib: float
    peak_rss_gib: float  # highest resident memory seen while it ran (sampled every 10 ms)


class _RssSampler:
    """The process's resident memory, sampled in a thread; the highest since :meth:`reset`."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.now())

    def reset(self) -> int:
        self.peak = self.now()
        return self.peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def _stage(name: str, sampler: _RssSampler, costs: list[StageCost]) -> Iterator[None]:
    before = sampler.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    sampler.peak = max(sampler.peak, sampler.now())
    costs.append(StageCost(name, time.perf_counter() - wall, time.process_time() - cpu,
                           before / 1024**3, sampler.peak / 1024**3))  # fmt: skip


def run_stages(wav: Path, home: Path) -> tuple[int, int, list[StageCost]]:
    """Every stage of one recording's ingest but Whisper, on ``wav``; clips, the
    recording's speakers and the costs.

    The clips go to the flow's step with no transcript (as when Whisper failed
    on them), so routing and the commit see every clip.
    """
    from convoice.config import load_settings
    from convoice.media.clips import clips_only
    from convoice.models.from_settings import own_speakers
    from convoice.models.run_summary import IngestReport
    from convoice.orchestration.run import IngestRun
    from convoice.orchestration.sequential import identify_and_route
    from convoice.records import MediaItem
    from convoice.storage import Store
    from convoice.storage.clip_audio import write_audio
    from convoice.tasks import stages
    from convoice.tasks.commit import commit
    from convoice.tasks.prepare import Prepared, _embed

    settings = load_settings(home=str(home))
    store = Store.open(settings)
    item = MediaItem(str(wav), str(wav), "generic", wav.stem, wav.stem, "bench", "", "",
                     "CC0-1.0", "CC0-1.0", "declared", None)  # fmt: skip
    rid = item.recording_id
    costs: list[StageCost] = []
    sampler = _RssSampler()
    try:
        with _stage("decode", sampler, costs):
            audio = stages.load_audio.fn(wav)
        with _stage("segment", sampler, costs):
            seg = stages.segment.fn(audio, settings)
        with _stage("embed", sampler, costs):
            seg, vectors = _embed(audio, seg, settings)
        with _stage("identify", sampler, costs):
            speakers = own_speakers(seg, vectors, settings)
        with _stage("write audio", sampler, costs):
            uri, clip_audio = write_audio(store, rid, audio, seg, speakers, vectors)
        held_at = home / f"{rid}.clips.wav"  # where the ingest keeps them: on disk
        with _stage("clips for Whisper", sampler, costs):
            held = clips_only(audio, seg, held_at)
        del held
        held_at.unlink()
        prepared = Prepared(wav, audio.duration, audio.sample_rate, uri, seg, vectors, speakers,
                            [None] * len(seg.clips), clip_audio, {}, "bench")  # fmt: skip
        run = IngestRun(
            store, settings, "bench-long-dense", IngestReport("bench-long-dense", str(home))
        )
        with _stage("match+route", sampler, costs):
            _, clips, touched = identify_and_route(rid, prepared, run)
        with _stage("commit rows", sampler, costs):
            commit.fn(store, item, prepared, clips, touched, settings, run.run_id)
    finally:
        sampler.close()
    return len(seg.clips), int(speakers.centroids.shape[0]), costs


@dataclass(frozen=True)
class StagesRun:
    hours: float
    clips: int
    speakers: int
    peak_rss_gib: float  # the child process's own peak (wait4)
    costs: list[StageCost]


def measure_stages(wav: Path, home: Path, hours: float) -> StagesRun:
    """:func:`run_stages` in a process of its own; its figures and its peak (``wait4``)."""
    home.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "convoice.bench.long_dense", str(wav), str(home)]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read().decode(errors="replace")
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"stages failed: {err.read().decode(errors='replace')[-2000:]}")
    data = json.loads(text.strip().splitlines()[-1])
    costs = [StageCost(**c) for c in data["costs"]]
    return StagesRun(hours, data["clips"], data["speakers"], usage.ru_maxrss / 1024**2, costs)


WHOLE_MAX_H = 1.0
"""``--long-dense`` runs the whole ingest (Whisper too) on lengths up to this: Whisper on
three hours of dense speech costs 20 minutes of CPU or more here."""


def run_stages_benchmark(hours: list[float], seed: int = 11) -> list[StagesRun]:
    """A dense WAV of each length (made once), :func:`measure_stages` on it."""
    runs: list[StagesRun] = []
    with tempfile.TemporaryDirectory(prefix="convoice-bench-dense-") as tmp:
        for h in hours:
            wav = Path(tmp) / f"dense-{h:g}h.wav"
            make_dense_media(wav, h, seed)
            runs.append(measure_stages(wav, Path(tmp) / f"home-{h:g}", h))
            wav.unlink()
    return runs


def render_stages(runs: list[StagesRun]) -> str:
    """Per length, per stage: wall s, CPU s, memory before, peak while it ran (GiB)."""
    lines = []
    for r in runs:
        gb = r.peak_rss_gib * 1024**3 / 1e9
        lines.append(f"{r.hours:g} h dense: {r.clips} clips, {r.speakers} speakers, process peak"
                     f" {r.peak_rss_gib:.2f} GiB ({gb:.2f} GB)")  # fmt: skip
        lines.append("  stage                wall s   CPU s  RSS before GiB  peak GiB")
        for c in r.costs:
            lines.append(f"  {c.stage:18s} {c.wall_s:8.1f} {c.cpu_s:7.1f} {c.rss_before_gib:15.2f}"
                         f" {c.peak_rss_gib:9.2f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    wav, home = Path(argv[0]), Path(argv[1])
    clips, speakers, costs = run_stages(wav, home)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps({"clips": clips, "speakers": speakers, "peak": peak,
                      "costs": [asdict(c) for c in costs]}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
