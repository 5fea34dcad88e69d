"""Models loaded in a thread while Prefect starts and an ingest's sources expand (threads runner).

The same thread first pays yt-dlp's one-off cost (:func:`convoice.media.ytdlp.warm_up`), so
the first source's expansion does not: on one 30 s recording `convoice ingest` took 13.4 s
instead of 14.9 s (medians of five runs each), its expand stage 0.2 s instead of 1.0-1.5 s.

One loading thread per process at a time: ``convoice ingest`` starts it before
the flow (so loading overlaps Prefect's temporary server starting up), and the
flow joins that same thread after expanding its sources instead of starting a
second one (two threads loading one model would load it twice).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from convoice.config import RunnerKind, Settings
from convoice.engines import loaders
from convoice.media import ytdlp

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loading: threading.Thread | None = None


def start_preload(settings: Settings) -> threading.Thread:
    """Start loading ``settings``' models in a thread, unless a load is still running."""
    global _loading
    with _lock:
        if _loading is None or not _loading.is_alive():
            _loading = threading.Thread(
                target=_preload, args=(settings,), daemon=True, name="convoice-preload"
            )
            _loading.start()
        return _loading


def _preload(settings: Settings) -> None:
    """yt-dlp's extractor table first (the sources expand with it before any model is used),
    then the models. Neither raises: the stage that needs one reports its failure."""
    try:
        ytdlp.warm_up()
    except Exception as err:  # expand pays the cost itself, and reports any real failure
        log.debug("warming yt-dlp up failed: %s", err)
    loaders.preload(settings)


@contextlib.contextmanager
def preloading(settings: Settings) -> Iterator[None]:
    """Load the models in a thread while the block runs (threads runner); joined after it."""
    loading = start_preload(settings) if settings.runner.kind == RunnerKind.THREADS else None
    try:
        yield
    finally:
        if loading is not None:
            loading.join()
