"""Replay a store's identities (registry matching, then consolidation) on its stored embeddings.

An ingest of the tuning half takes minutes; a variant of the matching or of
consolidation replayed on the store's CAM++ embeddings takes seconds. The
replay follows the ingest: recordings in ingest order, each matched against
the registry of the recordings before it (:func:`convoice.models.relabel.replay`,
the stored calibration routing), then consolidation planned once on the result
as the ingest's last step plans it (:func:`convoice.models.consolidate.plan_healing`,
no people's labels). With the store's own settings it reproduces the ingest: the
machine ids clip for clip and the consolidated partition (``Replayed.reproduces``).
The store is only read.

    python -m convoice.bench.identity_replay --home HOME --corpus CORPUS [--pitch-veto 7]
        [--margin 0.02] [--threshold 0.46]

``HOME`` is a store (a ``CONVOICE_HOME``) made by ingesting the corpus ``CORPUS``
(a tuning-half corpus with its ``truth.json``, :mod:`convoice.bench.corpus`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from convoice.bench.quality import corpus_truth, episodes_by_recording, ingest_ids, score_corpus
from convoice.config import Settings, load_settings
from convoice.models import identity_errors
from convoice.models.consolidate import Parts, Registry, plan_healing
from convoice.models.pitch import median_f0
from convoice.models.relabel import Replay, replay
from convoice.records import FloatArray, canonical, stored_pitch
from convoice.storage import Store
from convoice.storage import calibration as stored_calibration
from convoice.storage.relabel import relabelled_rows
from convoice.storage.rows import StoredClip, clip_records, recording_records
from convoice.storage.schema import CLIP_SCHEMA
from convoice.training.encoder import read_waves
from convoice.training.encoder_round import facts, ingest_order, scale_of


@dataclass
class Replayed:
    """The replay's clip rows (consolidated ids) and what it found on the way."""

    clips: list[dict[str, Any]]  # clip rows as ``Store.clips`` reads them, replayed
    machine_ids: dict[
        str, str
    ]  # clip id -> the id the replayed matching gave (before consolidation)
    splits: int = 0
    merges: int = 0
    reproduces: dict[str, bool] = field(default_factory=dict)  # checks against the ingest


def stored_clips(store: Store) -> tuple[list[StoredClip], FloatArray]:
    """The machine's clip rows and their unit CAM++ embeddings (one row each)."""
    rows = clip_records(store.tables.read("clips", CLIP_SCHEMA))
    emb = np.stack([np.asarray(r.speaker_embedding, np.float32) for r in rows])
    return rows, emb / np.linalg.norm(emb, axis=1, keepdims=True)


def clip_pitches(store: Store, rows: list[StoredClip]) -> dict[str, float]:
    """Each clip's median F0 (Hz; NaN when too little is voiced): the row's ``f0_hz`` when the
    ingest stored one, else from its stored audio (a store written before pitch)."""
    missing = [r for r in rows if r.f0_hz is None]
    waves = read_waves(store, [r.audio_uri for r in missing])
    out = {r.clip_id: median_f0(w) for r, w in zip(missing, waves, strict=True)}
    return out | stored_pitch(rows)


def consolidated_ids(
    labels: Replay,
    rows: list[StoredClip],
    emb: FloatArray,
    settings: Settings,
    order: list[str],
    pitch_veto: float = 0.0,
) -> tuple[dict[str, str], int, int]:
    """Clip id -> its id after consolidation as the ingest's last step plans it; (map, splits,
    merges). No person's label or merge: nothing is pinned or told apart. ``pitch_veto``:
    semitones (0: off), on the replayed speakers' pitch ranges."""
    cfg = settings.consolidation
    rank_of = {r: i for i, r in enumerate(order)}
    ids = sorted(labels.speakers)
    recordings: dict[str, set[str]] = {}
    first: dict[str, int] = {}
    for c in rows:
        sid = labels.labels[c.clip_id].speaker_id
        recordings.setdefault(sid, set()).add(c.recording_id)
        first[sid] = min(first.get(sid, len(order)), rank_of[c.recording_id])
    speakers = [labels.speakers[s] for s in ids]
    registry = Registry(
        ids=ids,
        sums=np.stack([s.vector_sum for s in speakers]).astype(np.float32),
        rank=[(1, -s.n_clips, f"{first.get(s.speaker_id, 0):08d}") for s in speakers],
        recordings=[frozenset(recordings.get(s, ())) for s in ids],
        pitch=np.array([s.pitch for s in speakers], np.float64).reshape(-1, 2),
        pitch_veto=pitch_veto,
    )
    position = {s: i for i, s in enumerate(ids)}
    several = {s for s, r in zip(ids, registry.recordings, strict=True) if len(r) > 1}
    groups: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(rows):
        sid = labels.labels[c.clip_id].speaker_id
        if sid in several:
            groups.setdefault((sid, c.recording_id), []).append(i)
    keys = sorted(groups)
    dim = emb.shape[1]
    counted = [[i for i in groups[k] if labels.labels[rows[i].clip_id].absorbed] for k in keys]
    parts = Parts(
        speaker=np.array([position[k[0]] for k in keys], np.int64),
        recording=[k[1] for k in keys],
        sums=np.array([emb[groups[k]].sum(0) for k in keys], np.float32).reshape(-1, dim),
        counted=np.array(
            [emb[c].sum(0) if c else np.zeros(dim) for c in counted], np.float32
        ).reshape(-1, dim),
        clips=np.array([len(groups[k]) for k in keys], np.int64),
    )
    splits, merges = (
        plan_healing(
            registry, parts, cfg.threshold(dim), cfg.split_rule(), [], cfg.probe, cfg.guards()
        )
        if cfg.enabled
        else ([], [])
    )
    moved = {(s.split, r): s.piece for s in splits for r in s.recordings}
    steps = {m.merged: m.kept for m in merges}
    out = {}
    for c in rows:
        sid = labels.labels[c.clip_id].speaker_id
        out[c.clip_id] = canonical(moved.get((sid, c.recording_id), sid), steps)
    return out, len(splits), len(merges)


