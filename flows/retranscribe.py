"""Round two: learn the vocabulary from people's corrections, transcribe again what needs it.

``convoice retranscribe`` (and the ``vocabulary`` step of ``convoice loop``):

1. learn the words Whisper got wrong from every transcript a person corrected
   since the last round (:func:`convoice.storage.vocabulary.learn_from_store`);
2. pick, in each recording whose channel has a vocabulary (of one recording,
   or one channel, when asked), the machine transcripts not made with that
   vocabulary yet (with ``review_only``: only those that wait for review or
   score below the bar routing holds them to, per language): Whisper base is often
   sure of a wrong name, so accepted clips are transcribed again too; clips
   already tried with the same model and vocabulary are skipped;
3. transcribe them again, recording by recording, with their channel's
   vocabulary (``[asr] vocabulary_mode``); a new transcript replaces the old
   one only when it scores better, and the clip is re-routed; the machine text
   kept is then post-corrected towards the words people taught the channel
   (:mod:`convoice.models.post_correction`), which the clip records.

A transcript a person wrote is never a candidate: it lives in the labels
table, which this flow only reads. It only composes.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from prefect import flow, get_run_logger

from convoice.config import Settings, load_settings
from convoice.engines.round_two import rare_word, whisper
from convoice.models.round_two import (
    Revision,
    attempt_key,
    attempt_way,
    tried,
    wants_round_two,
)
from convoice.models.vocabulary import Term, active_for, taught_for
from convoice.records import ClipStatus, StoredClip
from convoice.storage import Store
from convoice.storage.rows import clip_records
from convoice.storage.vocabulary import channels, learn_from_store, read_terms
from convoice.tasks.retranscribe import retranscribe_recording


@dataclass
class RoundTwoReport:
    """What round two did, and the review share of the store before and after."""

    learned_terms: int = 0  # terms that changed (new or counted again)
    learned_clips: int = 0  # corrected clips that taught a word
    candidates: int = 0
    already_tried: int = 0
    transcribed: int = 0
    replaced: int = 0
    text_changed: int = 0
    post_corrected: int = 0  # clips whose machine text was post-corrected towards taught words
    fixes: int = 0  # spans post-corrected
    accepted_now: int = 0  # clips that left the review queue
    clips: int = 0
    review_before: int = 0
    review_after: int = 0
    audio_s: float = 0.0  # audio transcribed again
    wall_s: float = 0.0
    model: str = ""
    recordings: list[str] = field(default_factory=list)

    @property
    def seconds_per_audio_hour(self) -> float:
        return self.wall_s / (self.audio_s / 3600) if self.audio_s else 0.0

    def summary(self) -> str:
        share = lambda n: f"{n / self.clips:.1%}" if self.clips else "-"  # noqa: E731
        return (
            f"vocabulary: {self.learned_terms} terms learned from {self.learned_clips} corrected"
            f" clips; round two ({self.model}): {self.transcribed} clips transcribed again"
            f" ({self.already_tried} tried before), {self.replaced} replaced by a better-scored"
            f" transcript, {self.text_changed} with new text ({self.post_corrected} post-corrected"
            f" towards taught words, {self.fixes} spans), {self.accepted_now} left review;"
            f" review {self.review_before} -> {self.review_after} of {self.clips} clips"
            f" ({share(self.review_before)} -> {share(self.review_after)});"
            f" {self.wall_s:.1f} s for {self.audio_s:.1f} s of audio"
            f" ({self.seconds_per_audio_hour:.0f} s per audio hour)"
        )


def _in_scope(
    rows: list[StoredClip], recording: str | None, channel: str | None, where: dict[str, str]
) -> list[StoredClip]:
    if recording:
        rows = [r for r in rows if r.recording_id == recording]
    if channel:
        rows = [r for r in rows if where.get(r.recording_id) == channel]
    return rows


def _count(report: RoundTwoReport, revisions: list[Revision]) -> None:
    report.transcribed += len(revisions)
    report.replaced += sum(r.replaced for r in revisions)
    report.text_changed += sum(r.text_changed for r in revisions)
    report.post_corrected += sum(bool(r.fixes) for r in revisions)
    report.fixes += sum(len(r.fixes) for r in revisions)
    report.accepted_now += sum(
        r.status_before == ClipStatus.REVIEW and r.status_after == ClipStatus.ACCEPTED
        for r in revisions
    )


@dataclass(frozen=True)
class _Pass:
    """What every recording of one round-two pass shares."""

    store: Store
    settings: Settings
    model: str  # "" for ``[asr] model``
    name: str  # the Whisper's name, as attempts record it
    review_only: bool
    terms: list[Term]  # the store's vocabulary, removed terms included
    where: dict[str, str]  # recording id -> its channel


def _recording(report: RoundTwoReport, run: _Pass, rid: str, group: list[StoredClip]) -> None:
    """Transcribe again the clips of one recording that want it (and were not tried so)."""
    settings = run.settings
    channel = run.where.get(rid, "")
    words = active_for(run.terms, channel, settings.asr.vocabulary_size)
    if not words and not run.model:
        return  # nothing new to tell the same Whisper
    every = not run.review_only
    wanted = [
        r for r in group
        if wants_round_two(r, settings.routing, every)
    ]  # fmt: skip
    cfg = settings.asr
    way = attempt_way(
        cfg.vocabulary_mode,
        cfg.round_two_beam_size,
        cfg.post_correction_distance,
        cfg.post_correction_margin,
    )
    key = attempt_key(run.name, way, words)
    todo = [r for r in wanted if not tried(r, key)]
    report.candidates += len(wanted)
    report.already_tried += len(wanted) - len(todo)
    if not todo:
        return
    taught = taught_for(run.terms, channel)
    revisions = retranscribe_recording(run.store, todo, settings, run.model, words, key, taught)
    _count(report, revisions)
    report.audio_s += sum(float(r.end) - float(r.start) for r in todo)
    report.recordings.append(rid)


@flow(name="convoice-retranscribe", log_prints=True)
def retranscribe_flow(
    home: str | None = None,
    config: str | None = None,
    recording: str | None = None,
    channel: str | None = None,
    model: str = "",
    review_only: bool = False,
) -> RoundTwoReport:
    """Learn the vocabulary, then transcribe again the clips that need it (module docs).

    ``review_only``: only clips waiting for review or below the confidence bar,
    not every machine transcript made without the channel's current vocabulary.
    """
    logger = get_run_logger()
    settings = load_settings(config, home=home)
    store = Store.open(settings)
    started = time.perf_counter()
    report = RoundTwoReport()
    name, _ = whisper(settings, model)  # fails here, clearly, when the model cannot load
    report.model = name
    learned = learn_from_store(store, rare_word(model or settings.asr.model))
    report.learned_terms, report.learned_clips = len(learned.changed), learned.new_clips
    where = channels(store)
    if (recording or channel) and not _in_scope(
        [StoredClip("", recording_id=r) for r in where], recording, channel, where
    ):
        raise ValueError(f"no recording {recording!r} / channel {channel!r} in the store")
    rows = clip_records(store.materialized_clips())
    report.clips = len(rows)
    report.review_before = sum(r.status == ClipStatus.REVIEW for r in rows)
    by_recording: dict[str, list[StoredClip]] = defaultdict(list)
    for row in _in_scope(rows, recording, channel, where):
        by_recording[row.recording_id].append(row)
    run = _Pass(store, settings, model, name, review_only, read_terms(store), where)
    for rid, group in sorted(by_recording.items()):
        _recording(report, run, rid, group)
    after = clip_records(store.materialized_clips().select(["clip_id", "status"]))
    report.review_after = sum(r.status == ClipStatus.REVIEW for r in after)
    report.wall_s = time.perf_counter() - started
    logger.info(report.summary())
    return report
