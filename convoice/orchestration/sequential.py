"""The sequential step of an ingest: match a prepared recording against the registry, commit it.

Runs in the flow's process, one recording at a time in item order, holding
the ``convoice-store`` concurrency limit and reading the registry afresh, so
two ingests see each other's new speakers. A recording is committed in one
idempotent step (its rows, the done marker last: the ``commit`` task).
"""

from __future__ import annotations

import logging

from prefect import get_run_logger

from convoice.models import labelling
from convoice.models.registry import SpeakerMatch
from convoice.models.run_summary import RecordingOutcome
from convoice.orchestration.run import IngestRun
from convoice.orchestration.store_lock import store_lock
from convoice.records import Clip, MediaItem, Speaker, now
from convoice.storage import calibration
from convoice.tasks.commit import commit
from convoice.tasks.prepare import Prepared


def identify_and_route(
    rid: str, prepared: Prepared, run: IngestRun
) -> tuple[list[SpeakerMatch], list[Clip], list[Speaker]]:
    """Match the recording's speakers to the registry, build and route its clips.

    Returns the matches, the clips and the registry speakers they touch.
    """
    settings, registry, clock = run.settings, run.registry, run.clock
    with clock.stage("identify"):
        registry.refresh(run.store)
        ids, centroids = registry.matrix()
        scale = settings.similarity_scale()
        heard = [registry.speakers[s].n_recordings for s in ids]
        allowed = labelling.speaker_pitch_allowed(
            prepared.speakers, prepared.clip_f0, [registry.speakers[s].pitch for s in ids],
            settings.identity.pitch_veto_semitones,
        )  # fmt: skip
        matches = labelling.identify(rid, prepared.speakers, ids, centroids, scale, heard, allowed)
    with clock.stage("route"):
        vectors = prepared.vectors
        clips = labelling.build_clips(
            rid, prepared.seg, prepared.speakers, matches, vectors.clips,
            prepared.transcripts, settings.routing, scale,
            vectors.identity_clips if vectors.separate_identity else None,
            calibration.current(run.store.location, settings.encoder.campplus or None),
            ids, centroids, prepared.clip_f0,
        )  # fmt: skip
        touched = labelling.update_registry(rid, clips, matches, registry.speakers, now())
    return matches, clips, touched


def label_prepared(item: MediaItem, prepared: Prepared, run: IngestRun) -> RecordingOutcome | None:
    """Identify, route and commit one prepared recording; None when another run did it.

    Holds the store's lock file on this machine (and, with ``run.locked``, the
    ``convoice-store`` concurrency limit) and reads the registry inside it, so concurrent
    ingests match against each other's speakers. Its download is removed by the caller
    (:func:`convoice.flows.ingest_pipeline.label_all`), committed or not.
    """
    rid = item.recording_id
    with store_lock(run.locked, run.store.root):
        matches, clips, touched = identify_and_route(rid, prepared, run)
        with run.clock.stage("commit"):
            written = commit(run.store, item, prepared, clips, touched, run.settings, run.run_id)
        if not written:
            return None
        run.registry.committed(run.store, touched, run.locked)
    _log_clips(rid, clips)
    return RecordingOutcome.of(item, prepared.duration, clips, matches)


def _log_clips(rid: str, clips: list[Clip]) -> None:
    """One debug line per clip: its speaker, status and review reasons."""
    logger = get_run_logger()
    if not logger.isEnabledFor(logging.DEBUG):
        return
    for clip in clips:
        logger.debug(
            "clip %s: %s, %s %s",
            clip.clip_id,
            clip.speaker_id,
            clip.status,
            ",".join(str(r) for r in clip.review_reasons),
            extra={"recording_id": rid, "clip_id": clip.clip_id},
        )
