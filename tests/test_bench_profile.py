"""``convoice bench --profile --repeat N``: CPU per stage, medians, spread, ratios of medians."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from convoice import cpu_clock
from convoice.bench.result import PLAIN_WHISPER, BenchmarkResult, ProfileRun
from convoice.models.run_summary import StageClock

WHISPER = "faster-whisper base int8, batched 8, greedy, VAD, no word timestamps"
FLOW = "the flow (in this process, models loaded)"


def _busy(seconds: float) -> None:
    """Spin ``seconds`` of this thread's CPU: the process's CPU and the wall clock both
    advance at least as much (``process_time`` counts every thread: with another thread
    busy it ran ahead of the wall clock, and a 0.2 s stage measured 0.19998 s wall)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_stage_is_charged_its_cpu_and_its_childrens() -> None:
    before = cpu_clock.totals()
    with cpu_clock.measure("probe-own"):
        _busy(0.3)
    child = "import time\nt = time.process_time() + 0.3\nwhile time.process_time() < t: pass"
    with cpu_clock.measure("probe-child"):
        subprocess.run([sys.executable, "-c", child], check=True)  # ffmpeg's CPU counts too
    clock = StageClock()
    with clock.stage("probe-clock"):
        _busy(0.2)
    time.sleep(0.3)  # waiting costs no CPU: outside any stage
    spent = cpu_clock.since(before)
    assert 0.3 <= spent["probe-own"] < 1.0
    assert spent["probe-child"] >= 0.3
    assert 0.2 <= spent["probe-clock"] < 1.0 and clock.seconds["probe-clock"] >= 0.2
    assert cpu_clock.since(cpu_clock.totals()) == {}


def _run(whisper: float, flow: float, cpu: float, load: float) -> ProfileRun:
    return ProfileRun(
        load_average=load,
        whisper_s=whisper,
        whisper_cpu_s=2 * whisper,
        whisper_words_s=whisper * 1.1,
        whisper_words_cpu_s=2.2 * whisper,
        whisper_plain_s=whisper * 1.2,
        whisper_plain_cpu_s=2.4 * whisper,
        process_s=flow + 10,
        process_flow_s=flow + 2,
        process_cpu_s=2 * flow + 12,
        flow_s=flow,
        flow_cpu_s=cpu,
        flow_stages={"embed": flow / 10, "transcribe": flow / 2},
        flow_stages_cpu={"embed": cpu / 10, "transcribe": cpu / 2},
        clips=49,
    )


def _rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()[2:]
    return {line[:72].strip(): line[72:].split() for line in lines}


def test_repeats_print_medians_spread_and_ratios_of_medians() -> None:
    result = BenchmarkResult(corpus="4 episodes", audio_seconds=237.0, repeat=3)
    result.machine = "AMD EPYC, 2 cores; avx2 fma, no avx512f"
    # one disturbed round (Whisper twice as slow) moves no median
    result.profile_runs = [
        _run(10.0, 13.0, 24.0, 1.2),
        _run(20.0, 14.0, 26.0, 9.5),
        _run(11.0, 12.0, 25.0, 2.0),
    ]
    result.take_medians()
    assert (result.whisper_fastest_s, result.flow_s, result.process_s) == (11.0, 13.0, 23.0)
    assert result.flow_stages == {"embed": 1.3, "transcribe": 6.5}
    assert result.flow_stages_cpu == {"embed": 2.5, "transcribe": 12.5}
    text = result.render_profile()
    assert "3 rounds alternating" in text and "load average 1.2-9.5" in text
    assert "clips per round [49]; machine: AMD EPYC, 2 cores; avx2 fma, no avx512f" in text
    rows = _rows(text)
    assert rows[WHISPER] == ["11.0", "10.0-20.0", "1.00", "22.0", "20.0-40.0", "1.00"]
    # ratios of medians: 13 / 11 wall, 25 / 22 CPU
    assert rows[FLOW] == ["13.0", "12.0-14.0", "1.18", "25.0", "24.0-26.0", "1.14"]
    assert rows["embed"] == ["1.3", "1.2-1.4", "0.12", "2.5", "2.4-2.6", "0.11"]
    # Whisper as a user runs it (its own process): its row, and the process and flow against it
    assert rows[PLAIN_WHISPER] == ["13.2", "12.0-24.0", "1.20", "26.4", "24.0-48.0", "1.20"]
    against = "against faster-whisper alone as a user runs it: the process 1.74, the flow 0.98"
    assert against in text
    start_up = "its start-up and exit (imports, Prefect's server, flow run set-up)"
    assert rows[start_up] == ["8.0", "8.0-8.0", "0.73", "-"]  # no CPU of its own


def test_one_round_keeps_the_one_run_table_and_adds_its_cpu() -> None:
    result = BenchmarkResult(corpus="4 episodes", audio_seconds=237.0)
    result.profile_runs = [_run(10.0, 13.0, 24.0, 1.0)]
    result.take_medians()
    text = result.render_profile()
    assert "(one run, same audio)" in text and "rounds" not in text
    line = next(x for x in text.splitlines() if x.strip().startswith(WHISPER))
    assert line.split()[-2:] == ["10.0", "1.00"]
    assert "CPU s (user + sys): Whisper alone 20.0, with words 22.0, the process 38.0" in text
    assert "the flow 24.0 (embed 2.4, transcribe 12.0)" in text


