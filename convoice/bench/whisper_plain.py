"""faster-whisper alone as a user runs it: a process of its own, glibc's default allocator.

``convoice`` keeps freed memory for reuse (:mod:`convoice.orchestration.memory`),
which speeds Whisper up too, so the benchmark's own Whisper-alone row (timed in
its process) is not what a user of faster-whisper gets. This module times the
same calls in a child process started without it:
``python -m convoice.bench.whisper_plain WAV...`` loads the model (not timed),
then prints the timing as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from convoice.orchestration.memory import child_environment


def time_in_plain_process(wavs: list[Path]) -> tuple[float, float]:
    """Wall and CPU seconds of :func:`convoice.bench.baselines.time_whisper` in a plain process."""
    cmd = [sys.executable, "-m", "convoice.bench.whisper_plain", *map(str, wavs)]
    env = child_environment(keep=False)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"Whisper alone in a plain process failed: {done.stderr[-2000:]}")
    timing = json.loads(done.stdout.strip().splitlines()[-1])
    return float(timing["seconds"]), float(timing["cpu_s"])


def main(args: list[str]) -> None:
    from convoice.bench.baselines import time_whisper
    from convoice.bench.naive import user_whisper

    user_whisper()  # loaded before the clock starts, as in the benchmark's process
    print(json.dumps(asdict(time_whisper([Path(a) for a in args]))))


if __name__ == "__main__":
    main(sys.argv[1:])
