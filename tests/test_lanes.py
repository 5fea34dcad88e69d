"""Whisper calls side by side: results in order, bounded read-ahead, the same words."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from convoice.engines import lanes, loaders
from convoice.models import asr
from convoice.models.language import LanguageGuess


def test_results_come_back_in_job_order_with_at_most_workers_jobs_read_ahead() -> None:
    alive = 0
    most = 0
    lock = threading.Lock()

    def jobs() -> Iterator[int]:
        nonlocal alive, most
        for n in range(12):
            with lock:
                alive += 1
                most = max(most, alive)
            yield n

    def run(n: int) -> int:
        nonlocal alive
        time.sleep(0.02 * (n % 3))  # later jobs finish first now and then
        with lock:
            alive -= 1
        return n * n

    assert lanes.side_by_side(jobs(), run, workers=2) == [n * n for n in range(12)]
    assert most <= 2  # no job is read before a worker can take it


def test_a_failing_run_is_raised_and_one_worker_runs_in_the_callers_thread() -> None:
    def run(n: int) -> int:
        if n == 3:
            raise RuntimeError("job 3 failed")
        return n

    with pytest.raises(RuntimeError, match="job 3 failed"):
        lanes.side_by_side(range(6), run, workers=2)
    threads: list[str] = []
    lanes.side_by_side(range(3), lambda n: threads.append(threading.current_thread().name), 1)
    assert set(threads) == {threading.current_thread().name}
    with pytest.raises(ValueError, match="workers"):
        lanes.side_by_side(range(3), run, workers=0)


def test_more_than_an_hour_of_clips_goes_one_call_at_a_time() -> None:
    assert lanes.workers_for(lanes.ALONE_S) == lanes.WORKERS == 2
    assert lanes.workers_for(lanes.ALONE_S + 1) == 1 and lanes.alone(3 * 3600.0)


def test_clips_of_several_languages_transcribe_the_same_side_by_side(  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch, librivox_clips
) -> None:
    """Real read speech (LibriVox), its clips told three languages: three Whisper calls, run
    two at a time on two threads, give every word, time and probability that one call after
    the other gives."""
    audio, clips = librivox_clips
    told = [LanguageGuess(("en", "fr", "de")[i % 3], 0.9, "short") for i in range(len(clips))]
    model = loaders.whisper_model()
    options = asr.AsrOptions(4, 1)
    threads: set[str] = set()
    windows = asr._transcribe_windows

    def watched(call: asr._Call, opts: asr.AsrOptions) -> asr.ClipWords:
        threads.add(threading.current_thread().name)
        return windows(call, opts)

    monkeypatch.setattr(asr, "_transcribe_windows", watched)
    side = asr.transcribe_clips(model, audio, clips, options, languages=told)
    assert len(threads) == 2 and all(t.startswith("whisper") for t in threads)
    monkeypatch.setattr(asr, "side_by_side", lambda jobs, run, workers: [run(j) for j in jobs])
    one_by_one = asr.transcribe_clips(model, audio, clips, options, languages=told)
    assert side == one_by_one
    assert sum(t is not None for t in side) >= 3


def test_whisper_lanes_share_the_process_cores(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``[asr] cpu_threads = 0``: each of the lanes gets its share of the cores (one each
    on two), never none; the bench's Whisper alone keeps every core on its one call."""
    from convoice.engines import loaders

    for cores, each in (("2", 1), ("1", 1), ("6", 3), ("7", 3)):
        monkeypatch.setenv("CONVOICE_TORCH_THREADS", cores)
        assert loaders.whisper_lane_threads() == each
    monkeypatch.setenv("CONVOICE_TORCH_THREADS", "2")
    flow, alone = loaders.whisper_model(), loaders.whisper_model(cpu_threads=2)
    assert flow is loaders.whisper_model("base", "int8", 1) and alone is not flow
