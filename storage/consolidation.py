"""Consolidating a store's speaker registry: read what it needs, plan, record, commit.

Order, for a run killed half-way: the machine's merges are recorded first
(``speaker_changes``; readers follow them at once), then the registry is
changed in one commit (kept sums grown, merged speakers gone). A run that
finds a recorded merge whose speaker is still in the registry finishes it
first, so running again is safe and changes nothing once done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from convoice.models.consolidate import Registry, plan_consolidation
from convoice.records import LabelSource, MachineMerge, Speaker, canonical
from convoice.review.decisions import merge_into
from convoice.storage import identity
from convoice.storage.labels import latest_labels
from convoice.storage.labels import now_iso as _now_iso
from convoice.storage.review_state import save_speakers
from convoice.storage.schema import CLIP_SCHEMA, SPEAKER_SCHEMA, table_to_speakers

if TYPE_CHECKING:
    from convoice.config import ConsolidationSettings
    from convoice.storage.store import Store


@dataclass
class ConsolidationReport:
    """What one consolidation did."""

    speakers_before: int = 0
    speakers_after: int = 0
    threshold: float = float("nan")
    merges: list[MachineMerge] = field(default_factory=list)
    finished: int = 0  # merges recorded by a killed run, completed now
    apart: int = 0  # pairs of speakers a person told apart
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"registry consolidated in {self.seconds:.2f} s: {self.speakers_before} speakers ->"
            f" {self.speakers_after} ({len(self.merges)} merged at cosine >= {self.threshold:.3f},"
            f" {self.finished} merges of an interrupted run finished, {self.apart} pairs kept"
            " apart by people)"
        )


def effective_speakers(
    store: Store, mapping: dict[str, str]
) -> tuple[pa.Table, list[tuple[str, str]]]:
    """(speaker_id, recording_id) of every clip as it reads now, and pairs people told apart.

    A clip's speaker is a person's label when there is one, else the machine's,
    both followed through ``mapping``. A person who moved a clip away from the
    machine's speaker told those two apart.
    """
    labels = latest_labels(store.labels())
    labels = labels.filter(pc.equal(labels["field"], "speaker_id"))
    if labels.num_rows == 0:  # the machine's pairs only: deduplicated before they are read
        found = store.tables.distinct("clips", CLIP_SCHEMA, ["speaker_id", "recording_id"])
        return _distinct_pairs(identity.follow(found, mapping)), []
    clips = store.tables.read(
        "clips", CLIP_SCHEMA, columns=["clip_id", "speaker_id", "recording_id"]
    )
    machine = identity.follow(clips, mapping)
    apart: list[tuple[str, str]] = []
    if labels.num_rows and machine.num_rows:
        where = pc.index_in(machine["clip_id"], value_set=labels["clip_id"].combine_chunks())
        human = labels["value"].combine_chunks().take(where)
        keep = pc.and_(pc.is_valid(human), pc.invert(pc.starts_with(pc.fill_null(human, ""), "__")))
        keep = pc.and_(keep, pc.not_equal(pc.fill_null(human, ""), ""))
        said = pc.if_else(keep, human, machine["speaker_id"])
        before = machine["speaker_id"].combine_chunks()
        machine = machine.set_column(1, "speaker_id", said)
        machine = identity.follow(machine, mapping)
        moved = pc.and_(keep, pc.not_equal(machine["speaker_id"], before))
        for a, b in zip(
            before.filter(moved).to_pylist(),
            machine["speaker_id"].filter(moved).to_pylist(),
            strict=True,
        ):
            if a and b:
                apart.append((a, b))
    return _distinct_pairs(machine), sorted(set(apart))


def _distinct_pairs(table: pa.Table) -> pa.Table:
    """The distinct (speaker_id, recording_id) rows of ``table``."""
    return (
        table.select(["speaker_id", "recording_id"])
        .group_by(["speaker_id", "recording_id"], use_threads=False)
        .aggregate([])
    )


def people_ids(store: Store, mapping: dict[str, str]) -> set[str]:
    """Speaker ids people gave clips (as they read now): consolidation never merges them away."""
    labels = store.labels()
    said = labels.filter(pc.equal(labels["field"], "speaker_id"))["value"].to_pylist()
    return {canonical(v, mapping) for v in said if v}


def registry_of(speakers: list[Speaker], pairs: pa.Table, pinned: set[str]) -> Registry:
    """The :class:`Registry` consolidation plans on (recordings from the clips as read)."""
    recordings: dict[str, set[str]] = {}
    for spk, rec in zip(
        pairs["speaker_id"].to_pylist(), pairs["recording_id"].to_pylist(), strict=True
    ):
        recordings.setdefault(spk, set()).add(rec)
    return Registry(
        ids=[s.speaker_id for s in speakers],
        sums=np.stack([s.vector_sum for s in speakers]).astype(np.float32),
        rank=[(0 if s.name else 1, -s.n_clips, s.first_seen) for s in speakers],
        recordings=[frozenset(recordings.get(s.speaker_id, ())) for s in speakers],
        pinned=[s.speaker_id in pinned or s.label_source == LabelSource.HUMAN for s in speakers],
    )


def fold(kept: Speaker, merged: Speaker, at: str) -> Speaker:
    """``kept`` grown by ``merged`` as a person's merge grows it, but who made it stays."""
    return replace(merge_into(kept, merged, at), label_source=kept.label_source)


def apply_merges(
    registry: dict[str, Speaker], steps: dict[str, str], at: str
) -> tuple[set[str], list[Speaker]]:
    """Fold every speaker ``steps`` maps away into its survivor; (changed ids, removed ones)."""
    changed: set[str] = set()
    removed: list[Speaker] = []
    for old in list(steps):
        target = canonical(old, steps)
        if old not in registry or target == old or target not in registry:
            continue
        gone = registry.pop(old)
        registry[target] = fold(registry[target], gone, at)
        removed.append(gone)
        changed.add(target)
        changed.discard(old)
    return changed, removed


def consolidate_store(
    store: Store, cfg: ConsolidationSettings, run_id: str = "", at: str | None = None
) -> ConsolidationReport:
    """Heal ``store``'s registry (see :mod:`convoice.models.consolidate`); safe to repeat."""
    started = time.perf_counter()
    at = at or _now_iso()
    report = ConsolidationReport()
    registry = {
        s.speaker_id: s for s in table_to_speakers(store.tables.scan("speakers", SPEAKER_SCHEMA))
    }
    report.speakers_before = len(registry)
    pending = {old: new for old, new in identity.machine_aliases(store).items() if old in registry}
    changed, removed = apply_merges(registry, pending, at)
    report.finished = len(removed)
    mapping = identity.identity_map(store)
    pairs, apart = effective_speakers(store, mapping)
    pinned = people_ids(store, mapping)
    report.apart = len(apart)
    speakers = [registry[s] for s in sorted(registry)]
    if speakers:
        report.threshold = cfg.threshold(len(speakers[0].vector_sum))
        report.merges = plan_consolidation(
            registry_of(speakers, pairs, pinned),
            report.threshold,
            apart,
            cfg.probe,
            cfg.guards(),
        )
    identity.record_changes(store, report.merges, at, run_id)
    more, gone = apply_merges(registry, {m.merged: m.kept for m in report.merges}, at)
    changed = (changed | more) - {s.speaker_id for s in gone}
    save_speakers(store, [registry[s] for s in sorted(changed)], [*removed, *gone])
    report.speakers_after = len(registry)
    report.seconds = time.perf_counter() - started
    return report
