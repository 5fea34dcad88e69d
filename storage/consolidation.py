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

from convoice.models.consolidate import (
    ConsolidationError,
    HeldApart,
    Parts,
    Registry,
    held_apart,
    plan_healing,
)
from convoice.records import (
    CONSOLIDATE_BY,
    ChangeKind,
    IdentityChange,
    LabelSource,
    MachineMerge,
    MachineSplit,
    Speaker,
    canonical,
)
from convoice.review.decisions import merge_into
from convoice.storage import identity
from convoice.storage.labels import latest_labels
from convoice.storage.labels import now_iso as _now_iso
from convoice.storage.review_state import save_speakers
from convoice.storage.schema import CLIP_SCHEMA, SPEAKER_SCHEMA, table_to_speakers

if TYPE_CHECKING:
    from convoice.config import ConsolidationSettings
    from convoice.storage.store import Store


class UnfinishedRelabel(ConsolidationError):
    """A re-label was killed half-way (its ``relabel`` row is open): consolidating would
    redo its splits and overwrite their pieces' registry entries."""


def refuse_open_relabel(store: Store) -> None:
    """:class:`UnfinishedRelabel` when a re-label left its mark open (:mod:`.relabel`)."""
    opened = identity.open_relabels(store)
    if opened:
        mark = opened[-1]
        encoder = mark.run_id.split(" ")[1] if mark.run_id.count(" ") >= 2 else "?"
        raise UnfinishedRelabel(
            f"a re-label with encoder {encoder} started at {mark.at} did not finish (killed"
            " half-way?): consolidating now could redo its splits and drop what merges added"
            f" to their pieces; finish it first with `convoice encoder promote {encoder}`"
        )


