"""Structured logs and terminal progress for long runs.

Every log record of an ingest carries ``flow_run_id``, ``recording_id`` and
``clip_id`` (None where they do not apply): Prefect's run loggers give the run
ids, :func:`log_context` gives the rest through context variables (set in the
flow and in the worker tasks, so Dask workers' lines carry them too), and
``extra=`` on a call wins over both. ``CONVOICE_LOG_FORMAT=json`` (or
:func:`configure_logging` with ``"json"``) prints one JSON object per line on
stderr instead of Prefect's text lines.

:class:`Progress` shows a line per recording and its current stage: a rich
live display when stdout is a terminal, plain log lines otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

FORMAT_ENV = "CONVOICE_LOG_FORMAT"


class LogFormat(StrEnum):
    """How log lines are printed (``$CONVOICE_LOG_FORMAT``, ``convoice ingest --log-format``)."""

    TEXT = "text"  # Prefect's text lines
    JSON = "json"  # one JSON object per line


FORMATS = tuple(LogFormat)
FIELDS = ("flow_run_id", "task_run_id", "recording_id", "clip_id", "stage")

_context: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"convoice_{name}", default=None)
    for name in ("flow_run_id", "recording_id", "clip_id", "stage")
}


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Tag every log record made inside the block (this thread/task) with ``ids``."""
    unknown = set(ids) - set(_context)
    if unknown:
        raise ValueError(f"unknown log context fields {sorted(unknown)}; known: {sorted(_context)}")
    tokens = [(_context[k], _context[k].set(v)) for k, v in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def _prefect_ids() -> dict[str, str]:
    """The ids the Prefect run this thread is in knows: its flow and task run, and the
    recording of a task that takes one (an ``item`` or a ``recording_id`` parameter)."""
    from prefect.context import FlowRunContext, TaskRunContext

    task = TaskRunContext.get()
    if task is not None:
        out = {"task_run_id": str(task.task_run.id)}
        if task.task_run.flow_run_id:
            out["flow_run_id"] = str(task.task_run.flow_run_id)
        params = task.parameters or {}
        rid = params.get("recording_id") or getattr(params.get("item"), "recording_id", None)
        if isinstance(rid, str):
            out["recording_id"] = rid
        return out
    flow = FlowRunContext.get()
    if flow is not None and flow.flow_run is not None:
        return {"flow_run_id": str(flow.flow_run.id)}
    return {}


class ContextFilter(logging.Filter):
    """Adds the :data:`FIELDS` to every record that passes (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        prefect_ids: dict[str, str] | None = None
        for name in FIELDS:
            if getattr(record, name, None) is not None:
                continue
            value = _context[name].get() if name in _context else None
            if value is None and name in ("flow_run_id", "task_run_id", "recording_id"):
                if prefect_ids is None:
                    prefect_ids = _prefect_ids()
                value = prefect_ids.get(name)
            setattr(record, name, None if value is None else str(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the :data:`FIELDS`."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            data[name] = getattr(record, name, None)
        task_name = getattr(record, "task_run_name", None)
        if task_name is not None:
            data["task_run_name"] = task_name
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class ExpectedSkipFilter(logging.Filter):
    """Demotes Prefect's report of a task that failed with an expected ``IngestError``
    or on a full disk.

    A recording with no speech, a truncated file, ... fails its task with
    :class:`~convoice.media.errors.IngestError`; Prefect would log that as an
    ERROR with the traceback, once per task it passes through. The flow logs
    the skip itself, as one WARNING line, so these records become DEBUG lines
    without a traceback. A full disk (:mod:`convoice.orchestration.disk_space`)
    stops the run with one ERROR line of the flow's, so it is demoted too. Any other
    exception keeps Prefect's ERROR and traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from convoice.media.errors import IngestError, mentions_full_disk
        from convoice.orchestration.disk_space import says_out_of_space

        if getattr(record, "stopped_run", False):  # the flow's own line: it stays
            return True
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage() if record.levelno >= logging.ERROR else ""
        expected = (
            isinstance(exc, IngestError)
            or (exc is not None and says_out_of_space(exc))
            or (exc is None and "IngestError" in message)
            or (exc is None and mentions_full_disk(message))
        )
        if expected:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info, record.exc_text = None, None
        return record.levelno >= logging.getLogger(record.name).getEffectiveLevel()


PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


def quiet_expected_skips() -> None:
    """Install :class:`ExpectedSkipFilter` on Prefect's run loggers (once)."""
    for name in PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedSkipFilter) for f in logger.filters):
            logger.addFilter(ExpectedSkipFilter())


_lock = threading.Lock()
_json_handler: logging.Handler | None = None
_removed: list[logging.Handler] = []


