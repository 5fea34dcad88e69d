"""Where identity goes wrong: B-cubed loss and wrong labels by the decision that made them.

Each clip has a true voice, a recording, a recording speaker (the clustering
inside its recording), the id the ingest wrote on its row (the registry's
match) and the id it reads as now (consolidation's splits and merges
followed). Cross-episode B-cubed over clips loses precision for every pair of
clips of different voices under one id and recall for every pair of one voice
under two ids; each such pair is charged to one decision:

- ``cluster_merge`` (a): inside a recording two voices became one recording
  speaker. A clip whose voice is not its recording speaker's main voice (by
  seconds) is an intruder; every bad pair holding an intruder is charged here
  (its id follows the main voice's, whatever the registry does).
- ``cluster_split`` (b): one voice over two recording speakers of one recording.
- ``registry_split`` (c): across recordings, one voice's recording speakers got
  different ids at ingest and still read as different ids.
- ``registry_merge`` (d): across recordings, recording speakers of different
  voices were given the same id at ingest.
- ``consolidation`` (e): consolidation's merges (different voices, different
  ingest ids, one id now) and splits (one voice, one ingest id, two ids now).

A match of a later recording to an id consolidation had already merged is the
registry's decision (d), made on the healed registry.

The loss of each kind is additive: precision = 1 - the sum of the kinds'
precision losses, recall likewise (B-cubed averages per-clip shares).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np

from convoice.models import evaluation
from convoice.records import FloatArray


class ErrorKind(StrEnum):
    CLUSTER_MERGE = "cluster_merge"  # (a) two voices as one recording speaker
    CLUSTER_SPLIT = "cluster_split"  # (b) one voice as two recording speakers
    REGISTRY_SPLIT = "registry_split"  # (c) a known voice given a new id
    REGISTRY_MERGE = "registry_merge"  # (d) a voice matched to another voice's id
    CONSOLIDATION = "consolidation"  # (e) consolidation's merges and splits


KINDS = tuple(ErrorKind)


@dataclass(frozen=True)
class ClipIdentity:
    """What the decomposition needs of one clip."""

    voice: str  # the true voice covering most of the clip
    recording_id: str
    recording_speaker: str  # "S0", "S1", ...: the clustering inside the recording
    ingest_id: str  # the id the ingest wrote on the clip row
    final_id: str  # the id it reads as now (splits and merges followed)
    seconds: float = 0.0


@dataclass
class IdentityErrors:
    """B-cubed loss by kind (shares of clips; additive), per voice and per voice pair."""

    clips: int = 0
    precision: float = 1.0
    recall: float = 1.0
    precision_loss: dict[ErrorKind, float] = field(default_factory=dict)
    recall_loss: dict[ErrorKind, float] = field(default_factory=dict)
    # (voice, kind) -> the recall loss of the voice's clips (share of all clips)
    by_voice: dict[tuple[str, ErrorKind], float] = field(default_factory=dict)
    # (voice, other voice, kind) -> precision loss of voice's clips from the other's
    by_pair: dict[tuple[str, str, ErrorKind], float] = field(default_factory=dict)

    @property
    def f1(self) -> float:
        """B-cubed F1 of the labels."""
        return _f1(self.precision, self.recall)

    def f1_without(self, kind: ErrorKind) -> float:
        """B-cubed F1 were the errors of ``kind`` (alone) not made (the additive estimate)."""
        return _f1(
            self.precision + self.precision_loss.get(kind, 0.0),
            self.recall + self.recall_loss.get(kind, 0.0),
        )


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def main_voices(clips: Sequence[ClipIdentity]) -> dict[tuple[str, str], str]:
    """(recording, recording speaker) -> its voice with most seconds (most clips if none)."""
    seconds: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for c in clips:
        seconds[(c.recording_id, c.recording_speaker)][c.voice] += c.seconds or 1.0
    return {key: max(v, key=lambda s: (v[s], s)) for key, v in seconds.items()}


def pair_kind(
    x: ClipIdentity, y: ClipIdentity, intruder_x: bool, intruder_y: bool
) -> ErrorKind | None:
    """The decision that made the pair ``x``, ``y`` wrong; None when the pair is right."""
    same_voice = x.voice == y.voice
    same_final = x.final_id == y.final_id
    if same_voice == same_final:
        return None
    if intruder_x or intruder_y:
        return ErrorKind.CLUSTER_MERGE
    if same_voice:  # one voice, two ids
        if x.recording_id == y.recording_id:
            if x.recording_speaker == y.recording_speaker:  # cannot be: one speaker, one id
                return ErrorKind.CONSOLIDATION
            return ErrorKind.CLUSTER_SPLIT
        return ErrorKind.CONSOLIDATION if x.ingest_id == y.ingest_id else ErrorKind.REGISTRY_SPLIT
    # two voices, one id
    if x.recording_id == y.recording_id and x.recording_speaker == y.recording_speaker:
        return ErrorKind.CLUSTER_MERGE
    return ErrorKind.REGISTRY_MERGE if x.ingest_id == y.ingest_id else ErrorKind.CONSOLIDATION


def decompose(clips: Sequence[ClipIdentity]) -> IdentityErrors:
    """B-cubed precision and recall of ``clips``' final ids and their loss by kind.

    Cost: the sum of squared cluster and class sizes (pairs inside an id or a voice).
    """
    n = len(clips)
    out = IdentityErrors(clips=n)
    if n == 0:
        return out
    main = main_voices(clips)
    intruder = [main[(c.recording_id, c.recording_speaker)] != c.voice for c in clips]
    by_final: dict[str, list[int]] = defaultdict(list)
    by_voice: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(clips):
        by_final[c.final_id].append(i)
        by_voice[c.voice].append(i)
    p_loss: dict[ErrorKind, float] = defaultdict(float)
    r_loss: dict[ErrorKind, float] = defaultdict(float)
    voice_loss: dict[tuple[str, ErrorKind], float] = defaultdict(float)
    pair_loss: dict[tuple[str, str, ErrorKind], float] = defaultdict(float)
    for _, i, j, kind, share in _charged_pairs(by_final, clips, intruder, n):
        p_loss[kind] += share
        pair_loss[(clips[i].voice, clips[j].voice, kind)] += share
    for voice, _, _, kind, share in _charged_pairs(by_voice, clips, intruder, n):
        r_loss[kind] += share
        voice_loss[(voice, kind)] += share
    out.precision_loss = {k: p_loss.get(k, 0.0) for k in KINDS}
    out.recall_loss = {k: r_loss.get(k, 0.0) for k in KINDS}
    out.precision = 1.0 - sum(out.precision_loss.values())
    out.recall = 1.0 - sum(out.recall_loss.values())
    out.by_voice = dict(voice_loss)
    out.by_pair = dict(pair_loss)
    return out


def _charged_pairs(
    groups: dict[str, list[int]], clips: Sequence[ClipIdentity], intruder: list[bool], n: int
) -> Iterator[tuple[str, int, int, ErrorKind, float]]:
    """Every ordered pair of clips inside one group that is wrong, with its kind and its
    share of the B-cubed loss (1 / (group size x clips))."""
    for key, members in groups.items():
        for i in members:
            for j in members:
                kind = pair_kind(clips[i], clips[j], intruder[i], intruder[j])
                if kind is not None:
                    yield key, i, j, kind, 1.0 / (len(members) * n)


def wrong_label_kind(
    i: int,
    clips: Sequence[ClipIdentity],
    mapping: Mapping[str, str],
    main: Mapping[tuple[str, str], str] | None = None,
) -> ErrorKind | None:
    """Why clip ``i``'s label is judged wrong (None when it is right).

    ``mapping``: final id -> the voice it stands for (the benchmark's one-to-one
    mapping). An intruder is the clustering's; a clip whose id stands for
    another voice was merged (by the registry when it shares its ingest id with
    that voice's clips there, else by consolidation); a clip whose id stands
    for nobody sits on a split piece: of its recording (b), of consolidation
    (its ingest id is the voice's id's too) or of the registry (c). ``main``:
    :func:`main_voices` of ``clips`` (computed when None).
    """
    x = clips[i]
    if mapping.get(x.final_id) == x.voice:
        return None
    main = main_voices(clips) if main is None else main
    if main[(x.recording_id, x.recording_speaker)] != x.voice:
        return ErrorKind.CLUSTER_MERGE
    other = mapping.get(x.final_id)
    if other is not None:
        shares = any(
            c.final_id == x.final_id and c.voice == other and c.ingest_id == x.ingest_id
            for c in clips
        )
        return ErrorKind.REGISTRY_MERGE if shares else ErrorKind.CONSOLIDATION
    own = {s for s, v in mapping.items() if v == x.voice}
    if any(c.final_id in own and c.recording_id == x.recording_id for c in clips):
        return ErrorKind.CLUSTER_SPLIT
    if any(c.final_id in own and c.ingest_id == x.ingest_id for c in clips):
        return ErrorKind.CONSOLIDATION
    return ErrorKind.REGISTRY_SPLIT


def voice_centroids(voices: Sequence[str], embeddings: FloatArray) -> tuple[list[str], FloatArray]:
    """Sorted voices and the unit mean of their clips' unit embeddings, shape (voices, dim)."""
    names = sorted(set(voices))
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    rows = []
    for name in names:
        mean = unit[[k for k, v in enumerate(voices) if v == name]].mean(axis=0)
        rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    return names, np.stack(rows).astype(np.float32)


LABEL_GROUPS = ("accepted", "review")


def errors_by_kind(
    clips: Sequence[Mapping[str, Any]],
    ingest_ids: Mapping[str, str],
    truth: Mapping[str, Sequence[evaluation.RefTurn]],
    top: int = 6,
) -> dict[str, Any]:
    """The benchmark's "errors by kind" block (JSON-able) for clip rows as they read now.

    ``ingest_ids``: clip id -> the id the ingest wrote on its row (before
    consolidation's splits and merges). Per kind: B-cubed precision and recall
    lost and F1 without it; the ``top`` voices (recall) and voice pairs
    (precision) losing most, with their CAM++ voice-centroid cosine; and the
    wrong speaker labels among the accepted and the reviewed clips by kind.
    """
    labelled, ref, right = evaluation.judge(clips, truth)
    facts = [
        ClipIdentity(
            r[0],
            c["recording_id"],
            c["recording_speaker"],
            ingest_ids.get(c["clip_id"], c["speaker_id"]),
            c["speaker_id"],
            c["end"] - c["start"],
        )
        for c, r in zip(labelled, ref, strict=True)
    ]
    d = decompose(facts)
    before = decompose([replace(f, final_id=f.ingest_id) for f in facts]).f1
    cosine: dict[tuple[str, str], float] = {}
    vectors = [c.get("speaker_embedding") for c in labelled]
    if facts and all(v is not None and len(v) for v in vectors):
        names, unit = voice_centroids(
            [f.voice for f in facts], np.asarray(vectors, dtype=np.float32)
        )
        sims = unit @ unit.T
        cosine = {
            (a, b): float(sims[i, j]) for i, a in enumerate(names) for j, b in enumerate(names)
        }
    pairs: dict[tuple[str, str, ErrorKind], float] = defaultdict(float)
    for (a, b, kind), loss in d.by_pair.items():
        pairs[(min(a, b), max(a, b), kind)] += loss
    mapping, main = _mapping(labelled, ref), main_voices(facts)
    wrong: dict[str, dict[str, int]] = {g: {} for g in LABEL_GROUPS}
    for i, c in enumerate(labelled):
        why = None if right[i] else wrong_label_kind(i, facts, mapping, main)
        if why is None:
            continue
        group = "accepted" if evaluation.speaker_status(c) == "accepted" else "review"
        wrong[group][why.value] = wrong[group].get(why.value, 0) + 1
    return {
        "clips": d.clips,
        "bcubed": [d.precision, d.recall, d.f1],
        "bcubed_f1_ingest_ids": before,
        "kinds": {k.value: [d.precision_loss[k], d.recall_loss[k], d.f1_without(k)] for k in KINDS},
        "voices": [
            [v, k.value, loss]
            for (v, k), loss in sorted(d.by_voice.items(), key=lambda kv: -kv[1])[:top]
        ],
        "pairs": [
            [a, b, k.value, loss, cosine.get((a, b), float("nan"))]
            for (a, b, k), loss in sorted(pairs.items(), key=lambda kv: -kv[1])[:top]
        ],
        "wrong_labels": wrong,
    }


def _mapping(
    labelled: Sequence[Mapping[str, Any]], ref: Sequence[tuple[str, float]]
) -> dict[str, str]:
    """The benchmark's one-to-one mapping of ids onto voices (by shared speech)."""
    shared: dict[tuple[str, str], float] = defaultdict(float)
    for c, (voice, _) in zip(labelled, ref, strict=True):
        shared[(c["speaker_id"], voice)] += c["end"] - c["start"]
    return evaluation.one_to_one_mapping(shared)


def render_errors(block: Mapping[str, Any]) -> list[str]:
    """The printed lines of :func:`errors_by_kind`'s block."""
    if not block or not block.get("clips"):
        return []
    p, r, f1 = block["bcubed"]
    lines = [
        f"identity errors by kind (cross-episode B-cubed P {p:.4f} R {r:.4f} F1 {f1:.4f},"
        f" {block['bcubed_f1_ingest_ids']:.4f} on the ids the ingest wrote, before"
        " consolidation; losses add up; README, Benchmark):",
        "  kind                               P lost  R lost  F1 without",
    ]
    what = {
        "cluster_merge": "(a) two voices, one rec. speaker",
        "cluster_split": "(b) one voice, two rec. speakers",
        "registry_split": "(c) known voice given a new id",
        "registry_merge": "(d) voice matched to another's id",
        "consolidation": "(e) consolidation merge / split",
    }
    for kind, (pl, rl, f) in block["kinds"].items():
        lines.append(f"  {what.get(kind, kind):<34} {pl:6.4f}  {rl:6.4f}  {f:10.4f}")
    if block["voices"]:
        lines.append(
            "  voices losing most recall: "
            + ", ".join(f"{v} {k} {x:.4f}" for v, k, x in block["voices"])
        )
    if block["pairs"]:
        lines.append(
            "  voice pairs losing most precision (CAM++ voice-centroid cosine): "
            + ", ".join(f"{a}+{b} {k} {x:.4f} ({c:.2f})" for a, b, k, x, c in block["pairs"])
        )
    for group, kinds in block["wrong_labels"].items():
        shown = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"
        lines.append(f"  wrong speaker labels, {group}: {shown}")
    return lines
