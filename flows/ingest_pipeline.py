"""How an ingest's recordings flow: prepared a few ahead on the runner, finished in order.

The registry-independent work on each recording (:func:`prepare_recording`)
runs on the task runner the ``[runner]`` settings name (threads, a local Dask
cluster or a Dask scheduler), up to :func:`runner.in_flight` recordings
ahead; each one is then finished here, in item order
(:func:`convoice.orchestration.sequential.label_prepared`). Each item succeeds or fails
on its own. The stage events workers publish are forwarded to the progress
display; with threads, the next recording's download runs ahead in a thread
of its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from prefect import get_run_logger
from prefect.futures import PrefectFuture

from convoice import logs
from convoice.flows.ingest_run import Planned, as_skipped, report_skip
from convoice.media.download import download_path, remove_download
from convoice.media.errors import IngestError
from convoice.orchestration import runner
from convoice.orchestration.dask_events import watch_dask
from convoice.orchestration.disk_space import out_of_space
from convoice.orchestration.pipeline import TURNS
from convoice.orchestration.prefetch import Prefetcher, download_dir
from convoice.orchestration.run import IngestRun
from convoice.orchestration.sequential import label_prepared
from convoice.orchestration.store_lock import store_limit_exists
from convoice.records import MediaItem
from convoice.tasks.prepare import WORKER_STAGES, Prepared, prepare_recording


class _Submitter:
    """Submits the items one by one to the task runner (their downloads ahead, with threads)."""

    def __init__(
        self,
        items: Iterable[MediaItem],
        run: IngestRun,
        task_runner: Any,
        prefetcher: Prefetcher | None = None,
        progress: logs.Progress | None = None,
    ) -> None:
        self.queue = iter(items)  # a lazy plan lists the next source's items when asked
        self.progress = progress
        self.run = run
        self.task_runner = task_runner
        self.workdir = download_dir(run.store.root)
        self.pending: deque[tuple[MediaItem, PrefectFuture[Prepared]]] = deque()
        self.prefetcher = prefetcher
        # Pipelined (threads): Whisper's turns in item order, the next recording's other
        # stages beside this one's transcription.
        self.turns = TURNS if runner.pipelined(run.settings.runner) else None

    def submit_next(self) -> bool:
        """Submit the next item; False when there is none left."""
        item = next(self.queue, None)
        if item is None:
            return False
        run = self.run
        parameters = {
            "item": item, "settings": run.settings, "workdir": self.workdir,
            "run_id": run.run_id, "log_format": run.log_format,
        }  # fmt: skip
        if self.progress is not None:
            self.progress.plan([(item.recording_id, item.title)], WORKER_STAGES)
        with logs.log_context(recording_id=item.recording_id):
            if self.prefetcher is not None:
                self.prefetcher.start(item, self.workdir, run.settings)
            if self.turns is not None:
                self.turns.queue(item.recording_id)
            self.pending.append((item, self.task_runner.submit(prepare_recording, parameters)))
        return True

    def fill(self) -> None:
        """Submit items until as many are in flight as the runner allows."""
        while len(self.pending) < runner.in_flight(self.run.settings.runner) and self.submit_next():
            pass

    def close(self, listed: list[MediaItem]) -> None:
        """Stop the downloads started ahead; forget those no worker took (of the items
        ``listed``, every one submitted among them: a lazy plan's first downloads start
        before the flow submits them)."""
        if self.prefetcher is not None:
            self.prefetcher.close([i.recording_id for i in listed])
        if self.turns is not None:
            self.turns.clear()


def downloads_ahead(run: IngestRun) -> Prefetcher | None:
    """With threads, downloads run ahead in a thread of their own: the next recording's
    download overlaps this one's compute (Dask workers download for themselves)."""
    return Prefetcher() if run.settings.runner.kind == "threads" else None


def first_downloads(prefetcher: Prefetcher | None, run: IngestRun) -> Callable[[MediaItem], None]:
    """What the plan calls with each item it keeps: the first ones the flow will submit
    start downloading at once, while the other sources expand and the models load."""
    first = runner.in_flight(run.settings.runner)

    def planned(item: MediaItem) -> None:
        if prefetcher is not None and len(prefetcher.started) < first:
            with logs.log_context(recording_id=item.recording_id):
                prefetcher.start(item, download_dir(run.store.root), run.settings)

    return planned


def label_all(planned: Planned, run: IngestRun, prefetcher: Prefetcher | None = None) -> None:
    """Prepare up to a few recordings ahead on the runner; finish them here, in order.

    ``planned``: the flow's lazy plan (:class:`~convoice.flows.ingest_run.Planned`), whose
    later sources expand while the first recordings are labelled. ``prefetcher``
    (:func:`downloads_ahead`): the downloads run ahead there; it is closed here.
    """
    logger = get_run_logger()
    settings = run.settings
    run.locked = store_limit_exists()
    with logs.Progress(logger) as progress, runner.task_runner(settings.runner) as task_runner:
        logs.add_stage_listener(progress.event)
        watch_dask(task_runner, progress)
        logger.info(
            "labelling on %s (%d workers); later sources expand meanwhile",
            settings.runner.kind, settings.runner.workers,
        )  # fmt: skip
        submitter = _Submitter(planned, run, task_runner, prefetcher, progress)
        try:
            submitter.fill()
            while submitter.pending:
                item, future = submitter.pending.popleft()
                with logs.log_context(recording_id=item.recording_id):
                    finish_one(item, future, run)
                    progress.finish(item.recording_id, "done")
                del future  # the worker may drop the recording's results now
                # committed (the store has it as FLAC) or skipped: its download goes (a
                # skipped one's too: no speech, a crash), and another run may take it
                remove_download(download_path(submitter.workdir, item.recording_id))
                if run.claims is not None:
                    run.claims.release(item.recording_id)
                submitter.submit_next()
        finally:
            logs.remove_stage_listener(progress.event)
            submitter.close(planned.items)


def finish_one(item: MediaItem, future: PrefectFuture[Prepared], run: IngestRun) -> None:
    """Wait for ``item``'s worker result, then identify, route and commit it (or skip it)."""
    logger = get_run_logger()
    rid = item.recording_id
    extra = {"recording_id": rid}
    report = run.report
    try:
        prepared = future.result()
        report.worked_on(prepared.worker)
        report.ran(rid, prepared.stage_spans)
        for name, seconds in prepared.stage_seconds.items():
            run.clock.add(name, seconds)
        outcome = label_prepared(item, prepared, run)
    except Exception as err:
        # A full disk is no item's fault, and every item after it would fail too: the run
        # stops. An expected skip counts only if it says so (low space alone is no reason).
        expected = isinstance(err, IngestError)
        full = out_of_space(err, run.places(), by_free_space=not expected)
        if full is not None:
            raise full from err
        if expected:  # no speech, truncated, ...: one line, no traceback
            skipped = as_skipped(item, err, run.run_id)
            run.store.record_skipped([skipped])
            report_skip(report, skipped, **extra)
            return
        # a real crash: its traceback, and the batch goes on
        logger.error("crashed on %s", item.url, exc_info=True, extra=extra)
        skipped = as_skipped(item, err, run.run_id)
        run.store.record_skipped([skipped])
        report.skip(skipped)
        return
    if outcome is None:
        report.already_done += 1
        logger.info("already labelled by another run: %s (%s)", item.title, rid, extra=extra)
        return
    report.add(outcome)
    logger.info("%s", outcome.summary(), extra=extra)
