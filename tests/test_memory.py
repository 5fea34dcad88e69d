"""The allocator keeps freed blocks for reuse: a second buffer of Whisper's size, written in a
thread (as CTranslate2's are), faults no page in again; glibc's defaults fault every page."""

from __future__ import annotations

import subprocess
import sys

import pytest

from convoice.cli import root
from convoice.orchestration import memory

SCRIPT = """
import ctypes, ctypes.util, resource, sys, threading
from convoice.orchestration.memory import keep_freed_memory
print(keep_freed_memory())
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 96 << 20  # an encoder batch's activations, about
faults = []
def twice() -> None:
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(SIZE)
        ctypes.memset(block, 1, SIZE)
        libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
worker = threading.Thread(target=twice)
worker.start()
worker.join()
print(faults[1])
"""

PAGES = (96 << 20) // 4096


def _second_block_faults(keep: bool) -> tuple[bool, int]:
    env = memory.child_environment(keep)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    kept, faults = done.stdout.split()
    return kept == "True", int(faults)


@pytest.mark.skipif(memory._libc() is None, reason="glibc's allocator only")
def test_freed_blocks_are_reused_without_faulting_their_pages_again() -> None:
    kept, faults = _second_block_faults(True)
    assert kept
    assert faults < PAGES // 100, faults
    kept, faults = _second_block_faults(False)  # glibc's defaults: unmapped at free, faulted again
    assert not kept
    assert faults > PAGES // 2, faults


def test_the_command_line_keeps_freed_memory_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append("kept") or True)
    monkeypatch.setattr(sys, "argv", ["convoice", "--help"])
    with pytest.raises(SystemExit):
        root.main()
    assert calls == ["kept"]
