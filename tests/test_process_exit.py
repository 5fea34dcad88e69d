"""``convoice ingest`` ends its process without the interpreter's teardown, but not without
what a normal exit does: threads joined, exit handlers run, streams flushed, its exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from convoice.cli.common import exit_process
out = Path(sys.argv[1])
def late() -> None:
    time.sleep(0.5)
    (out / "thread").write_text("done")
threading.Thread(target=late).start()  # not a daemon: a normal exit waits for it
threading._register_atexit(lambda: (out / "hook").write_text("ran"))  # Prefect drains here
atexit.register(lambda: (out / "atexit").write_text("ran"))  # and stops its server here
print("unflushed", end="")
exit_process(3)
"""


def test_exit_process_keeps_what_a_normal_exit_does(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == "unflushed"
    assert {p.name for p in tmp_path.iterdir()} == {"thread", "hook", "atexit"}


def test_only_the_process_entry_point_ends_fast() -> None:
    """A command run in-process (tests, CliRunner) asks, but nothing acts on it there."""
    code = (
        "from convoice.cli import common\n"
        "assert not common.fast_exit_requested()\n"
        "common.end_without_teardown()\n"
        "assert common.fast_exit_requested()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
