"""Identity changes the machine made, and what every reader of clips sees through them.

``tables/speaker_changes``: one row per identity folded into another by
consolidation (``old_id`` lives on as ``new_id``; when, why, how alike). It
sits beside ``tables/speaker_merges`` (the merges people made in review).

Machine rows of the ``clips`` table are never rewritten for a merge: clips
are read through the map of both tables (:func:`follow`), so every reader
(review, releases, benchmarks) sees the surviving id, people's labels stay
as they were written, and a release made before a merge keeps its files.
Each release carries the map as of its making (``speaker_changes.parquet``,
people's merges included), so a pulled release can translate the ids of an
older one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from convoice.records import (
    CONSOLIDATE_BY,
    RELABEL_BY,
    ChangeKind,
    IdentityChange,
    MachineMerge,
    canonical,
)

if TYPE_CHECKING:
    from convoice.storage.store import Store

CHANGES = "speaker_changes"
CHANGE_SCHEMA = pa.schema(
    [
        ("old_id", pa.string()),
        ("new_id", pa.string()),
        ("kind", pa.string()),  # a ChangeKind: "merge", "split", "relabel"
        ("why", pa.string()),
        ("decided_by", pa.string()),
        ("at", pa.string()),
        ("similarity", pa.float64()),
        ("run_id", pa.string()),
        ("recording_id", pa.string()),  # a split's: the recording whose clips moved
        ("machine_id", pa.string()),  # a split's: the machine's id on those clips' rows
    ]
)


def changes(store: Store, version: int | None = None) -> pa.Table:
    """Every machine identity change, in the order made (empty when none)."""
    return store.tables.read(CHANGES, CHANGE_SCHEMA, version=version)


def change_records(table: pa.Table) -> list[IdentityChange]:
    """The rows of a ``speaker_changes`` table as records, in table order."""
    return [IdentityChange.from_row(row) for row in table.to_pylist()]


def changes_table(records: Iterable[IdentityChange]) -> pa.Table:
    """Identity changes back to a table of :data:`CHANGE_SCHEMA` (built column by column)."""
    rows = list(records)
    columns = [
        pa.array([str(c.kind) if f.name == "kind" else getattr(c, f.name) for c in rows], f.type)
        for f in CHANGE_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=CHANGE_SCHEMA)


def _of_kind(table: pa.Table, kind: ChangeKind) -> pa.Table:
    """The rows of ``kind`` (rows without a kind are merges: written before splits existed)."""
    kinds = pc.fill_null(table["kind"], str(ChangeKind.MERGE))
    return table.filter(pc.equal(kinds, str(kind)))


def machine_aliases(store: Store) -> dict[str, str]:
    """old id -> the id it was folded into by consolidation (one step; chains via canonical)."""
    table = _of_kind(changes(store), ChangeKind.MERGE)
    return dict(zip(table["old_id"].to_pylist(), table["new_id"].to_pylist(), strict=True))


def since_relabel(table: pa.Table) -> pa.Table:
    """The rows made after the latest re-labelling (all rows when the store was never re-labelled).

    A split row names the machine id on the clip rows it moves; a re-labelling
    rewrites those ids (carrying each split into them, :mod:`convoice.storage.relabel`),
    so the split rows before it are history: applied to the new ids they would
    move clips the split never meant.
    """
    marks = _of_kind(table, ChangeKind.RELABEL)
    if marks.num_rows == 0:
        return table
    latest = pc.max(marks["at"]).as_py()  # by time: a table's rows need not come in append order
    return table.filter(pc.greater(pc.fill_null(table["at"], ""), latest))


def machine_splits(store: Store) -> dict[tuple[str, str], str]:
    """(machine id on a clip row, recording) -> the id a split gave those clips (latest wins).

    Only the splits since the latest re-labelling (:func:`since_relabel`).
    """
    table = _of_kind(since_relabel(changes(store)), ChangeKind.SPLIT).sort_by("at")  # stable
    keys = zip(table["machine_id"].to_pylist(), table["recording_id"].to_pylist(), strict=True)
    return dict(zip(keys, table["new_id"].to_pylist(), strict=True))


def split_records(store: Store, history: bool = False) -> list[IdentityChange]:
    """The split rows since the latest re-labelling (``history``: every one), in the order made."""
    table = changes(store)
    return change_records(_of_kind(table if history else since_relabel(table), ChangeKind.SPLIT))


def record_relabel(store: Store, encoder: str, at: str, run_id: str) -> None:
    """Mark the split rows so far as history: the clip rows are about to be re-labelled.

    The first of two rows: :func:`record_relabel_done` with the same ``run_id`` says
    the re-label finished; until then it is open (:func:`open_relabels`).
    """
    if not run_id:
        raise ValueError("a re-label's mark needs a run id (its done row names it)")
    mark = IdentityChange(
        old_id="",
        new_id="",
        kind=ChangeKind.RELABEL,
        why=f"clip rows re-labelled with encoder {encoder}: the splits before this row are"
        " carried into the ids it wrote and no longer applied to clip rows",
        decided_by=RELABEL_BY,
        at=at,
        run_id=run_id,
    )
    store.tables.append(CHANGES, changes_table([mark]))


def record_relabel_done(store: Store, run_ids: Sequence[str], at: str) -> None:
    """Close the re-labels ``run_ids`` (their clip rows, contributions and registry are written)."""
    done = [
        IdentityChange(
            old_id="",
            new_id="",
            kind=ChangeKind.RELABEL_DONE,
            why="the re-label this run id names finished",
            decided_by=RELABEL_BY,
            at=at,
            run_id=run_id,
        )
        for run_id in run_ids
    ]
    if done:
        store.tables.append(CHANGES, changes_table(done))


def open_relabels(store: Store) -> list[IdentityChange]:
    """The ``relabel`` rows no ``relabel-done`` row closes: re-labels killed half-way.

    Rows written before the done rows existed (no run id) count as finished.
    """
    table = changes(store)
    closed = set(_of_kind(table, ChangeKind.RELABEL_DONE)["run_id"].to_pylist())
    marks = change_records(_of_kind(table, ChangeKind.RELABEL))
    return [m for m in marks if m.run_id and m.run_id not in closed]


def open_splits(store: Store) -> dict[tuple[str, str], str]:
    """(machine id, recording) -> piece of the splits an open re-label was carrying.

    The splits after the latest finished re-label and before the open mark: the open
    re-label marked them as history, but it may have been killed before it rewrote the
    clip rows (:func:`convoice.storage.relabel.carried_splits` tells which from the rows).
    """
    opened = open_relabels(store)
    if not opened:
        return {}
    table = changes(store)
    closed = {m.run_id for m in opened}
    finished = [
        m.at
        for m in change_records(_of_kind(table, ChangeKind.RELABEL))
        if m.run_id not in closed and m.at
    ]
    start = max(finished, default="")
    end = max(m.at for m in opened)
    at = pc.fill_null(table["at"], "")
    kept = _of_kind(
        table.filter(pc.and_(pc.greater(at, start), pc.less(at, end))), ChangeKind.SPLIT
    ).sort_by("at")
    keys = zip(kept["machine_id"].to_pylist(), kept["recording_id"].to_pylist(), strict=True)
    return dict(zip(keys, kept["new_id"].to_pylist(), strict=True))


def follow_splits(
    table: pa.Table, splits: Mapping[tuple[str, str], str], column: str = "speaker_id"
) -> pa.Table:
    """Machine clip rows with the ids splits gave them (keyed by machine id and recording).

    Applied to the machine's rows before :func:`follow`, never after people's
    labels: a clip a person labelled reads as they labelled it.
    """
    if not splits or table.num_rows == 0 or "recording_id" not in table.column_names:
        return table
    sep = "\x1f"
    keys = pa.array([f"{m}{sep}{r}" for m, r in splits], pa.string())
    new = pa.array(list(splits.values()), pa.string())
    values = table[column].combine_chunks()
    mine = pc.binary_join_element_wise(values, table["recording_id"].combine_chunks(), sep)
    mapped = pc.coalesce(pc.take(new, pc.index_in(mine, value_set=keys)), values)
    return table.set_column(table.schema.get_field_index(column), column, mapped)


def machine_clips(store: Store, table: pa.Table) -> pa.Table:
    """Machine clip rows as they read now: splits, then merges (people's and the machine's)."""
    return follow(follow_splits(table, machine_splits(store)), identity_map(store))


def identity_map(store: Store) -> dict[str, str]:
    """Every id that no longer exists -> its final surviving id (people's and machine merges)."""
    from convoice.storage.review_state import MERGE_SCHEMA

    steps = machine_aliases(store)
    people = store.tables.read("speaker_merges", MERGE_SCHEMA, columns=["merged", "kept"])
    steps.update(zip(people["merged"].to_pylist(), people["kept"].to_pylist(), strict=True))
    return {old: canonical(old, steps) for old in steps}


def follow(table: pa.Table, mapping: Mapping[str, str], column: str = "speaker_id") -> pa.Table:
    """``table`` with the ids of ``column`` replaced by their surviving ids."""
    if not mapping or table.num_rows == 0 or column not in table.column_names:
        return table
    old = pa.array(list(mapping), pa.string())
    new = pa.array(list(mapping.values()), pa.string())
    values = table[column].combine_chunks()
    where = pc.index_in(values, value_set=old)
    mapped = pc.coalesce(pc.take(new, where), values)
    return table.set_column(table.schema.get_field_index(column), column, mapped)


def release_changes(store: Store) -> pa.Table:
    """Every id that stopped existing, by the machine or by a person, oldest first.

    What a release carries (``speaker_changes.parquet``): people's merges come
    from review (``decided_by`` the annotator, ``why`` the task).
    """
    from convoice.storage.review_state import merges

    people = [
        IdentityChange(
            old_id=m.merged,
            new_id=m.kept,
            kind=ChangeKind.MERGE,
            why=f"a person said they are one (review task {m.task_id})",
            decided_by=m.merged_by,
            at=m.merged_at,
        )
        for m in merges(store)
    ]
    both = pa.concat_tables([changes(store), changes_table(people)])
    return both.sort_by([("at", "ascending")])


def record_changes(
    store: Store,
    merges: Sequence[MachineMerge],
    at: str,
    run_id: str,
    splits: Sequence[IdentityChange] = (),
) -> None:
    """Append ``splits``, then ``merges`` (before the registry commit: see consolidation)."""
    if not merges and not splits:
        return
    records = [*splits] + [
        IdentityChange(
            old_id=m.merged,
            new_id=m.kept,
            kind=ChangeKind.MERGE,
            why=m.why,
            decided_by=CONSOLIDATE_BY,
            at=at,
            similarity=m.similarity,
            run_id=run_id,
        )
        for m in merges
    ]
    store.tables.append(CHANGES, changes_table(records))
