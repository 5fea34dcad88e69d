"""Independent Whisper calls run side by side, at most ``workers`` at once, results in order.

Whisper alone keeps about 1.4 of two cores busy: its decoder's small products do not
spread over two threads. Two calls that each run on the model's threads fill both
(``WhisperModel(num_workers=2)`` lets CTranslate2 run them at once), for less CPU than
one call after the other (README "Where the time goes"). The calls must not depend on
each other: each language's packed windows, each group of them and each clip the
language pass encodes already go to Whisper alone, so every result is what it was one
call at a time, bit for bit (``tests/test_lanes.py``).

The inputs are prepared in the caller's thread, in order (they read the recording's
samples, which a streamed WAV gives one reader at a time), and at most ``workers``
prepared inputs wait or run: a long recording is not read ahead whole.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

WORKERS = 2
"""Whisper calls at once, and the ``num_workers`` each loaded Whisper is given."""

ALONE_S = 3600.0
"""Clips longer than this in all go to Whisper one call at a time, and their recording
alone: a second call's batch adds about 0.33 GB at the peak (1,414 s of clips: 980 ->
1,309 MB), and a three-hour recording's other stages already hold most of the memory
its ingest may use (README "Dense long files")."""


def alone(clip_seconds: float) -> bool:
    """Whether clips this long in all go to Whisper one call at a time (:data:`ALONE_S`)."""
    return clip_seconds > ALONE_S


def workers_for(clip_seconds: float) -> int:
    """Whisper calls at once for a recording of ``clip_seconds`` of clips."""
    return 1 if alone(clip_seconds) else WORKERS


Job = TypeVar("Job")
Result = TypeVar("Result")


def side_by_side(
    jobs: Iterable[Job],
    run: Callable[[Job], Result],
    workers: int = WORKERS,
) -> list[Result]:
    """``[run(job) for job in jobs]``, up to ``workers`` runs at once.

    ``jobs`` is consumed in this thread, a job only once fewer than ``workers`` are
    running or waiting to be collected; an exception from any run is raised here once
    the runs before it are collected.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        return [run(job) for job in jobs]
    out: list[Result] = []
    pending: deque[Future[Result]] = deque()
    queue = iter(jobs)
    with ThreadPoolExecutor(workers, thread_name_prefix="whisper") as pool:
        try:
            while True:
                if len(pending) >= workers:
                    out.append(pending.popleft().result())
                job = next(queue, _END)
                if job is _END:
                    break
                pending.append(pool.submit(run, job))
            while pending:
                out.append(pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
    return out


_END: Any = object()  # the end of the jobs
