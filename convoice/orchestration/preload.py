"""Models loaded in a thread while an ingest's sources expand (threads runner)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from convoice.config import Settings
from convoice.engines import loaders


@contextlib.contextmanager
def preloading(settings: Settings) -> Iterator[None]:
    """Load the models in a thread while the block runs (threads runner); joined after it.

    Models load while the sources expand (network); joined before any is used.
    """
    loading = threading.Thread(target=loaders.preload, args=(settings,), daemon=True)
    if settings.runner.kind == "threads":
        loading.start()
    try:
        yield
    finally:
        if loading.is_alive():
            loading.join()
