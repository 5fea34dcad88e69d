"""How the process's heap is kept: freed buffers reused, and given back between stages.

glibc's allocator is tuned for programs that allocate little and often; Whisper in
CTranslate2 allocates and frees an encoder batch's activations (blocks of tens to
about a hundred MB) on every call. glibc serves a block that large with ``mmap``,
or in a thread's arena (heaps of at most 64 MiB, so again ``mmap``), and unmaps it
on ``free``: the next call's writes fault every page in again, zero-filled by the
kernel. On the 2-core benchmark machine, Whisper alone on 12 tuning-half
recordings took 3.4-3.9 M page faults and 11-15 s of system time in 34-45 s of
wall (README, "Where the time goes", session 34). :func:`keep_freed_memory` puts
every thread on the main heap, serves blocks up to 1 GiB from it and keeps up to
2 GiB of freed heap for the next call: 7 page faults and 1.5 s of system time.

The peak resident memory is what the process held at its busiest either way;
:func:`release_freed_memory` still gives back, before Whisper's peak, what
segmentation and embedding freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Callable

from convoice.config import switched_on

log = logging.getLogger(__name__)

# mallopt(3) parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENAS = 1  # the main heap grows without a cap; a thread's arena stops at 64 MiB
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap, and go back to it
TRIM_THRESHOLD = 2 << 30  # freed heap kept for reuse, up to 2 GiB

KEEP_ENV = "CONVOICE_KEEP_FREED_MEMORY"  # 0: glibc's defaults
TUNABLES = (
    f"glibc.malloc.arena_max={ARENAS}:glibc.malloc.mmap_threshold={MMAP_THRESHOLD}"
    f":glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
)  # the same for a child process (GLIBC_TUNABLES): Dask's workers, a served flow run


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim, libc.mallopt  # noqa: B018 (glibc's; musl and macOS have neither)
    except (OSError, AttributeError):
        return None
    return libc


def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    return None if libc is None else libc.malloc_trim


def keep_wanted() -> bool:
    """Whether the allocator should keep freed memory (``CONVOICE_KEEP_FREED_MEMORY=0``: no)."""
    return switched_on(KEEP_ENV)


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse in this process and the processes it starts.

    Call it first thing, before the process starts threads: a thread that has
    allocated keeps the arena it was given. Child processes get the same through
    ``GLIBC_TUNABLES`` (unless it is set already). Returns whether this process's
    allocator was changed: False without glibc, or with
    ``CONVOICE_KEEP_FREED_MEMORY=0``. Nothing computed changes, only where the
    memory comes from.
    """
    if not keep_wanted():
        return False
    libc = _libc()
    if libc is None:
        return False
    settings = (
        (M_ARENA_MAX, ARENAS),
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    )
    done = all(libc.mallopt(param, value) == 1 for param, value in settings)
    if not done:
        log.debug("glibc refused a mallopt setting: its defaults stay")
    os.environ.setdefault("GLIBC_TUNABLES", TUNABLES)
    return done


def child_environment(keep: bool) -> dict[str, str]:
    """This process's environment for a child that keeps freed memory or, with ``keep``
    False, runs on glibc's defaults (``GLIBC_TUNABLES`` as the parent had it is dropped)."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env[KEEP_ENV] = "1" if keep else "0"
    return env


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS (``malloc_trim``); False where there is no glibc.

    Segmentation and embedding free most of what they allocate, but glibc keeps
    the freed heap (about 0.3 GiB after a long recording's embed stage) in the
    process, under the peak Whisper then adds: trimming before transcription
    lowers the recording's peak resident memory. Nothing computed changes.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
