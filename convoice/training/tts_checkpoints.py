"""The checkpoints of a TTS training run: which are complete, the newest, pruning.

The trainer writes ``checkpoint_<steps done>.pth`` into its folder under the
tracked run (``<run>/coqui/<trainer run>/``); a ``.saved`` marker written after
it says it is complete. A run started again continues from the newest complete one.
"""

from __future__ import annotations

import re
from pathlib import Path

TRAINER_DIR = "coqui"  # the trainer's folders, under the tracked run
KEEP = 2  # complete checkpoints kept per run (older ones are deleted)
_CHECKPOINT = re.compile(r"checkpoint_(\d+)\.pth$")


def latest_checkpoint(root: Path) -> tuple[Path, int] | None:
    """The newest complete ``checkpoint_<n>.pth`` under ``root``'s trainer folders, with ``n``.

    Complete means its ``.saved`` marker was written after it: a run killed while
    writing a checkpoint leaves a file without one, which does not count.
    """
    found = [
        (int(match.group(1)), path)
        for path in root.glob(f"{TRAINER_DIR}/*/checkpoint_*.pth")
        if (match := _CHECKPOINT.search(path.name)) and marker(path).is_file()
    ]
    if not found:
        return None
    step, path = max(found, key=lambda item: (item[0], item[1].stat().st_mtime))
    return path, step


def marker(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".saved")


def prune(folder: Path, keep: int = KEEP) -> None:
    """Delete all but the newest ``keep`` complete checkpoints in ``folder`` (and markers).

    Done here, after the newest one's marker is written, so that a kill at any
    moment leaves at least one complete checkpoint.
    """
    complete = sorted(
        (int(match.group(1)), path)
        for path in folder.glob("checkpoint_*.pth")
        if (match := _CHECKPOINT.search(path.name)) and marker(path).is_file()
    )
    for _, path in complete[:-keep]:
        marker(path).unlink()
        path.unlink()


def drop_incomplete(folder: Path) -> list[Path]:
    """Delete the checkpoints in ``folder`` without a marker (killed while being written).

    coqui's ``continue_path`` takes the highest-numbered file, complete or not.
    """
    dropped = [p for p in folder.glob("checkpoint_*.pth") if not marker(p).is_file()]
    for path in dropped:
        path.unlink()
    return dropped
