"""How many threads a network may take: fewer while Whisper runs in another thread.

The threads runner prepares the next recording (segment, embed) while Whisper
transcribes this one (:mod:`convoice.orchestration.pipeline`). CTranslate2 keeps
its own threads; Whisper alone keeps about 1.4 of two cores busy, so the
networks beside it get one thread (one slice of each batch at a time,
:class:`~convoice.engines.onnx_runtime.OnnxRunner`): they fill Whisper's idle
cycles instead of fighting it. A batch's rows are answered the same bit for bit
however it is sliced, so the labels do not depend on it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_transcribing = 0  # Whisper runs in this process now (how many threads run it)


@contextlib.contextmanager
def whisper_running() -> Iterator[None]:
    """Mark the block as Whisper's: networks in other threads take one thread meanwhile."""
    global _transcribing
    with _lock:
        _transcribing += 1
    try:
        yield
    finally:
        with _lock:
            _transcribing -= 1


def network_threads(wanted: int) -> int:
    """The threads a network run may use now: ``wanted``, or one while Whisper runs."""
    return 1 if _transcribing else wanted