@dataclass
class ConsolidationReport:
    """What one consolidation did."""

    speakers_before: int = 0
    speakers_after: int = 0
    threshold: float = float("nan")
    merges: list[MachineMerge] = field(default_factory=list)
    splits: list[MachineSplit] = field(default_factory=list)
    split_threshold: float | None = None  # None: the split step is off
    finished: int = 0  # merges and splits recorded by a killed run, completed now
    apart: int = 0  # pairs of speakers a person told apart
    seconds: float = 0.0

    def summary(self) -> str:
        split = (
            "split step off"
            if self.split_threshold is None
            else f"{len(self.splits)} split at cosine < {self.split_threshold:.3f}"
        )
        return (
            f"registry consolidated in {self.seconds:.2f} s: {self.speakers_before} speakers ->"
            f" {self.speakers_after} ({split}, {len(self.merges)} merged at cosine >="
            f" {self.threshold:.3f}, {self.finished} changes of an interrupted run finished,"
            f" {self.apart} pairs kept apart by people)"
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
    splits = identity.machine_splits(store)
    pairs = ["speaker_id", "recording_id"]
    if labels.num_rows == 0:  # the machine's pairs only: deduplicated before they are read
        found = store.tables.distinct("clips", CLIP_SCHEMA, pairs)
        return _distinct_pairs(identity.follow(identity.follow_splits(found, splits), mapping)), []
    # The clips nobody labelled: their pairs deduplicated by the Delta engine; the labelled
    # ones (a few) read one row each, as a person may have moved each of them.
    unlabelled, clips = _machine_rows(store, labelled=False), _machine_rows(store, labelled=True)
    if unlabelled is None or clips is None:  # a store written before a column: read it all
        unlabelled = CLIP_SCHEMA.empty_table().select(pairs)
        clips = store.tables.read("clips", CLIP_SCHEMA, columns=["clip_id", *pairs])
    unlabelled = identity.follow(identity.follow_splits(unlabelled, splits), mapping)
    machine = identity.follow(identity.follow_splits(clips, splits), mapping)
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
    both = pa.concat_tables([unlabelled.select(pairs), machine.select(pairs)])
    return _distinct_pairs(both), sorted(set(apart))


# The clips a person gave a speaker label (any label row: the latest may say "none").
_LABELLED = 'SELECT "clip_id" FROM labels WHERE "field" = \'speaker_id\' AND "clip_id" IS NOT NULL'


def _machine_rows(store: Store, labelled: bool) -> pa.Table | None:
    """The machine rows of clips a person gave a speaker label (``labelled``), or of the others.

    Labelled: (clip_id, speaker_id, recording_id), one row each (a person may have moved
    each). Unlabelled: their distinct (speaker_id, recording_id), deduplicated by the engine.
    None when a table lacks a column (a store written before it: the caller reads instead).
    """
    columns = ["speaker_id", "recording_id"]
    columns = ["clip_id", *columns] if labelled else columns
    wanted = pa.schema([CLIP_SCHEMA.field(c) for c in columns])
    select = "SELECT" if labelled else "SELECT DISTINCT"
    quoted = ", ".join(f'"{c}"' for c in columns)
    where = "IN" if labelled else "NOT IN"
    sql = f'{select} {quoted} FROM clips WHERE "clip_id" {where} ({_LABELLED})'
    return store.tables.query(sql, ["clips", "labels"], wanted)


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


def registry_of(
    speakers: list[Speaker], pairs: pa.Table, pinned: set[str], pitch_veto: float = 0.0
) -> Registry:
    """The :class:`Registry` consolidation plans on (recordings from the clips as read);
    ``pitch_veto``: semitones (0: off), each speaker's pitch range from its registry row."""
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
        pitch=np.array([s.pitch for s in speakers], np.float64).reshape(-1, 2),
        pitch_veto=pitch_veto,
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


@dataclass
class _Piece:
    """What a split moves: its clips' sums (all, and those the registry counted) and counts."""

    vector_sum: np.ndarray
    counted_sum: np.ndarray
    clips: int = 0
    counted_clips: int = 0
    duration: float = 0.0
    counted_duration: float = 0.0
    machine_ids: set[str] = field(default_factory=set)


_NOT_ABSORBED = r'"absorbed":\s*false'


def _batch_parts(
    read: pa.Table, speakers: pa.Array, labelled: pa.Array | None
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[tuple[int, str]]] | None:
    """One slice of clip rows (as read now) grouped by (speaker, recording): the groups' keys,
    sums and counted sums of unit embeddings, [clips, counted clips, seconds, counted seconds],
    and (group, machine id) pairs; None when no row is wanted."""
    keep = pc.and_(
        pc.is_in(read["speaker_id"], value_set=speakers), pc.is_valid(read["speaker_embedding"])
    )
    if labelled is not None:
        keep = pc.and_(keep, pc.invert(pc.is_in(read["clip_id"], value_set=labelled)))
    read = read.filter(keep)
    if read.num_rows == 0:
        return None
    flat = read["speaker_embedding"].combine_chunks()
    dim = len(flat[0])
    vectors = flat.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    vectors /= np.where(norms > 0, norms, 1.0)[:, None].astype(np.float32)
    extra = pc.fill_null(read["extra"], "")
    counted = pc.invert(pc.match_substring_regex(extra, _NOT_ABSORBED)).to_numpy(
        zero_copy_only=False
    )
    duration = pc.fill_null(read["duration"], 0.0).to_numpy(zero_copy_only=False)
    key = pc.binary_join_element_wise(read["speaker_id"], read["recording_id"], _SEP)
    groups = key.combine_chunks().dictionary_encode()
    codes = groups.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = groups.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(names)))
    sums = np.add.reduceat(vectors[order], starts, axis=0)
    counted_sums = sums.copy()  # less the clips the registry did not count (the unsure ones)
    skipped = np.flatnonzero(~counted)
    np.subtract.at(counted_sums, codes[skipped], vectors[skipped])
    n = len(names)
    counts = np.stack([
        np.bincount(codes, minlength=n),
        np.bincount(codes, weights=counted, minlength=n),
        np.bincount(codes, weights=duration, minlength=n),
        np.bincount(codes, weights=duration * counted, minlength=n),
    ], axis=1)  # fmt: skip
    pairs = pa.table({"g": groups.indices, "m": read["machine_id"].combine_chunks()})
    found = pairs.group_by(["g", "m"], use_threads=False).aggregate([])
    machine = list(zip(found["g"].to_pylist(), found["m"].to_pylist(), strict=True))
    return names, sums, counted_sums, counts, machine


