"""What review pulls keep besides people's labels: merges, registry contributions, a log.

``tables/speaker_merges``        one row per merge: ``merged`` lives on as ``kept``
``tables/review_contributions``  per reviewed clip, what it adds to / takes from the registry
``tables/review_log``            one row per applied annotation (its id and time: the
                                 done marker that makes pulling again a no-op)

People's labels themselves go to the ``labels`` table (:meth:`Store.add_labels`);
clips with a person's label are the held-out set (:func:`heldout_clips`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from convoice.records import Contribution, Merge, ReviewDecision, StoredClip
from convoice.storage.rows import clip_records
from convoice.storage.schema import speakers_to_table, with_speaker_buckets

if TYPE_CHECKING:
    from convoice.records import Speaker
    from convoice.storage.store import Store

MERGE_SCHEMA = pa.schema(
    [
        ("merged", pa.string()),
        ("kept", pa.string()),
        ("merged_by", pa.string()),
        ("merged_at", pa.string()),
        ("task_id", pa.string()),
    ]
)

CONTRIBUTION_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("plus", pa.string()),
        ("minus", pa.string()),
        ("duration", pa.float64()),
    ]
)

REVIEW_LOG_SCHEMA = pa.schema(
    [
        ("task_id", pa.int64()),
        ("annotation_id", pa.int64()),
        ("clip_id", pa.string()),
        ("annotator", pa.string()),
        ("at", pa.string()),
        ("decision", pa.string()),
        ("speaker", pa.string()),
        ("same_as", pa.string()),
        ("text", pa.string()),
        ("flags", pa.list_(pa.string())),
        ("server", pa.string()),
        ("project_id", pa.int64()),
        ("pulled_at", pa.string()),
    ]
)


PULL_COLUMNS = [
    "clip_id", "speaker_id", "review_reasons", "duration", "embedding", "speaker_embedding"
]  # fmt: skip
"""What a pull reads of the machine's clips (``extra`` is left out: absorption is judged
by the reasons, see :func:`convoice.review.decisions.machine_absorbed`)."""


def machine_clips(store: Store) -> dict[str, StoredClip]:
    """The machine's clips as a pull decides on them (:data:`PULL_COLUMNS`), by clip id."""
    return {c.clip_id: c for c in clip_records(store.clips().select(PULL_COLUMNS))}


def merges(store: Store) -> list[Merge]:
    """Every speaker merge, in the order made."""
    rows = store.tables.read("speaker_merges", MERGE_SCHEMA).to_pylist()
    return [Merge(**row) for row in rows]


def add_merges(store: Store, new: Sequence[Merge]) -> None:
    if new:
        rows = [asdict(m) for m in new]
        store.tables.append("speaker_merges", pa.Table.from_pylist(rows, schema=MERGE_SCHEMA))


def contributions(store: Store) -> dict[str, Contribution]:
    """What every reviewed clip contributes to the registry now (by clip id)."""
    rows = store.tables.read("review_contributions", CONTRIBUTION_SCHEMA).to_pylist()
    return {row["clip_id"]: Contribution(**row) for row in rows}


def save_contributions(store: Store, changed: Sequence[Contribution]) -> None:
    """Upsert the contributions that changed (by clip id, one commit)."""
    if changed:
        table = pa.Table.from_pylist([asdict(c) for c in changed], schema=CONTRIBUTION_SCHEMA)
        store.tables.upsert("review_contributions", table, "clip_id")


def applied_annotations(store: Store) -> set[tuple[int, str]]:
    """(annotation id, time) of every annotation applied before."""
    table = store.tables.read("review_log", REVIEW_LOG_SCHEMA, columns=["annotation_id", "at"])
    return set(zip(table["annotation_id"].to_pylist(), table["at"].to_pylist(), strict=True))


def review_log(store: Store) -> pa.Table:
    """Every applied annotation: who decided what about which clip, flags included."""
    return store.tables.read("review_log", REVIEW_LOG_SCHEMA)


def log_decisions(
    store: Store, decisions: Sequence[ReviewDecision], server: str, project_id: int, at: str
) -> None:
    """Record applied annotations (written last in a pull: its done marker)."""
    if not decisions:
        return
    rows = [
        {
            "task_id": d.task_id,
            "annotation_id": d.annotation_id,
            "clip_id": d.clip_id,
            "annotator": d.annotator,
            "at": d.at,
            "decision": str(d.decision),
            "speaker": d.speaker,
            "same_as": d.same_as,
            "text": d.text,
            "flags": list(d.flags),
            "server": server,
            "project_id": project_id,
            "pulled_at": at,
        }
        for d in decisions
    ]
    store.tables.append("review_log", pa.Table.from_pylist(rows, schema=REVIEW_LOG_SCHEMA))


def save_speakers(
    store: Store, speakers: Sequence[Speaker], removed: Sequence[Speaker] = ()
) -> None:
    """Upsert ``speakers`` and delete ``removed`` (merged away) in one registry commit.

    One commit, so a merge is either entirely in the registry (the kept sum
    grown, the merged speaker gone) or not at all.
    """
    from deltalake.exceptions import CommitFailedError

    from convoice.storage.store import ConcurrentCommitError

    if not speakers and not removed:
        return
    rows = with_speaker_buckets(speakers_to_table([*speakers, *removed]))
    flags = [False] * len(speakers) + [True] * len(removed)
    table = store.tables.open("speakers")
    if table is None:
        store.tables.append("speakers", rows.filter(pa.array([not f for f in flags])))
        return
    source = rows.append_column("_remove", pa.array(flags, pa.bool_()))
    columns = {name: f"source.{name}" for name in rows.column_names}
    try:
        (
            table.merge(
                source=source,
                predicate="target.speaker_id = source.speaker_id AND target.bucket = source.bucket",
                source_alias="source",
                target_alias="target",
                merge_schema=True,  # a registry written before a column (f0_low_hz) takes it
            )
            .when_matched_delete(predicate="source._remove")
            .when_matched_update(updates=columns)
            .when_not_matched_insert(updates=columns, predicate="NOT source._remove")
            .execute()
        )
    except CommitFailedError as err:
        raise ConcurrentCommitError(
            "another process changed the speaker registry during this review pull; pull again"
        ) from err


def heldout_clips(store: Store) -> pa.Table:
    """Clips with a person's label (materialised): the held-out set for evaluating models."""
    clips = store.materialized_clips()
    return clips.filter(pc.not_equal(pc.fill_null(clips["labelled_by"], ""), ""))
