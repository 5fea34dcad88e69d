"""Downloads started ahead in the flow's process (threads runner), one recording at a time.

The flow starts the next recording's download when it submits the recording,
so it overlaps the current one's compute; the ``prepare-recording`` task then
takes it (:func:`take_prefetched`) instead of downloading. The first
recordings' downloads start as soon as they are planned, while the other
sources still expand and the models load. Dask workers download for themselves.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

from convoice.config import Settings
from convoice.engines import loaders
from convoice.orchestration.store_lock import store_key
from convoice.records import MediaItem
from convoice.tasks import stages


def download_dir(store_root: str) -> Path:
    """Where an ingest into the store at ``store_root`` downloads (each download is removed
    once its recording is committed or skipped; a killed run's are taken up by the next run,
    its half-done ones removed when the next run claims their recording).

    One directory per store: ingests into two stores never share (or remove) each other's
    files, and the recordings an ingest claims (:mod:`convoice.orchestration.claims`) are
    claimed in the store they are labelled into.
    """
    return loaders.cache_dir() / "downloads" / store_key(store_root)


_PREFETCHED: dict[str, Future[Path]] = {}
"""Downloads the flow started ahead in this process (threads runner), by recording id."""


def prefetch(executor: Executor, item: MediaItem, workdir: Path, settings: Settings) -> None:
    """Start ``item``'s download (the ``download`` task, retries and all) on ``executor``.

    The flow calls this when it submits the recording, so the next recording's
    download overlaps the current one's compute; :func:`prepare_recording` then
    waits for it instead of downloading. Only for workers in this process.
    """
    context = contextvars.copy_context()  # the flow run's, so the task run belongs to it
    future = executor.submit(context.run, stages.fetch, item, workdir, settings)
    _PREFETCHED[item.recording_id] = future


def forget_prefetched(recording_ids: list[str]) -> None:
    """Drop downloads started ahead that no worker took (a run that stopped early)."""
    for rid in recording_ids:
        _PREFETCHED.pop(rid, None)


def take_prefetched(recording_id: str) -> Future[Path] | None:
    """The download started ahead for ``recording_id`` (None when there is none); taken once."""
    return _PREFETCHED.pop(recording_id, None)


class Prefetcher:
    """One thread that downloads the recordings the flow submits, ahead of their compute."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="convoice-download")
        self.started: set[str] = set()

    def start(self, item: MediaItem, workdir: Path, settings: Settings) -> None:
        """Start ``item``'s download (see :func:`prefetch`), unless it was started already."""
        if item.recording_id not in self.started:
            self.started.add(item.recording_id)
            prefetch(self.executor, item, workdir, settings)

    def close(self, recording_ids: list[str]) -> None:
        """Stop the downloads started ahead; forget those no worker took (``recording_ids``
        and every one this prefetcher started). Closing twice is harmless."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        forget_prefetched([*recording_ids, *self.started])