_SEP = "\x1f"


def recording_parts(
    store: Store, speakers: set[str], mapping: dict[str, str], labelled: set[str]
) -> dict[tuple[str, str], _Piece]:
    """(speaker as read now, recording) -> its clips, for the machine's clips of ``speakers``.

    Clips a person labelled are left out: a split never moves them (their
    label wins over the machine's id anyway). One pass over the clip rows a
    slice at a time (memory: the slice and one sum per group).
    """
    out: dict[tuple[str, str], _Piece] = {}
    if not speakers:
        return out
    columns = ["clip_id", "speaker_id", "recording_id", "duration", "speaker_embedding", "extra"]
    splits = identity.machine_splits(store)
    wanted = pa.array(sorted(speakers), pa.string())
    people = pa.array(sorted(labelled), pa.string()) if labelled else None
    index: dict[str, int] = {}
    codes, sums, counted, counts = [], [], [], []
    machine: dict[int, set[str]] = {}
    for raw in store.tables.batches("clips", CLIP_SCHEMA, columns):
        raw = raw.append_column("machine_id", raw["speaker_id"])
        found = _batch_parts(
            identity.follow(identity.follow_splits(raw, splits), mapping), wanted, people
        )
        if found is None:
            continue
        names, part_sums, part_counted, part_counts, pairs = found
        local = np.array([index.setdefault(name, len(index)) for name in names], np.int64)
        codes.append(local)
        sums.append(part_sums)
        counted.append(part_counted)
        counts.append(part_counts)
        for g, m in pairs:
            machine.setdefault(int(local[g]), set()).add(m)
    if not index:
        return out
    code = np.concatenate(codes)  # a group met in several slices: its rows summed
    order = np.argsort(code, kind="stable")
    starts = np.searchsorted(code[order], np.arange(len(index)))
    total = np.add.reduceat(np.concatenate(sums)[order], starts, axis=0)
    total_counted = np.add.reduceat(np.concatenate(counted)[order], starts, axis=0)
    number = np.add.reduceat(np.concatenate(counts)[order], starts, axis=0)
    for name, g in index.items():
        speaker, recording = name.split(_SEP, 1)
        out[(speaker, recording)] = _Piece(
            total[g],
            total_counted[g],
            int(number[g, 0]),
            int(number[g, 1]),
            float(number[g, 2]),
            float(number[g, 3]),
            machine.get(g, set()),
        )
    return out


def parts_table(registry: Registry, parts: dict[tuple[str, str], _Piece]) -> Parts:
    """The :class:`Parts` of ``registry``'s rows from :func:`recording_parts`."""
    position = {s: i for i, s in enumerate(registry.ids)}
    keys = sorted(k for k in parts if k[0] in position)
    dim = registry.sums.shape[1]
    return Parts(
        speaker=np.array([position[k[0]] for k in keys], np.int64),
        recording=[k[1] for k in keys],
        sums=np.array([parts[k].vector_sum for k in keys], np.float32).reshape(-1, dim),
        counted=np.array([parts[k].counted_sum for k in keys], np.float32).reshape(-1, dim),
        clips=np.array([parts[k].clips for k in keys], np.int64),
    )


def _with_rest(
    shrunk: Speaker, split: MachineSplit, parts: dict[tuple[str, str], _Piece]
) -> Speaker:
    """``shrunk`` (no absorbed clip left after ``split``) given its remaining recordings'
    clips, as a piece is given its own (its zero centroid could never merge nor match:
    tuning seed 14 left a pyannote_diane id of three clips so); as it was when none is known."""
    rest = [p for (s, r), p in parts.items() if s == split.split and r not in split.recordings]
    if not rest:
        return shrunk
    dim = len(shrunk.vector_sum)
    return replace(
        shrunk,
        vector_sum=sum((p.vector_sum for p in rest), np.zeros(dim)).astype(np.float32),
        n_clips=sum(p.clips for p in rest),
        total_duration=sum(p.duration for p in rest),
        n_recordings=len(rest),
    )


