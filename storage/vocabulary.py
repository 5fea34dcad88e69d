"""The ``vocabulary`` table: words learned from people's corrections, per channel, editable.

One row per (channel, term), upserted by ``key``; every change is one Delta
commit, so the vocabulary is versioned with the rest of the store and a
release records the version it was made with. :func:`corrections` gathers,
from the ``labels`` and ``clips`` tables, each clip a person transcribed next
to the machine's text and the channel of its recording.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa

from convoice.models.vocabulary import learn
from convoice.records import (
    STORE_WIDE,
    Correction,
    Learned,
    Term,
    TermOrigin,
    TermState,
    channel_of,
    normalise,
    term_key,
)
from convoice.storage.labels import latest_labels, now_iso
from convoice.storage.rows import clip_records, label_records, recording_records
from convoice.storage.store import Store

TABLE = "vocabulary"
VOCABULARY_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("term", pa.string(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("clip_ids", pa.list_(pa.string())),
        pa.field("updated_at", pa.string()),
        pa.field("updated_by", pa.string()),
    ]
)


def read_terms(store: Store, version: int | None = None) -> list[Term]:
    """Every term of the store's vocabulary (at Delta ``version``), removed ones included."""
    rows = store.tables.read(TABLE, VOCABULARY_SCHEMA, version=version).to_pylist()
    return [
        Term(
            channel=r["channel"],
            term=r["term"],
            count=int(r["count"]),
            origin=TermOrigin(r["origin"]),
            state=TermState(r["state"]),
            clip_ids=tuple(r["clip_ids"] or ()),
            updated_at=r["updated_at"] or "",
            updated_by=r["updated_by"] or "",
        )
        for r in rows
    ]


def write_terms(store: Store, terms: Sequence[Term]) -> None:
    """Upsert ``terms`` by key, in one commit (nothing when empty)."""
    if not terms:
        return
    rows = [
        {
            "key": t.key, "channel": t.channel, "term": t.term, "count": t.count,
            "origin": str(t.origin), "state": str(t.state), "clip_ids": list(t.clip_ids),
            "updated_at": t.updated_at, "updated_by": t.updated_by,
        }
        for t in terms
    ]  # fmt: skip
    store.tables.upsert(TABLE, pa.Table.from_pylist(rows, schema=VOCABULARY_SCHEMA), "key")


def channels(store: Store) -> dict[str, str]:
    """Recording id -> its channel (see :func:`convoice.records.channel_of`)."""
    return {
        r.recording_id: channel_of(r.uploader or "", r.uploader_url or "", r.source_url or "")
        for r in recording_records(store.recordings())
    }


def corrections(store: Store) -> list[Correction]:
    """Each clip whose latest transcript label a person wrote, with the machine's text."""
    labels = store.labels()
    if labels.num_rows == 0:
        return []
    latest = [r for r in label_records(latest_labels(labels)) if r.field == "text"]
    wanted = store.clips().select(["clip_id", "recording_id", "text"])
    machine = {r.clip_id: r for r in clip_records(wanted)}
    where = channels(store)
    out = []
    for label in latest:
        row = machine.get(label.clip_id)
        if row is None:
            continue
        channel = where.get(row.recording_id, STORE_WIDE)
        out.append(Correction(label.clip_id, channel, row.text or "", label.value or ""))
    return out


def learn_from_store(store: Store, keep: Callable[[str], bool] | None = None) -> Learned:
    """Learn from the corrections not learned from yet; write what changed (one commit).

    ``keep``: which missed words are worth learning (see :func:`convoice.models.vocabulary.learn`).
    """
    found = learn(read_terms(store), corrections(store), at=now_iso(), keep=keep)
    write_terms(store, found.changed)
    return found


def set_term(store: Store, channel: str, term: str, state: TermState, by: str) -> Term:
    """An operator adds (``TermState.ACTIVE``) or removes (``TermState.REMOVED``) a term."""
    if state not in (TermState.ACTIVE, TermState.REMOVED):
        raise ValueError(
            f"state must be {TermState.ACTIVE!r} or {TermState.REMOVED!r}, not {state!r}"
        )
    if not normalise(term):
        raise ValueError(f"{term!r} is not a word")
    if " " in term.strip():
        raise ValueError(f"{term!r}: give one word at a time (Whisper is told single words)")
    old = {t.key: t for t in read_terms(store)}.get(term_key(channel, term))
    base = old or Term(channel, term.strip(), origin=TermOrigin.OPERATOR)
    new = Term(
        channel=channel,
        term=term.strip() if state == TermState.ACTIVE else base.term,
        count=base.count,
        origin=TermOrigin.OPERATOR if state == TermState.ACTIVE else base.origin,
        state=state,
        clip_ids=base.clip_ids,
        updated_at=now_iso(),
        updated_by=by,
    )
    write_terms(store, [new])
    return new