def replay_store(
    store: Store,
    settings: Settings,
    pitch: Mapping[str, float] | None = None,
    pitch_veto: float = 0.0,
) -> Replayed:
    """The store's identities replayed with ``settings`` (and the pitch veto, when > 0)."""
    raw = store.tables.read("clips", CLIP_SCHEMA)
    rows, emb = stored_clips(store)
    order = ingest_order(recording_records(store.recordings()))
    cal = stored_calibration.current(store.location, settings.encoder.campplus or None)
    labels = replay(
        order, facts(rows, None), emb, {}, scale_of("campplus", settings), settings.routing,
        calibration=cal, pitch=pitch, pitch_veto=pitch_veto,
    )  # fmt: skip
    final, n_splits, n_merges = consolidated_ids(labels, rows, emb, settings, order, pitch_veto)
    embeddings = {r.clip_id: emb[i] for i, r in enumerate(rows)}
    table = relabelled_rows(raw, labels.labels, embeddings, "replay", "speaker_embedding")
    clips = table.to_pylist()
    for c in clips:
        c["speaker_id"] = final[c["clip_id"]]
    machine = {c: label.speaker_id for c, label in labels.labels.items()}
    return Replayed(clips, machine, n_splits, n_merges)


def _partition(ids: Mapping[str, str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for clip, speaker in ids.items():
        groups.setdefault(speaker, []).append(clip)
    return sorted(sorted(g) for g in groups.values())


def check_reproduces(store: Store, replayed: Replayed) -> dict[str, bool]:
    """Whether the replay (with the store's settings) gives the ingest's ids and partition."""
    ingest = ingest_ids(store)
    read = {c["clip_id"]: c["speaker_id"] for c in store.clips().to_pylist()}
    final = {c["clip_id"]: c["speaker_id"] for c in replayed.clips}
    return {
        "machine_ids": ingest == replayed.machine_ids,
        "consolidated_partition": _partition(read) == _partition(final),
    }


def figures(
    store: Store, corpus_dir: Path, replayed: Replayed
) -> tuple[dict[str, float], dict[str, Any]]:
    """The bench's quality figures and identity errors by kind for the replayed rows."""
    from convoice.bench import corpus as half_corpus

    meta = json.loads((corpus_dir / "truth.json").read_text(encoding="utf-8"))
    corpus = half_corpus.make_half_corpus(
        corpus_dir, half=meta["metadata"]["half"], seed=meta["metadata"]["seed"]
    )
    episodes = episodes_by_recording(store, corpus)
    truth = corpus_truth(episodes, corpus)
    quality = score_corpus(replayed.clips, episodes, corpus)
    errors = identity_errors.errors_by_kind(replayed.clips, replayed.machine_ids, truth)
    return quality, errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--corpus", required=True, type=Path)
    parser.add_argument("--pitch-veto", type=float, default=0.0, help="semitones (0: off)")
    parser.add_argument("--margin", type=float, help="[consolidation] margin")
    parser.add_argument("--threshold", type=float, help="[consolidation] threshold_campplus")
    args = parser.parse_args(argv)
    settings = load_settings(home=args.home)
    store = Store.open(settings)
    changes = {
        k: v
        for k, v in (("margin", args.margin), ("threshold_campplus", args.threshold))
        if v is not None
    }
    if changes:
        settings = replace(settings, consolidation=replace(settings.consolidation, **changes))
    pitch = clip_pitches(store, stored_clips(store)[0]) if args.pitch_veto > 0 else None
    replayed = replay_store(store, settings, pitch, args.pitch_veto)
    if not changes and args.pitch_veto <= 0:
        print("reproduces the ingest:", check_reproduces(store, replayed))
    quality, errors = figures(store, args.corpus, replayed)
    accepted = [c for c in replayed.clips if c["speaker_status"] == "accepted"]
    wrong = sum(errors["wrong_labels"]["accepted"].values())
    print(
        f"bcubed_f1_cross_episode {quality['bcubed_f1_cross_episode']:.4f}"
        f"  accepted {len(accepted)} (wrong {wrong})"
        f"  speech with an accepted speaker {quality['speaker_accepted_share_of_speech']:.4f}"
        f"  speaker ECE {quality['speaker_confidence_ece']:.4f}"
        f"  consolidation: {replayed.splits} splits, {replayed.merges} merges"
    )
    print("\n".join(identity_errors.render_errors(errors)))


if __name__ == "__main__":
    main()
