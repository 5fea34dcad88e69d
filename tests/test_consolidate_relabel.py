"""A consolidated store re-labelled after an encoder promotion: the healing stays, nothing stale.

A real store (clip rows, recordings, registry, people's labels), real
consolidation (a split, merges), the re-label ``convoice retrain encoder`` /
``encoder promote`` runs after a promotion (:func:`relabel_store`), then what
readers, a release and a second consolidation see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from store_rows import DIM, clip_rows, near, voices

from convoice.config import ConsolidationSettings, load_settings
from convoice.models.registry import new_speaker_id
from convoice.records import ChangeKind, Speaker
from convoice.storage import Store
from convoice.storage.consolidation import consolidate_store
from convoice.storage.review_state import save_speakers
from convoice.storage.schema import RECORDING_SCHEMA
from convoice.training.round_store import relabel_store

# (recording, local speaker, voice, machine id at ingest); recordings in ingest order
INGEST = ["r1", "r5", "r2", "r4", "r3"]
SPLITTING = ConsolidationSettings(split=True)  # the split step is opt-in (session 38)
ID_A, ID_C = new_speaker_id("r1", 0), new_speaker_id("r1", 1)
ID_Y, ID_B, ID_X = new_speaker_id("r5", 0), new_speaker_id("r4", 0), new_speaker_id("r3", 1)
PERSON_CLIP = "r2-S0-0"


def _plan() -> list[tuple[str, str, np.ndarray, str]]:
    """Voice A in r1, r2, r3 (S1) and, weaker, r5; B in r4 and r3 (S0); C in r1 (S1).

    As ingested: r3's B took A's id (the greedy match's mistake), r3's A a new
    id (x), r5's weak A a new id (y).
    """
    a, b, c = voices(3, seed=21)
    weak_a = near(a, 0.62, 7)
    return [
        ("r1", "S0", a, ID_A),
        ("r1", "S1", c, ID_C),
        ("r5", "S0", weak_a, ID_Y),
        ("r2", "S0", a, ID_A),
        ("r4", "S0", b, ID_B),
        ("r3", "S0", b, ID_A),
        ("r3", "S1", a, ID_X),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """The store as ingested, one person's label on a clip of A (they say it is C)."""
    store = Store(tmp_path / "store")
    rows, embeddings, local = [], [], []
    for k, (recording, speaker, voice, machine) in enumerate(_plan()):
        for j in range(3):
            rows.append((f"{recording}-{speaker}-{j}", recording, machine))
            embeddings.append(near(voice, 0.92, 100 * k + j))
            local.append(speaker)
    store.tables.append("clips", clip_rows(rows, embeddings, local))
    n = len(INGEST)
    recordings = {
        "recording_id": pa.array(INGEST),
        "ingested_at": pa.array([f"2025-01-0{i + 1}T00:00:00+00:00" for i in range(n)]),
    }
    store.tables.append(
        "recordings",
        pa.Table.from_arrays(
            [recordings.get(f.name, pa.nulls(n, f.type)) for f in RECORDING_SCHEMA],
            schema=RECORDING_SCHEMA,
        ),
    )
    speakers: dict[str, Speaker] = {}
    for (_, recording, machine), vector in zip(rows, embeddings, strict=True):
        first = f"2025-01-0{INGEST.index(recording) + 1}"
        old = speakers.get(machine) or Speaker(machine, np.zeros(DIM, np.float32), 0, 0.0, 0,
                                               first, first)  # fmt: skip
        speakers[machine] = Speaker(
            machine, (old.vector_sum + vector).astype(np.float32), old.n_clips + 1,
            old.total_duration + 3.0, len({r[1] for r in rows if r[2] == machine}),
            old.first_seen, first,
        )  # fmt: skip
    save_speakers(store, list(speakers.values()))
    said = {"speaker_id": ID_C, "status": "accepted"}
    store.add_labels(
        [{"clip_id": PERSON_CLIP, "field": f, "value": v, "labelled_by": "ann@x.org"}
         for f, v in said.items()]
    )  # fmt: skip
    return store


def _reads(store: Store) -> dict[str, str]:
    """Each clip's speaker as every reader sees it (people's labels applied)."""
    table = store.materialized_clips()
    return dict(zip(table["clip_id"].to_pylist(), table["speaker_id"].to_pylist(), strict=True))


def _voice_of(clip_id: str) -> str:
    recording, speaker, _ = clip_id.split("-")
    voice = {("r1", "S1"): "C", ("r4", "S0"): "B", ("r3", "S0"): "B"}
    return voice.get((recording, speaker), "A")


def _one_id_per_voice(reads: dict[str, str]) -> None:
    """Every voice reads as one id, no two voices share one; the person's clip as they said."""
    assert reads[PERSON_CLIP] == ID_C
    ids: dict[str, set[str]] = {}
    for clip_id, speaker in reads.items():
        if clip_id != PERSON_CLIP:
            ids.setdefault(_voice_of(clip_id), set()).add(speaker)
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len(set().union(*ids.values())) == 3, ids


def _relabel(store: Store, tmp_path: Path) -> None:
    """The re-label after a promotion, on embeddings the new encoder made (here: the same)."""
    settings = load_settings(None, home=str(tmp_path / "home"))
    clips = store.tables.read("clips", store.clips().schema)
    known = {
        c: np.asarray(v, np.float32)
        for c, v in zip(
            clips["clip_id"].to_pylist(), clips["speaker_embedding"].to_pylist(), strict=True
        )
    }
    relabel_store(store, settings, "pretrained", "", known, "campplus")


def test_a_relabel_keeps_the_healing_and_moves_no_clip_by_a_stale_change(
    store: Store, tmp_path: Path
) -> None:
    healed = consolidate_store(store, SPLITTING, run_id="heal")
    assert [(s.split, s.recordings) for s in healed.splits] == [(ID_A, ("r3",))]
    piece = healed.splits[0].piece
    merged = {(m.merged, m.kept) for m in healed.merges}
    assert merged == {(ID_B, piece), (ID_X, ID_A), (ID_Y, ID_A)}  # the piece keeps A's rank
    before = _reads(store)
    _one_id_per_voice(before)

    _relabel(store, tmp_path)
    after = _reads(store)
    assert after == before  # no clip moved by a change row made on the old ids
    _one_id_per_voice(after)
    # the registry holds the ids clips read as, with the clips they read as
    registry = {s.speaker_id: s for s in store.speakers()}
    assert set(registry) == {ID_A, piece, ID_C}
    b = voices(3, seed=21)[1]
    assert float(registry[piece].centroid @ b) > 0.9 and float(registry[ID_A].centroid @ b) < 0.3

    # what a review pull decides on (the machine's rows as read) agrees, but for the person's
    from convoice.storage.review_state import machine_clips

    seen = {c: r.speaker_id for c, r in machine_clips(store).items() if c != PERSON_CLIP}
    assert seen == {c: s for c, s in after.items() if c != PERSON_CLIP}
    # a release (what `dataset pull` copies) reads the same
    release = store.release(tag="after-relabel")
    released = pq.read_table(Path(release.path) / "clips.parquet").to_pylist()
    assert {r["clip_id"]: r["speaker_id"] for r in released} == after
    person = next(r for r in released if r["clip_id"] == PERSON_CLIP)
    assert person["labelled_by"] == "ann@x.org"

    # consolidating again finds nothing left to do
    again = consolidate_store(store, SPLITTING, run_id="again")
    assert (again.splits, again.merges, again.finished) == ([], [], 0)
    assert _reads(store) == after
    # re-labelling again (a second promotion) changes nothing either
    _relabel(store, tmp_path)
    assert _reads(store) == after
    assert {s.speaker_id for s in store.speakers()} == {ID_A, piece, ID_C}
    kinds = [c.kind for c in _changes(store)]
    assert kinds.count(ChangeKind.SPLIT) == 1  # history kept, nothing duplicated


def _changes(store: Store) -> list:  # type: ignore[type-arg]
    from convoice.storage.identity import change_records, changes

    return change_records(changes(store))


def _relabel_killed_at_its_rows(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-label killed when it writes its clip rows: its mark written, nothing after it."""
    upsert = store.tables.upsert

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(store.tables, "upsert", killed)
    with pytest.raises(KeyboardInterrupt):
        _relabel(store, tmp_path)
    monkeypatch.setattr(store.tables, "upsert", upsert)


def test_a_relabel_killed_before_its_rows_are_written_is_finished_by_the_next(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    consolidate_store(store, SPLITTING, run_id="heal")
    before = _reads(store)
    _relabel_killed_at_its_rows(store, tmp_path, monkeypatch)
    # the split rows are history now, the clip rows not yet rewritten: r3's voice B reads as
    # the id it had before the split (unhealed for now), and no other clip moved
    half = _reads(store)
    assert {c for c in before if half[c] != before[c]} == {f"r3-S0-{j}" for j in range(3)}
    _relabel(store, tmp_path)
    assert _reads(store) == before
    assert [c.kind for c in _changes(store)].count(ChangeKind.RELABEL) == 1


def test_consolidation_refuses_while_a_killed_relabel_is_open(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-label killed after its mark (its first phase only) and never re-run: consolidating
    would redo the split and overwrite the piece's registry entry with only the piece's
    clips, dropping r4's clips of B that a merge had added to it. It refuses until a re-label
    finishes the open one."""
    from convoice.models.consolidate import ConsolidationError
    from convoice.storage.identity import open_relabels

    healed = consolidate_store(store, SPLITTING, run_id="heal")
    piece = healed.splits[0].piece
    before, registry = _reads(store), {s.speaker_id: s for s in store.speakers()}
    assert registry[piece].n_clips == 6  # r3's B, and r4's B merged into it
    _relabel_killed_at_its_rows(store, tmp_path, monkeypatch)
    assert len(open_relabels(store)) == 1
    with pytest.raises(ConsolidationError, match=r"did not finish.*convoice encoder promote"):
        consolidate_store(store, SPLITTING, run_id="after-kill")
    assert {s.speaker_id: s.n_clips for s in store.speakers()} == {
        s: r.n_clips for s, r in registry.items()
    }  # nothing written
    _relabel(store, tmp_path)  # the next re-label carries the open mark's split, closes it
    assert open_relabels(store) == [] and _reads(store) == before
    again = consolidate_store(store, SPLITTING, run_id="after-finish")
    assert (again.splits, again.merges) == ([], [])
    assert {s.speaker_id: s.n_clips for s in store.speakers()}[piece] == 6
    assert _reads(store) == before


def test_the_replay_carries_a_split_when_the_new_encoder_repeats_the_mistake() -> None:
    from convoice.config import RoutingSettings
    from convoice.models.relabel import ClipFacts, replay
    from convoice.training.encoder_round import scale_of

    a = voices(2, seed=5)[0]
    b_like_a = near(a, 0.75, 3)  # the new encoder still hears r2's voice as A
    facts = [ClipFacts(f"{r}-{j}", r, "S0", 3.0, ()) for r in ("r1", "r2") for j in range(3)]
    emb = np.stack([near(v, 0.95, 10 * k + j) for k, v in enumerate((a, b_like_a))
                    for j in range(3)])  # fmt: skip
    scale = scale_of("campplus", load_settings(None, home="/nonexistent-convoice-home"))
    plain = replay(["r1", "r2"], facts, emb, {}, scale, RoutingSettings())
    id_a = new_speaker_id("r1", 0)
    assert {lab.speaker_id for lab in plain.labels.values()} == {id_a}
    splits = {("r2", "S0"): (id_a, "spk_piece")}
    carried = replay(["r1", "r2"], facts, emb, {"spk_piece": "spk_b"}, scale, RoutingSettings(),
                     splits=splits)  # fmt: skip
    assert {k: lab.speaker_id for k, lab in carried.labels.items() if k.startswith("r2")} == {
        f"r2-{j}": "spk_piece" for j in range(3)
    }  # the rows carry the piece; what it lives on as holds its clips
    assert set(carried.speakers) == {id_a, "spk_b"}
    assert carried.speakers[id_a].n_recordings == 1
    # a split whose speaker the new encoder already hears apart is not forced
    elsewhere = {("r2", "S0"): ("spk_other", "spk_piece")}
    kept = replay(["r1", "r2"], facts, emb, {}, scale, RoutingSettings(), splits=elsewhere)
    assert {lab.speaker_id for lab in kept.labels.values()} == {id_a}


def test_a_carried_merge_never_puts_two_speakers_of_a_recording_under_one_id() -> None:
    from convoice.config import RoutingSettings
    from convoice.models.relabel import ClipFacts, own_id, replay
    from convoice.training.encoder_round import scale_of

    a, d = voices(2, seed=9)
    # r1: A; r2: A (S0) and a new voice D (S1), whose id consolidation had merged into A's
    # when the old encoder heard r2's A apart from r1's
    plan = [("r1", "S0", a), ("r2", "S0", a), ("r2", "S1", d)]
    facts = [ClipFacts(f"{r}-{s}-{j}", r, s, 3.0, ()) for r, s, _ in plan for j in range(3)]
    emb = np.stack([near(v, 0.95, 10 * k + j) for k, (_, _, v) in enumerate(plan)
                    for j in range(3)])  # fmt: skip
    scale = scale_of("campplus", load_settings(None, home="/nonexistent-convoice-home"))
    id_a, id_d = new_speaker_id("r1", 0), new_speaker_id("r2", 1)
    merged = {id_d: id_a}
    by_machine = replay(["r1", "r2"], facts, emb, merged, scale, RoutingSettings(),
                        machine_merged=frozenset(merged))  # fmt: skip
    got = {k: lab.speaker_id for k, lab in by_machine.labels.items()}
    assert {got[f"r2-S0-{j}"] for j in range(3)} == {id_a}
    assert {got[f"r2-S1-{j}"] for j in range(3)} == {own_id("r2", "S1")}
    assert own_id("r2", "S1") in by_machine.speakers
    # a person's merge is followed whatever: they said the two are one person
    by_person = replay(["r1", "r2"], facts, emb, merged, scale, RoutingSettings())
    assert {lab.speaker_id for lab in by_person.labels.values()} == {id_a}


def test_a_relabel_that_finds_or_clears_two_voices_moves_the_transcript_with_the_speaker() -> None:
    """``two_voices`` is both kinds' reason: the re-label rewrites ``transcript_status`` from
    the reasons it writes, so a clip that gains it has no accepted transcript left behind."""
    from convoice.records import ClipLabel, ClipStatus
    from convoice.storage.relabel import relabelled_rows

    clips = clip_rows([("c-two", "r1", "spk_a"), ("c-one", "r1", "spk_a")])
    clips = clips.set_column(  # c-two was in review for two voices, c-one accepted
        clips.schema.get_field_index("transcript_status"),
        "transcript_status",
        pa.array(["review", "accepted"]),
    )

    def label(clip_id: str, reasons: tuple[str, ...]) -> ClipLabel:
        status = ClipStatus.REVIEW if reasons else ClipStatus.ACCEPTED
        return ClipLabel(clip_id, "spk_a", 0.9, status, reasons, 0.8, 0.1, 0.9, True)

    labels = {"c-two": label("c-two", ()), "c-one": label("c-one", ("two_voices",))}
    out = relabelled_rows(clips, labels, {c: np.zeros(DIM) for c in labels}, "enc")
    got = dict(zip(out["clip_id"].to_pylist(), out["transcript_status"].to_pylist(), strict=True))
    assert got == {"c-two": "accepted", "c-one": "review"}
    speaker = dict(zip(out["clip_id"].to_pylist(), out["speaker_status"].to_pylist(), strict=True))
    assert speaker == {"c-two": "accepted", "c-one": "review"}
