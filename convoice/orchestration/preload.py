"""Models loaded in a thread while Prefect starts and an ingest's sources expand (threads runner).

One loading thread per process at a time: ``convoice ingest`` starts it before
the flow (so loading overlaps Prefect's temporary server starting up), and the
flow joins that same thread after expanding its sources instead of starting a
second one (two threads loading one model would load it twice).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from convoice.config import RunnerKind, Settings
from convoice.engines import loaders

_lock = threading.Lock()
_loading: threading.Thread | None = None


def start_preload(settings: Settings) -> threading.Thread:
    """Start loading ``settings``' models in a thread, unless a load is still running."""
    global _loading
    with _lock:
        if _loading is None or not _loading.is_alive():
            _loading = threading.Thread(
                target=loaders.preload, args=(settings,), daemon=True, name="convoice-preload"
            )
            _loading.start()
        return _loading


@contextlib.contextmanager
def preloading(settings: Settings) -> Iterator[None]:
    """Load the models in a thread while the block runs (threads runner); joined after it."""
    loading = start_preload(settings) if settings.runner.kind == RunnerKind.THREADS else None
    try:
        yield
    finally:
        if loading is not None:
            loading.join()