def split_off(
    registry: dict[str, Speaker],
    split: MachineSplit,
    parts: dict[tuple[str, str], _Piece],
    at: str,
) -> None:
    """Move ``split``'s recordings from its speaker to a new one (a fresh centroid)."""
    source = registry[split.split]
    moved = [parts[(split.split, r)] for r in split.recordings if (split.split, r) in parts]
    dim = len(source.vector_sum)
    counted = sum((p.counted_sum for p in moved), np.zeros(dim))
    shrunk = replace(
        source,
        vector_sum=(source.vector_sum - counted).astype(np.float32),
        n_clips=max(0, source.n_clips - sum(p.counted_clips for p in moved)),
        total_duration=max(0.0, source.total_duration - sum(p.counted_duration for p in moved)),
        n_recordings=max(0, source.n_recordings - sum(p.counted_clips > 0 for p in moved)),
        updated_at=at,
    )
    if source.last_recording_id in split.recordings:  # its latest recording is the piece's now
        shrunk = replace(shrunk, last_recording_id="", last_sum=None, last_n=0, last_duration=0.0)
    if shrunk.n_clips == 0:  # every absorbed clip left with the piece: its other clips' sum
        shrunk = _with_rest(shrunk, split, parts)
    registry[split.split] = shrunk
    registry[split.piece] = Speaker(
        split.piece,
        sum((p.vector_sum for p in moved), np.zeros(dim)).astype(np.float32),
        sum(p.clips for p in moved),
        sum(p.duration for p in moved),
        len(moved),
        at,
        at,
    )


def split_changes(
    splits: list[MachineSplit], parts: dict[tuple[str, str], _Piece], at: str, run_id: str
) -> list[IdentityChange]:
    """The ``speaker_changes`` rows of ``splits``: one per machine id and recording moved."""
    return [
        IdentityChange(
            old_id=s.split,
            new_id=s.piece,
            kind=ChangeKind.SPLIT,
            why=s.why,
            decided_by=CONSOLIDATE_BY,
            at=at,
            similarity=s.similarity,
            run_id=run_id,
            recording_id=recording,
            machine_id=machine_id,
        )
        for s in splits
        for recording in s.recordings
        for machine_id in sorted(parts[(s.split, recording)].machine_ids)
    ]


def _pending_splits(
    store: Store, registry: dict[str, Speaker], mapping: dict[str, str]
) -> list[MachineSplit]:
    """Splits a killed run recorded but did not commit: the piece is not in the registry,
    and either its speaker was not updated since or nothing merged the piece away.
    """
    grouped: dict[tuple[str, str, str], set[str]] = {}
    for c in identity.split_records(store):
        source = registry.get(c.old_id)
        if c.new_id in registry or source is None:
            continue
        if source.updated_at >= c.at and c.new_id in mapping:
            continue
        grouped.setdefault((c.old_id, c.new_id, c.at), set()).add(c.recording_id or "")
    return [
        MachineSplit(old, new, tuple(sorted(recs)), float("nan"), "an interrupted run's split")
        for (old, new, _), recs in sorted(grouped.items())
    ]


