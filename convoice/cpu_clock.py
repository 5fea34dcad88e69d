"""CPU seconds (user + sys) per named stage, for ``convoice bench --profile``.

Wall time on a shared machine measures the other processes as much as this
one; the CPU a stage burns does not wait in the run queue. Every timed stage
(:func:`convoice.logs.stage`, :meth:`~convoice.models.run_summary.StageClock.stage`)
adds what this process and its finished children (ffmpeg) used while it ran to
a process-wide total, which the benchmark reads before and after a flow.

The figures are the whole process's: when two stages overlap (the threads
runner prepares the next recording while the flow commits this one), each is
charged the other's CPU too, so the stages can add up to more than the flow.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_totals: dict[str, float] = {}


def cpu_seconds() -> float:
    """CPU seconds (user + sys) of this process's threads and its waited-for children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def add(name: str, seconds: float) -> None:
    """Count ``seconds`` of CPU to stage ``name`` in this process's totals."""
    with _lock:
        _totals[name] = _totals.get(name, 0.0) + seconds


def totals() -> dict[str, float]:
    """A copy of the CPU seconds per stage this process has counted so far."""
    with _lock:
        return dict(_totals)


def since(before: dict[str, float]) -> dict[str, float]:
    """CPU seconds per stage counted after the snapshot ``before`` (from :func:`totals`)."""
    now = totals()
    return {k: round(v - before.get(k, 0.0), 3) for k, v in now.items() if v > before.get(k, 0.0)}


@contextmanager
def measure(name: str) -> Iterator[None]:
    """Add the CPU the process uses while the block runs to stage ``name``."""
    start = cpu_seconds()
    try:
        yield
    finally:
        add(name, cpu_seconds() - start)
