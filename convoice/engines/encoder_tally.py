"""Passes of Whisper's encoder this process has made, for ``convoice bench --profile``.

The flow counts its windows (and the speech in them) and its language
passes (and the audio they encode) here, and the benchmark reads the totals before and
after a flow (:mod:`convoice.bench.encoder_passes`). Counting is all this does.
"""

from __future__ import annotations

import threading

WINDOWS = "windows"  # transcription windows; seconds: the clips' speech in them
LANGUAGE = "language"  # language detection passes; seconds: the audio each encodes
ENCODED = "encoded"  # transcription windows; seconds: the length they were encoded at
AGAIN = "again"  # windows encoded again padded to 30 s (they looped); seconds: 30 each

_lock = threading.Lock()
_totals: dict[str, tuple[int, float]] = {}


def add(kind: str, passes: int, seconds: float) -> None:
    """Count ``passes`` encoder passes of ``kind`` holding ``seconds`` of audio."""
    with _lock:
        count, total = _totals.get(kind, (0, 0.0))
        _totals[kind] = (count + passes, total + seconds)


def totals() -> dict[str, tuple[int, float]]:
    """A copy of the passes and seconds per kind counted so far."""
    with _lock:
        return dict(_totals)


def since(before: dict[str, tuple[int, float]]) -> dict[str, tuple[int, float]]:
    """The passes and seconds per kind counted after the snapshot ``before``."""
    now = totals()
    return {
        kind: (count - before.get(kind, (0, 0.0))[0], seconds - before.get(kind, (0, 0.0))[1])
        for kind, (count, seconds) in now.items()
    }
