"""The review flows: clips that need a person out to Label Studio, their decisions back.

They only compose: Label Studio calls in :mod:`convoice.review.client`, its audio in
:mod:`convoice.review.audio`, tasks built in :mod:`convoice.review.build`,
decisions and registry arithmetic in :mod:`convoice.review.layout` and
:mod:`convoice.review.decisions`, writes in :mod:`convoice.storage`.
Both are safe to run again at any time (an operator can schedule them): a
push never creates a task twice, and a pull applies each annotation once.
When Label Studio fails, the flow fails with :class:`ReviewIncomplete`, whose
report says what was done; nothing is lost, the next run does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger

from convoice.config import ConfigError, Settings, load_settings
from convoice.orchestration.store_lock import machine_lock, store_lock
from convoice.records import Speaker, StoredClip
from convoice.review import audio as review_audio
from convoice.review import client as review
from convoice.review.annotations import ServerProgress, server_progress
from convoice.review.build import build_tasks
from convoice.review.client import ReviewClient, ReviewServerError
from convoice.review.decisions import PullPlan, plan_pull
from convoice.review.layout import (
    PullReport,
    PushReport,
    QueueKind,
    Reference,
    audit_count,
    label_config,
    reference_clips,
    review_queue,
)
from convoice.storage import Store
from convoice.storage import review_state as review_store
from convoice.storage.identity import machine_aliases
from convoice.storage.labels import now_iso
from convoice.storage.rows import clip_records, label_records, recording_records

BATCH = 50
STATUS_TIMEOUT_S = 10.0  # `review status` reads Label Studio once, without retries


class ReviewIncomplete(RuntimeError):
    """Label Studio failed part-way; ``report`` says what was done before."""

    def __init__(self, report: PushReport | PullReport) -> None:
        super().__init__(report.error)
        self.report = report


@flow(name="convoice-review-push", log_prints=True)
def review_push_flow(
    home: str | None = None,
    config: str | None = None,
    limit: int | None = None,
    queue_kind: str | None = None,
) -> PushReport:
    """Send the clips that need review to Label Studio, most uncertain first, each once.

    ``queue_kind`` (default ``[review] queue``): which labels, by :class:`QueueKind`.
    """
    logger = get_run_logger()
    settings = load_settings(config, home=home)
    try:
        kind = QueueKind.parse(queue_kind or settings.review.queue)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    store = Store.open(settings)
    report = PushReport(url=settings.review.url or f"local:{settings.review.port}", queue=kind)
    clips = clip_records(store.materialized_clips())
    queue = review_queue(clips, audit_share=settings.review.audit_share, kind=kind)
    references = reference_clips(clips)  # per speaker, the clip annotators hear it by
    report.needing_review = report.remaining = len(queue)
    report.audit = audit_count(queue, kind)
    try:
        client = review.client_for(settings, store)
        report.url = client.url
        # one push at a time (a sync's and an operator's): each reads what the project holds
        # and imports the rest, so two at once made a project, or a clip's task, twice
        with machine_lock(store.root, "review-push"):
            project_id = client.ensure_project(settings.review.project_title, label_config())
            report.project_id = project_id
            _push(client, project_id, queue, references, store, settings, report, limit)
    except ReviewServerError as err:
        report.error = str(err)
        logger.error("review push stopped: %s", report.summary())
        raise ReviewIncomplete(report) from err
    logger.info(report.summary())
    return report


def _push(
    client: ReviewClient,
    project_id: int,
    queue: list[StoredClip],
    references: dict[str, Reference],
    store: Store,
    settings: Settings,
    report: PushReport,
    limit: int | None,
) -> None:
    """Import the queued clips the project lacks, in batches; connect the audio storage."""
    logger = get_run_logger()
    s3 = review_audio.s3_audio(settings, store) is not None  # else local files
    present = client.existing_clip_ids(project_id)
    connected = bool(present)  # their audio is in the store: (re)connect it now
    if connected:
        review_audio.connect_audio(client, project_id, settings, store)
    todo = [clip for clip in queue if clip.clip_id not in present]
    report.already_in_project = len(queue) - len(todo)
    report.remaining = len(todo)
    todo = todo[: limit if limit is not None else settings.review.max_tasks_per_push]
    recordings = {r.recording_id: r for r in recording_records(store.recordings())}
    versions: list[str] = []
    for first in range(0, len(todo), BATCH):
        batch = todo[first : first + BATCH]
        tasks = build_tasks(store, batch, recordings, settings.review.context_s, s3, references)
        if not connected:  # once the first audio is written (an S3 storage checks for it)
            review_audio.connect_audio(client, project_id, settings, store)
            connected = True
        ids = review.import_batch(client, project_id, tasks)
        report.pushed += len(ids)
        report.remaining -= len(ids)
        report.task_ids += ids
        versions += [t["data"]["model_version"] for t in tasks]
        logger.info("pushed %d tasks (%d to go)", report.pushed, report.remaining)
    if versions:
        client.set_model_version(project_id, max(set(versions), key=versions.count))


def review_server_progress(settings: Settings, store: Store) -> ServerProgress:
    """What the review project in Label Studio holds against what ``store`` has pulled (read
    only, one try of each call: for `convoice review status`, not a flow).

    Raises:
        ReviewServerError: Label Studio is not configured, not running or refused.
    """
    cfg = settings.review
    conn = review.connection(settings, store)
    client = ReviewClient(conn, min(cfg.timeout_s, STATUS_TIMEOUT_S), retries=0)
    project_id = client.find_project(cfg.project_title)
    if project_id is None:
        return ServerProgress(client.url, cfg.project_title, None)
    tasks = len(client.existing_clip_ids(project_id))
    annotated = client.annotated_tasks(project_id)
    applied = review_store.applied_annotations(store)
    return server_progress(client.url, cfg.project_title, project_id, tasks, annotated, applied)


@flow(name="convoice-review-pull", log_prints=True)
def review_pull_flow(home: str | None = None, config: str | None = None) -> PullReport:
    """Apply completed annotations: labels, merges, new speakers, registry updates."""
    logger = get_run_logger()
    settings = load_settings(config, home=home)
    store = Store.open(settings)
    report = PullReport(url=settings.review.url or f"local:{settings.review.port}")
    try:
        client = review.client_for(settings, store)
        report.url = client.url
        project_id = client.find_project(settings.review.project_title)
        if project_id is None:
            logger.info("no review project %r yet: push first", settings.review.project_title)
            return report
        report.project_id = project_id
        tasks = client.annotated_tasks(project_id)
        users = client.users()
    except ReviewServerError as err:
        report.error = str(err)
        logger.error("review pull stopped: %s", report.summary())
        raise ReviewIncomplete(report) from err
    at = now_iso()
    with machine_lock(store.root):  # read, decide and write with no ingest writing meanwhile
        registry: dict[str, Speaker] = {s.speaker_id: s for s in store.speakers()}
        plan = plan_pull(
            tasks,
            users,
            review_store.machine_clips(store),
            label_records(store.labels()),
            registry,
            review_store.merges(store),
            review_store.applied_annotations(store),
            review_store.contributions(store),
            at,
            aliases=machine_aliases(store),
        )
        report.labels_applied = _apply(store, plan, registry, client.url, project_id, at)
    _count_pull(report, plan, tasks)
    logger.info(report.summary())
    return report


def _apply(
    store: Store, plan: PullPlan, registry: dict[str, Speaker], url: str, project_id: int, at: str
) -> int:
    """Write what the pull decided; the number of labels added."""
    # Order matters for a run killed half-way: see storage/review_state.py.
    applied = store.add_labels(plan.labels)
    review_store.add_merges(store, plan.merges)
    review_store.save_contributions(store, plan.contributions)
    removed = [registry[s] for s in plan.removed_speakers if s in registry]
    review_store.save_speakers(store, plan.speakers, removed)
    review_store.log_decisions(store, plan.decisions, url, project_id, at)
    return applied


def _count_pull(report: PullReport, plan: PullPlan, tasks: list[dict[str, Any]]) -> None:
    """The pull's report: what was read, applied and skipped (each skip also as a warning)."""
    report.tasks_read = len(tasks)
    report.annotations_read = sum(len(t.get("annotations") or []) for t in tasks)
    report.annotations_applied = len(plan.decisions)
    report.already_applied = plan.already_applied
    report.skipped = plan.skipped
    report.merges = [(m.merged, m.kept) for m in plan.merges]
    report.new_speakers = plan.new_speakers
    report.speakers_updated = len(plan.speakers)
    logger = get_run_logger()
    for task_id, annotation_id, reason in plan.skipped:
        logger.warning("skipped task %s (annotation %s): %s", task_id, annotation_id, reason)