def log_format(fmt: str | None = None) -> str:
    """``fmt``, else ``$CONVOICE_LOG_FORMAT``, else ``"text"``; ValueError when unknown."""
    value = (fmt or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if value not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


def configure_logging(fmt: str | None = None) -> str:
    """Make the terminal log lines ``text`` (Prefect's) or ``json``; returns the format.

    Safe to call again (in every Dask worker task, say): it changes nothing
    when the format is already in place. Text lines get the context fields
    too, for handlers that want them.
    """
    global _json_handler
    chosen = log_format(fmt)
    quiet_expected_skips()
    root = logging.getLogger()
    with _lock:
        if chosen == "json" and _json_handler is None:
            handler: logging.Handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(JsonFormatter())
            handler.addFilter(ContextFilter())
            for old in list(root.handlers):
                if isinstance(old, logging.StreamHandler):  # Prefect's console handler
                    root.removeHandler(old)
                    _removed.append(old)
            root.addHandler(handler)
            _json_handler = handler
        elif chosen == "text" and _json_handler is not None:
            root.removeHandler(_json_handler)
            _json_handler = None
            while _removed:
                root.addHandler(_removed.pop())
        for handler in root.handlers:
            if not any(isinstance(f, ContextFilter) for f in handler.filters):
                handler.addFilter(ContextFilter())
    return chosen


# -- stage events ----------------------------------------------------------------

StageListener = Callable[[str, str, str], None]  # (recording_id, stage, "start" | "done")
_listeners: list[StageListener] = []
DASK_TOPIC = "convoice-stage"


def add_stage_listener(listener: StageListener) -> None:
    _listeners.append(listener)


def remove_stage_listener(listener: StageListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def stage_event(recording_id: str, stage: str, what: str) -> None:
    """Tell whoever watches that ``recording_id`` entered or left ``stage``.

    In the flow's process listeners are called directly; inside a Dask worker
    the event goes to the scheduler (topic :data:`DASK_TOPIC`), where the flow's
    client subscribes to it.
    """
    for listener in list(_listeners):
        listener(recording_id, stage, what)
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(DASK_TOPIC, {"recording_id": recording_id, "stage": stage, "what": what})


@contextmanager
def stage(
    recording_id: str,
    name: str,
    seconds: dict[str, float],
    spans: list[tuple[str, float, float]] | None = None,
) -> Iterator[None]:
    """Time a worker-side stage into ``seconds`` and announce its start and end.

    ``spans`` (when given) gets ``(name, start, end)`` in seconds since the epoch:
    when the stage ran, comparable across recordings, threads and processes.
    """
    import time

    from convoice import cpu_clock

    stage_event(recording_id, name, "start")
    start = time.perf_counter()
    began = time.time()
    with log_context(stage=name), cpu_clock.measure(name):
        try:
            yield
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            if spans is not None:
                spans.append((name, began, time.time()))
            stage_event(recording_id, name, "done")


class Progress:
    """Per-recording, per-stage progress: rich on a terminal, log lines otherwise."""

    def __init__(self, logger: Any, live: bool | None = None) -> None:
        self.logger = logger
        self.live = sys.stdout.isatty() if live is None else live
        self._rows: dict[str, Any] = {}
        self._titles: dict[str, str] = {}
        self._progress: Any = None
        self._overall: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stage]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def plan(self, recordings: list[tuple[str, str]], stages: list[str]) -> None:
        """More recordings (id, title) to label, in order, and the stages of each (called
        again as later sources list theirs: the overall count grows with them)."""
        with self._lock:
            self._stages = stages
            for rid, title in recordings:
                if rid in self._titles:
                    continue
                self._titles[rid] = title
                if self._progress is not None:
                    self._rows[rid] = self._progress.add_task(
                        title[:40], total=len(stages), stage="queued"
                    )
            if self._progress is None or len(self._titles) < 2:
                return
            if self._overall is None:
                self._overall = self._progress.add_task(
                    "[bold]recordings", total=len(self._titles), stage=""
                )
            else:
                self._progress.update(self._overall, total=len(self._titles))

    def event(self, recording_id: str, stage: str, what: str) -> None:
        """A stage of ``recording_id`` started or finished (callable from any thread)."""
        with self._lock:
            if self._progress is not None and recording_id in self._rows:
                row = self._rows[recording_id]
                if what == "start":
                    self._progress.update(row, stage=stage)
                else:
                    self._progress.advance(row)
            elif what == "done" and not self.live:
                self.logger.info(
                    "%s: %s done",
                    self._titles.get(recording_id, recording_id),
                    stage,
                    extra={"recording_id": recording_id, "stage": stage},
                )

    def finish(self, recording_id: str, status: str) -> None:
        """``recording_id`` is committed (or skipped: ``status`` says which)."""
        with self._lock:
            if self._progress is not None and recording_id in self._rows:
                row = self._rows[recording_id]
                self._progress.update(row, stage=status, completed=len(self._stages))
                if self._overall is not None:
                    self._progress.advance(self._overall)
