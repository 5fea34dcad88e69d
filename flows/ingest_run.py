"""The plan of one ingest run: sources in, items still to label out.

The planning reads the sources (a bad row of the
sources file is recorded as skipped), expands each one once (a few at a time on
the flow's task runner: listing a source mostly waits for its platform) and
leaves out the recordings the store has done and those another ingest into the store is
labelling now (:mod:`convoice.orchestration.claims`).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import get_run_logger
from prefect.futures import PrefectFuture

from convoice.media import download
from convoice.media.errors import IngestError
from convoice.media.local import local_url
from convoice.media.sources import read_sources
from convoice.models.run_summary import IngestReport
from convoice.orchestration.disk_space import DiskFull, out_of_space
from convoice.orchestration.prefetch import download_dir
from convoice.orchestration.run import IngestRun
from convoice.records import MediaItem, SkippedItem, SkipReason, Source, now
from convoice.tasks import stages


def sources(urls: list[str], sources_file: str | None, run: IngestRun) -> list[Source]:
    """The sources to expand; a bad row of the sources file is recorded as skipped."""
    found = [Source(local_url(u, Path.cwd()) or u) for u in urls]  # a path: its file:// URL
    rejected: list[SkippedItem] = []
    if sources_file:
        read = read_sources(sources_file, run.run_id)
        found += read.sources
        rejected = read.rejected
    if not found and not rejected:
        raise ValueError("nothing to ingest: give URLs or a sources file")
    if rejected:
        run.store.record_skipped(rejected)
    for skipped in rejected:
        report_skip(run.report, skipped)
    return found


@contextmanager
def stopping_when_full(run: IngestRun) -> Iterator[None]:
    """Stop the run, rather than fail it, when a disk it writes to is full
    (:mod:`convoice.orchestration.disk_space`): one ERROR line saying where, no traceback,
    and ``report.stopped`` set (exit code 3). Any other error goes on up."""
    try:
        yield
    except Exception as err:
        full = err if isinstance(err, DiskFull) else out_of_space(err, run.places())
        if full is None:
            raise
        run.report.stopped = str(full)
        get_run_logger().error("%s", full, extra={"stopped_run": True})


def report_skip(report: IngestReport, skipped: SkippedItem, **extra: str) -> None:
    """Count an expected skip and say so in ONE warning line: item, reason code, reason."""
    report.skip(skipped)
    where = f"{skipped.source_url}, line {skipped.line}: " if skipped.line is not None else ""
    item = skipped.url or skipped.source_url or "(no url)"
    get_run_logger().warning(
        "skipped %s%s: %s: %s", where, item, skipped.reason_code, skipped.reason, extra=extra
    )


EXPAND_AHEAD = 4
"""Sources expanded at once: listing one mostly waits on its platform (yt-dlp's requests,
Prefect's task run), and four at a time do not hammer one platform with a whole file."""

Expansion = list[MediaItem | SkippedItem]
SourceKey = tuple[str, str | None]


def expansions(found: list[Source], run: IngestRun) -> Iterator[tuple[Source, Expansion]]:
    """Each source with what it expands to, in the sources' order.

    A URL listed again (with the same declared licence) is expanded once; up to
    :data:`EXPAND_AHEAD` distinct ones expand at once on the flow's task runner, ahead
    of the one the caller waits for. The ``expand`` stage clocks that wait.
    """
    first: dict[SourceKey, Source] = {}
    for source in found:
        first.setdefault((source.url, source.declared_license), source)
    waiting = iter(first.items())
    running: deque[tuple[SourceKey, PrefectFuture[Expansion]]] = deque()
    expanded: dict[SourceKey, Expansion] = {}
    for source in found:
        key = (source.url, source.declared_license)
        while key not in expanded:  # the sources of ``first`` finish in its order
            while len(running) < EXPAND_AHEAD and (nxt := next(waiting, None)) is not None:
                future = stages.expand.submit(nxt[1], run.settings, run.run_id)
                running.append((nxt[0], future))
            done_key, future = running.popleft()
            with run.clock.stage("expand"):
                expanded[done_key] = future.result()
        yield source, expanded[key]


def plan(
    found: list[Source], run: IngestRun, planned: Callable[[MediaItem], None] | None = None
) -> Iterator[MediaItem]:
    """Expand the sources as asked; record skips; the items still to label, in order, once each.

    A generator: a source expands when its items are asked for (with up to
    :data:`EXPAND_AHEAD` ahead of it), so labelling can begin before the last source has
    expanded. ``planned`` is called with each item as it is kept (the flow starts the
    first downloads there).
    """
    logger = get_run_logger()
    done = run.store.done_recording_ids()
    kept: set[str] = set()
    for source, expanded in expansions(found, run):
        for entry in expanded:
            if isinstance(entry, SkippedItem):
                entry = dataclasses.replace(entry, line=source.line)
                run.store.record_skipped([entry])
                report_skip(run.report, entry)
                continue
            rid = entry.recording_id
            if rid in done or rid in kept:
                run.report.already_done += 1
                logger.info(
                    "already labelled: %s (%s)", entry.title, rid, extra={"recording_id": rid}
                )
                continue
            if not _claim(entry, run):
                continue
            kept.add(rid)
            if planned is not None:
                planned(entry)
            yield entry


def _claim(item: MediaItem, run: IngestRun) -> bool:
    """Claim ``item`` for this run (:mod:`convoice.orchestration.claims`); False, counted and
    said, when another ingest into the store holds it or has labelled it since the plan read
    what is done (one small read per item: it saves a recording's work labelled twice)."""
    if run.claims is None:
        return True
    rid, logger, extra = item.recording_id, get_run_logger(), {"recording_id": item.recording_id}
    if not run.claims.claim(rid):
        run.report.elsewhere += 1
        logger.info("being labelled by another run: %s (%s); left to it", item.title, rid,
                    extra=extra)  # fmt: skip
        return False
    if run.store.is_done(rid):
        run.claims.release(rid)
        run.report.already_done += 1
        logger.info("already labelled by another run: %s (%s)", item.title, rid, extra=extra)
        return False
    download.remove_partial_downloads(download_dir(run.store.root), rid)  # a killed run's
    return True


class Planned:
    """The items of :func:`plan`, listed as they are asked for and kept in ``items``.

    :meth:`ahead` lists the first few at once (the flow does so while the models load);
    iterating lists the rest as the labelling asks for them, the same items in the same
    order every time.
    """

    def __init__(self, items: Iterator[MediaItem]) -> None:
        self._listing = items
        self.items: list[MediaItem] = []

    def _more(self) -> bool:
        item = next(self._listing, None)
        if item is not None:
            self.items.append(item)
        return item is not None

    def ahead(self, count: int) -> None:
        """List items until ``count`` are listed or none are left."""
        while len(self.items) < count and self._more():
            pass

    def __iter__(self) -> Iterator[MediaItem]:
        index = 0
        while index < len(self.items) or self._more():
            yield self.items[index]
            index += 1


def as_skipped(item: MediaItem, err: Exception, run_id: str) -> SkippedItem:
    """The skipped row of an item its labelling failed on."""
    if isinstance(err, IngestError):
        code, reason = err.reason_code, err.reason
    else:
        code, reason = SkipReason.LABELLING_FAILED, f"{type(err).__name__}: {err}"
    return SkippedItem(item.source_url, item.url, item.title, code, reason, run_id, now())
