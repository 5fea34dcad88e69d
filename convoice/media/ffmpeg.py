"""Running ffmpeg and ffprobe: the one place a missing binary is reported."""

from __future__ import annotations

import subprocess
from typing import Any

_MISSING = {
    "ffmpeg": "ffmpeg is not installed; run `make setup`",
    "ffprobe": "ffprobe is not installed (it ships with ffmpeg)",
}


def run(
    tool: str, args: list[str], timeout: float, *, text: bool = False
) -> subprocess.CompletedProcess[Any]:
    """``tool`` (``ffmpeg`` or ``ffprobe``) run with ``args``, its output captured and its
    exit status left to the caller.

    Raises:
        RuntimeError: the binary is not installed.
    """
    try:
        return subprocess.run(
            [tool, *args], capture_output=True, text=text, timeout=timeout, check=False
        )
    except FileNotFoundError as err:
        raise RuntimeError(_MISSING[tool]) from err