def test_repeat_must_be_positive() -> None:
    from convoice.bench.quality import run_benchmark

    with pytest.raises(ValueError, match="at least 1"):
        run_benchmark(repeat=0)


def test_whisper_alone_as_a_user_runs_it_is_timed_without_convoice_s_allocator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from convoice.bench import whisper_plain
    from convoice.orchestration import memory
    from convoice.synth.recordings import pyannote_sample

    monkeypatch.setenv("GLIBC_TUNABLES", memory.TUNABLES)  # as `convoice bench` sets it
    env = memory.child_environment(keep=False)
    assert "GLIBC_TUNABLES" not in env and env[memory.KEEP_ENV] == "0"
    wav, _ = pyannote_sample()
    seconds, cpu = whisper_plain.time_in_plain_process([Path(wav)])
    assert 0 < seconds < 120 and cpu > 0


def test_the_machine_is_named_with_the_instruction_sets_kernels_choose_by() -> None:
    from convoice.bench import machine

    cpuinfo = (
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma avx512f\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma avx512f\n"
    )
    line = machine.describe(cpuinfo)
    assert line.startswith("AMD EPYC 7B13, ") and " cores; avx2 fma avx512f, no avx512_vnni" in line
    assert "none of avx2" in machine.describe("model name : Old\nflags : fpu sse2\n")
    result = BenchmarkResult(corpus="4 episodes", audio_seconds=237.0, machine=line)
    assert f"machine: {line}" in result.render().splitlines()[1]


def test_whisper_alone_s_encoder_passes_are_its_vad_chunks_and_one_language_pass() -> None:
    """pyannote's 30 s sample: Silero's speech in chunks of at most 30 s, one pass each,
    and one 30 s pass per file for its language; printed under the profile table."""
    from convoice.bench import encoder_passes
    from convoice.synth.recordings import pyannote_sample

    wav, _ = pyannote_sample()
    alone = encoder_passes.whisper_alone([Path(wav), Path(wav)])
    assert alone.language_passes == 2 and alone.language_s == 60.0
    assert alone.windows in (2, 4) and 40.0 < alone.speech_s <= 60.0  # speech, no silence
    assert 0.6 < alone.fill <= 1.0
    flow = encoder_passes.flow({"windows": (5, 30.0), "language": (12, 40.0)})
    assert flow.fill == 0.2 and flow.describe() == (
        "5 windows 20 % full, 12 language passes (40 s)"
    )
    result = BenchmarkResult(corpus="2 episodes", audio_seconds=60.0)
    result.profile_runs = [_run(10.0, 13.0, 24.0, 1.0)]
    result.take_medians()
    own = encoder_passes.flow(
        {"windows": (5, 30.0), "language": (12, 40.0), "encoded": (5, 45.0), "again": (1, 30.0)}
    )
    assert own.window_s == 75.0 and own.describe() == (
        "5 windows 20 % full, encoded as 75 s (1 again at 30 s), 12 language passes (40 s)"
    )
    assert "Whisper's encoder" not in result.render_profile()  # not counted: no lines
    result.whisper_alone_passes, result.flow_passes = alone, flow
    assert f"the flow       {flow.describe()}; clips packed" in result.render_profile()


def test_stages_that_overlap_are_not_printed_as_a_negative_rest() -> None:
    """With the pipeline, two recordings' stages run at once: their seconds add up to more
    than the flow's wall, and the table says by how much instead of a negative "rest"."""
    from convoice.bench.result import OVERLAP

    result = BenchmarkResult(corpus="4 episodes", audio_seconds=237.0)
    result.whisper_fastest_s, result.flow_s = 10.0, 20.0
    result.flow_stages = {"embed": 8.0, "transcribe": 17.0}
    rows = dict(result.profile_rows())
    assert rows[OVERLAP] == 5.0 and not any("the rest" in what for what in rows)
    result.flow_stages = {"embed": 4.0, "transcribe": 13.0}
    rows = dict(result.profile_rows())
    assert OVERLAP not in rows
    assert rows["  the rest (Prefect's flow and task runs, waits, logging)"] == 3.0


def test_the_speed_lines_state_issue_12_s_bars() -> None:
    """The summary states the bars the speed figures are held to (issue 12: the process
    within 1.3 x of Whisper alone, the naive chain at least 10 x the flow's time)."""
    timed = BenchmarkResult("c", 100.0, whisper_fastest_s=10.0, flow_s=12.0, naive_s=60.0)
    line = next(x for x in timed.render().splitlines() if "flow / whisper alone" in x)
    assert "= 1.20" in line and "<= 1.3" in line
    assert "naive / flow = 5.0 (bar >= 10)" in line
    skipped = BenchmarkResult("c", 100.0, whisper_fastest_s=10.0, flow_s=12.0)
    assert "naive / flow: - (--no-naive)" in skipped.render()