# -- review sync: the scheduled pair -------------------------------------------


@dataclass
class SyncReport:
    """What one review sync did: a pull, then a push (None when skipped)."""

    pull: PullReport | None = None
    push: PushReport | None = None
    skipped: str = ""  # why nothing was done (a later scheduled sync does the same work)

    def summary(self) -> str:
        if self.skipped:
            return f"review sync skipped: {self.skipped}"
        parts = [f"pull: {self.pull.summary()}" if self.pull else "pull: not run"]
        parts.append(f"push: {self.push.summary()}" if self.push else "push: not run")
        return "; ".join(parts)


def superseded(
    expected_start: datetime | None,
    auto_scheduled: bool,
    now: datetime,
    max_lateness_s: float | None,
) -> bool:
    """Whether a scheduled sync started so late that the next scheduled one does its work.

    A sync queued behind a long ingest (the ``convoice-store`` queue runs one
    flow at a time) would otherwise run once per missed interval, back to back.
    Runs started by hand (``auto_scheduled`` False) always run.
    """
    if max_lateness_s is None or not auto_scheduled or expected_start is None:
        return False
    return (now - expected_start).total_seconds() > max_lateness_s


@flow(name="convoice-review-sync", log_prints=True)
def review_sync_flow(
    home: str | None = None,
    config: str | None = None,
    limit: int | None = None,
    max_lateness_s: float | None = None,
) -> SyncReport:
    """Pull completed annotations, then push the clips that (still) need review.

    Pull first, so clips people just decided do not go out again. Both halves
    are safe to repeat. A Label Studio that is down fails the run with
    :class:`ReviewIncomplete` (its report says what was done); nothing is lost,
    the next run does the rest. The pull writes labels and the speaker registry,
    so it holds the ``convoice-store`` global concurrency limit (the release
    flow holds it too; Prefect lets a missing limit pass) and the store's lock file on
    this machine (:func:`~convoice.orchestration.store_lock.machine_lock`). ``max_lateness_s``: a
    scheduled run that starts later than this after its time does nothing (see
    :func:`superseded`); the deployment sets it to its interval.
    """
    logger = get_run_logger()
    report = SyncReport(skipped=_too_late(max_lateness_s))
    if report.skipped:
        logger.info(report.summary())
        _sync_artifact(report)
        return report
    stage = "pull"
    try:
        with store_lock():
            report.pull = review_pull_flow(home=home, config=config)
        stage = "push"
        report.push = review_push_flow(home=home, config=config, limit=limit)
    except ReviewIncomplete as err:
        logger.error(
            "review sync stopped at the %s (nothing is lost; the next run does the rest): %s",
            stage,
            err.report.summary(),
        )
        raise
    logger.info(report.summary())
    _sync_artifact(report)
    return report


def _too_late(max_lateness_s: float | None) -> str:
    """Why this flow run is :func:`superseded` ("" when it is not, or runs outside a flow run)."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    expected = run.expected_start_time if run is not None else None
    if run is not None and superseded(
        expected, run.auto_scheduled, datetime.now(UTC), max_lateness_s
    ):
        return (
            f"started more than {max_lateness_s} s after its scheduled time {expected};"
            " a later scheduled sync does the same work"
        )
    return ""


def _sync_artifact(report: SyncReport) -> None:
    """What the run did, on the flow run's page (a failed run says it in its state)."""
    from prefect.artifacts import create_markdown_artifact

    if report.skipped:
        body = report.summary()
    else:
        pull = report.pull.summary() if report.pull else "not run"
        push = report.push.summary() if report.push else "not run"
        body = f"- **pull**: {pull}\n- **push**: {push}"
    create_markdown_artifact(f"# Review sync\n\n{body}\n", key="review-sync")