def with_split_history(store: Store, apart: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``apart`` (the pairs people told apart) and every pair of ids a split ever made: what
    consolidation keeps apart (a split is never undone by a merge)."""
    return [*apart, *((c.old_id, c.new_id) for c in identity.split_records(store, history=True))]


def consolidate_store(
    store: Store,
    cfg: ConsolidationSettings,
    run_id: str = "",
    at: str | None = None,
    pitch_veto: float = 0.0,
) -> ConsolidationReport:
    """Heal ``store``'s registry (see :mod:`convoice.models.consolidate`); safe to repeat.

    ``pitch_veto`` (``[identity] pitch_veto_semitones``; 0: off): speakers whose pitch
    ranges lie further apart never merge. A split's piece starts with an unknown pitch
    (it never vetoes until it absorbs clips); the id it left keeps its range.

    Splits (when ``cfg.split``) and merges are recorded first, then the
    registry changes in one commit. Refuses (:class:`UnfinishedRelabel`) while a
    re-label killed half-way is open.
    """
    refuse_open_relabel(store)
    started = time.perf_counter()
    at = at or _now_iso()
    report = ConsolidationReport()
    registry = {
        s.speaker_id: s for s in table_to_speakers(store.tables.scan("speakers", SPEAKER_SCHEMA))
    }
    report.speakers_before = len(registry)
    mapping = identity.identity_map(store)
    labelled = _labelled_clips(store)
    changed: set[str] = set()
    pending = _pending_splits(store, registry, mapping)
    if pending:
        # the clips already read as split: their parts sit under the pieces' ids (not followed
        # into what the killed run merged them with: that merge is finished next)
        pieces = {p.piece for p in pending}
        unmerged = {old: new for old, new in mapping.items() if old not in pieces}
        parts = recording_parts(store, pieces, unmerged, labelled)
        for p in pending:
            moved = {
                (p.split, r): parts[(p.piece, r)] for r in p.recordings if (p.piece, r) in parts
            }
            split_off(registry, p, moved, at)
            changed |= {p.split, p.piece}
    report.finished = len(pending)
    aliases = {old: new for old, new in identity.machine_aliases(store).items() if old in registry}
    more, removed = apply_merges(registry, aliases, at)
    changed |= more
    report.finished += len(removed)
    pairs, apart = effective_speakers(store, mapping)
    pinned = people_ids(store, mapping)
    report.apart = len(apart)
    speakers = [registry[s] for s in sorted(registry)]
    parts = {}
    if speakers:
        report.threshold = cfg.threshold(len(speakers[0].vector_sum))
        rule = cfg.split_rule()
        report.split_threshold = None if rule is None else rule.threshold
        plan = registry_of(speakers, pairs, pinned, pitch_veto)
        if rule is not None:
            several = {
                s
                for s, recs, pin in zip(plan.ids, plan.recordings, plan.pinned, strict=True)
                if len(recs) > 1 and not pin
            }
            parts = recording_parts(store, several, mapping, labelled)
        apart = with_split_history(store, apart)
        report.splits, report.merges = plan_healing(
            plan, parts_table(plan, parts), report.threshold, rule, apart, cfg.probe, cfg.guards()
        )
    identity.record_changes(
        store, report.merges, at, run_id, split_changes(report.splits, parts, at, run_id)
    )
    for split in report.splits:
        split_off(registry, split, parts, at)
        changed |= {split.split, split.piece}
    more, gone = apply_merges(registry, {m.merged: m.kept for m in report.merges}, at)
    changed = (changed | more) - {s.speaker_id for s in [*removed, *gone]}
    save_speakers(store, [registry[s] for s in sorted(changed)], [*removed, *gone])
    report.speakers_after = len(registry)
    report.seconds = time.perf_counter() - started
    return report


def explain_store(
    store: Store, cfg: ConsolidationSettings, pitch_veto: float = 0.0, floor: float = 0.30
) -> list[HeldApart]:
    """Why consolidation leaves each pair of ``store``'s speakers (``floor`` alike or more)
    apart, on the registry as it reads now (:func:`convoice.models.consolidate.held_apart`;
    reads only, changes nothing). The split step is not replayed: run it on a consolidated
    store to see which rule keeps each remaining split."""
    speakers = table_to_speakers(store.tables.scan("speakers", SPEAKER_SCHEMA))
    if not speakers:
        return []
    speakers = sorted(speakers, key=lambda s: s.speaker_id)
    mapping = identity.identity_map(store)
    pairs, apart = effective_speakers(store, mapping)
    plan = registry_of(speakers, pairs, people_ids(store, mapping), pitch_veto)
    apart = with_split_history(store, apart)
    threshold = cfg.threshold(len(speakers[0].vector_sum))
    return held_apart(plan, threshold, apart, cfg.probe, cfg.guards(), floor)


def _labelled_clips(store: Store) -> set[str]:
    """Clips a person gave a speaker label (a split never moves them)."""
    labels = store.labels()
    said = labels.filter(pc.equal(labels["field"], "speaker_id"))
    return set(said["clip_id"].to_pylist())
