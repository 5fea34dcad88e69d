"""Turn a recording's segmentation, embeddings and transcripts into labelled clips.

Pure computation: no model loading, no file access. The flow calls these in
order: :func:`speakers_of_recording` (cluster local speakers),
:func:`identify` (match them to the registry), then :func:`build_clips`.
"""

from __future__ import annotations

import bisect
import copy
import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from convoice.config import ClusterUnit, RoutingSettings, SimilarityScale
from convoice.models.calibration import Calibration
from convoice.models.clustering import NodeClustering, cluster_nodes, normalize
from convoice.models.diarize import ClipRegion, Segmentation
from convoice.models.pitch import pitch_allowed
from convoice.models.registry import MatchDecision, SpeakerMatch, match_speakers
from convoice.models.routing import (
    Routing,
    SpeakerEvidence,
    route,
    speaker_evidence,
    speaker_kind,
)
from convoice.models.voices import TwoVoiceRule, VoiceEvidence, flags_of, voice_evidence
from convoice.records import Clip, FloatArray, Region, ReviewReason, Speaker, Transcript, stable_id


@dataclass(frozen=True)
class RecordingSpeakers:
    """The speakers of one recording, from clustering its local speakers."""

    nodes: list[tuple[int, int]]  # (chunk, local speaker) per node
    node_labels: npt.NDArray[np.int64]  # recording speaker per node, -1 when unknown
    clip_labels: npt.NDArray[np.int64]  # recording speaker per clip, after refinement
    centroids: FloatArray  # shape: (num_speakers, dim), unit norm, from the clips
    speech: npt.NDArray[np.float64]  # seconds of speech per recording speaker
    two_voices: npt.NDArray[np.bool_] | None = None  # per clip; None when not checked
    voice_evidence: list[VoiceEvidence] | None = None  # per clip, what flagged it or not

    @property
    def num_speakers(self) -> int:
        return int(self.centroids.shape[0])

    def label_of(self, node: tuple[int, int]) -> int:
        """The recording speaker of a (chunk, local speaker) node; -1 when unknown."""
        index = self._node_index.get(node)
        return -1 if index is None else int(self.node_labels[index])

    @functools.cached_property
    def _node_index(self) -> dict[tuple[int, int], int]:
        return {node: i for i, node in enumerate(self.nodes)}


def node_regions(seg: Segmentation) -> tuple[list[tuple[int, int]], list[list[Region]]]:
    """Every (chunk, local speaker) node and its speech pieces."""
    pieces: dict[tuple[int, int], list[Region]] = {}
    for turn in seg.turns:
        pieces.setdefault(turn.node, []).extend(turn.pieces)
    nodes = sorted(pieces)
    return nodes, [pieces[n] for n in nodes]


def speakers_of_recording(
    seg: Segmentation,
    clip_embeddings: FloatArray,
    node_embeddings: FloatArray,
    scale: SimilarityScale,
    max_speakers: int,
    min_speaker_s: float = 0.0,
    clip_windows: Sequence[FloatArray] | None = None,
    two_voice_rule: TwoVoiceRule | None = None,
    part_similarity: Sequence[float] | None = None,
    unit: str = ClusterUnit.NODE,
) -> RecordingSpeakers:
    """Cluster local speakers into recording speakers (identity embeddings, ``scale``).

    ``unit`` "node": each (chunk, local speaker) is clustered whole, its embedding the
    mean of its clips' (or, for a node without clips, ``node_embeddings``: its speech
    embedded whole). ``unit`` "clip": each clip is clustered on its own (a node without
    clips as one item), so a local speaker the segmentation model gave two voices is
    split; a node's label is then the one most of its clips' seconds got. Nodes whose
    speech was too short to embed stay unassigned (-1). With ``clip_windows``
    (each clip's window embeddings) and a ``two_voice_rule``, clips holding two
    voices are flagged (:func:`convoice.models.voices.two_voice_flags`; with
    ``part_similarity``, each clip's parts across its pauses are compared too).
    """
    if unit not in tuple(ClusterUnit):
        raise ValueError(f"cluster unit must be 'node' or 'clip', not {unit!r}")
    nodes, pieces = node_regions(seg)
    index = {n: i for i, n in enumerate(nodes)}
    weights = np.array([sum(p.duration for p in ps) for ps in pieces], dtype=np.float64)
    clip_nodes = np.array([index[seg.turns[c.turn].node] for c in seg.clips], dtype=np.int64)
    if unit == ClusterUnit.CLIP:
        labels, clustering, clip_start = _cluster_clips(
            seg, nodes, clip_nodes, clip_embeddings, node_embeddings, weights, scale,
            max_speakers, min_speaker_s,
        )  # fmt: skip
    else:
        sums = _node_sums(seg, index, clip_embeddings, node_embeddings)
        usable = np.linalg.norm(sums, axis=1) > 0
        groups = np.array([n[0] for n in nodes], dtype=np.int64)[usable]
        clustering = cluster_nodes(
            normalize(sums[usable]), weights[usable], groups, scale.cluster_threshold,
            max_speakers, min_speaker_s,
        )  # fmt: skip
        labels = np.full(len(nodes), -1, dtype=np.int64)
        labels[usable] = clustering.labels
        clip_start = labels[clip_nodes] if len(clip_nodes) else np.zeros(0, np.int64)
    speech = np.array(
        [weights[labels == c].sum() for c in range(clustering.num_clusters)], dtype=np.float64
    )
    clip_labels, centroids = refine_clip_labels(
        clip_embeddings, clip_start, clustering, margin=scale.refine_margin
    )
    flags, evidence = None, None
    if clip_windows is not None and two_voice_rule is not None:
        evidence = voice_evidence(clip_windows, clip_labels, centroids, part_similarity)
        flags = flags_of(evidence, clip_labels, two_voice_rule)
    return RecordingSpeakers(nodes, labels, clip_labels, centroids, speech, flags, evidence)


def _cluster_clips(
    seg: Segmentation,
    nodes: list[tuple[int, int]],
    clip_nodes: npt.NDArray[np.int64],
    clip_embeddings: FloatArray,
    node_embeddings: FloatArray,
    node_speech: npt.NDArray[np.float64],
    scale: SimilarityScale,
    max_speakers: int,
    min_speaker_s: float,
) -> tuple[npt.NDArray[np.int64], NodeClustering, npt.NDArray[np.int64]]:
    """Cluster every clip, and every node without clips whole; per node the label most of
    its seconds got, the clustering, and each clip's label."""
    with_clip = np.zeros(len(nodes), dtype=bool)
    with_clip[clip_nodes] = True
    whole = np.flatnonzero(~with_clip & (np.linalg.norm(node_embeddings, axis=1) > 0))
    item_nodes = np.concatenate([clip_nodes, whole]).astype(np.int64)
    labels = np.full(len(nodes), -1, dtype=np.int64)
    if not len(item_nodes):
        dim = clip_embeddings.shape[1]
        empty = NodeClustering(np.zeros(0, np.int64), np.zeros((0, dim), np.float32))
        return labels, empty, np.zeros(0, np.int64)
    embeddings = normalize(np.concatenate([clip_embeddings, node_embeddings[whole]]))
    durations = [c.region.duration for c in seg.clips] + [float(node_speech[i]) for i in whole]
    weights = np.array(durations, dtype=np.float64)
    chunk_of = np.array([nodes[i][0] for i in item_nodes], dtype=np.int64)
    local_of = np.array([nodes[i][1] for i in item_nodes], dtype=np.int64)
    clustering = cluster_nodes(
        embeddings, weights, chunk_of, scale.cluster_threshold, max_speakers, min_speaker_s,
        speakers=local_of,
    )  # fmt: skip
    for node in np.unique(item_nodes):
        mine = item_nodes == node
        votes = np.bincount(clustering.labels[mine], weights[mine])
        labels[node] = int(np.argmax(votes))
    return labels, clustering, clustering.labels[: len(seg.clips)]


def _node_sums(
    seg: Segmentation,
    index: dict[tuple[int, int], int],
    clip_embeddings: FloatArray,
    node_embeddings: FloatArray,
) -> FloatArray:
    """Per node, its clips' embeddings weighted by their length (its own when it has none)."""
    sums = node_embeddings.astype(np.float32).copy()  # shape: (num_nodes, dim)
    has_clip = np.zeros(len(index), dtype=bool)
    for clip, emb in zip(seg.clips, clip_embeddings, strict=True):
        i = index[seg.turns[clip.turn].node]
        if not has_clip[i]:
            sums[i] = 0.0
            has_clip[i] = True
        sums[i] += emb * clip.region.duration
    return sums


def refine_clip_labels(
    embeddings: FloatArray,
    labels: npt.NDArray[np.int64],
    clustering: NodeClustering,
    margin: float = 0.10,
    rounds: int = 2,
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Move a clip to another speaker when it is clearly closer to it.

    The segmentation model sometimes gives two similar voices one local label
    inside a chunk; the clips of such a node then disagree with each other.
    Each round recomputes the centroids from the clips and moves the clips
    that are closer to another speaker by more than ``margin``.
    """
    labels = labels.copy()
    centroids = clustering.centroids
    for _ in range(rounds):
        valid = labels >= 0
        if not valid.any():
            break
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels[valid], embeddings[valid])
        centroids = np.where(
            np.linalg.norm(sums, axis=1, keepdims=True) > 0, normalize(sums), centroids
        )
        sims = embeddings @ centroids.T  # shape: (num_clips, num_speakers)
        best = sims.argmax(axis=1)
        current = np.where(valid, sims[np.arange(len(labels)), np.maximum(labels, 0)], -np.inf)
        move = valid & (best != labels) & (sims[np.arange(len(labels)), best] - current > margin)
        if not move.any():
            break
        labels[move] = best[move]
    return labels, centroids.astype(np.float32)


def identify(
    recording_id: str,
    speakers: RecordingSpeakers,
    registry_ids: list[str],
    registry_centroids: FloatArray,
    scale: SimilarityScale,
    registry_recordings: Sequence[int] | None = None,
    allowed: npt.NDArray[np.bool_] | None = None,
) -> list[SpeakerMatch]:
    """Match the recording's speakers to the registry (one-to-one); ``registry_recordings``:
    per known speaker, how many recordings it was absorbed from (None: not known);
    ``allowed``: (recording speaker, known speaker) pairs that may match at all (the pitch
    veto, :func:`speaker_pitch_allowed`; None: every pair)."""
    if len(registry_ids) and registry_centroids.shape[1] != speakers.centroids.shape[1]:
        raise ValueError(
            f"the registry holds {registry_centroids.shape[1]}-d speaker vectors but this "
            f"recording was embedded in {speakers.centroids.shape[1]}-d: set [identity] encoder "
            "to the store's encoder"
        )
    return match_on_scale(
        recording_id, speakers.centroids, registry_ids, registry_centroids, scale,
        registry_recordings, allowed,
    )  # fmt: skip


def speaker_pitch_allowed(
    speakers: RecordingSpeakers,
    clip_f0: Sequence[float],
    registry_pitch: Sequence[tuple[float, float]],
    limit: float,
) -> npt.NDArray[np.bool_] | None:
    """Which (recording speaker, known speaker) pairs the pitch veto lets match.

    ``clip_f0``: per clip region, its median F0 (Hz; NaN unknown); ``registry_pitch``: per
    known speaker, its (lowest, highest) clip F0. A recording speaker's pitch is the range of
    its clips' (:func:`convoice.models.pitch.pitch_allowed`). None (every pair) when
    ``limit`` is 0 (off) or no clip pitch is known (a recording prepared before pitch).
    """
    if limit <= 0 or not len(clip_f0):
        return None
    if len(clip_f0) != len(speakers.clip_labels):
        raise ValueError(f"{len(clip_f0)} clip pitches for {len(speakers.clip_labels)} clips")
    labels = speakers.clip_labels.tolist()
    mine = [
        [f for f, k in zip(clip_f0, labels, strict=True) if k == s]
        for s in range(speakers.num_speakers)
    ]
    return pitch_allowed(mine, [list(p) for p in registry_pitch], limit)


def match_on_scale(
    recording_id: str,
    centroids: FloatArray,
    registry_ids: list[str],
    registry_centroids: FloatArray,
    scale: SimilarityScale,
    registry_recordings: Sequence[int] | None = None,
    allowed: npt.NDArray[np.bool_] | None = None,
) -> list[SpeakerMatch]:
    """:func:`~convoice.models.registry.match_speakers` with the thresholds of ``scale``."""
    return match_speakers(
        recording_id,
        centroids,
        registry_ids,
        registry_centroids,
        scale.match_threshold,
        scale.new_threshold,
        scale.margin,
        scale.absorb_threshold,
        registry_recordings,
        allowed,
    )


def clip_id(recording_id: str, start: float, end: float) -> str:
    """The id of the clip at ``start``-``end`` s of a recording (times rounded to 1 ms)."""
    return stable_id("clip", recording_id, f"{round(start, 3):.3f}", f"{round(end, 3):.3f}")


def keeps_clip(label: int, embedding: FloatArray, identity: FloatArray) -> bool:
    """Whether a clip region becomes a clip: it has a speaker and both its embeddings."""
    return label >= 0 and bool(np.any(embedding)) and bool(np.any(identity))


def build_clips(
    recording_id: str,
    seg: Segmentation,
    speakers: RecordingSpeakers,
    matches: list[SpeakerMatch],
    clip_embeddings: FloatArray,
    transcripts: list[Transcript | None],
    routing: RoutingSettings,
    scale: SimilarityScale,
    identity_embeddings: FloatArray | None = None,
    calibration: Calibration | None = None,
    registry_ids: Sequence[str] | None = None,
    registry_centroids: FloatArray | None = None,
    clip_f0: Sequence[float] = (),
) -> list[Clip]:
    """Labelled, scored and routed clips of one recording.

    ``identity_embeddings``: the identity encoder's, one row per clip (None
    when the d-vectors identify); ``speakers`` was clustered on them.
    ``calibration``: raw scores to probabilities (None: the raw scores route).
    Which clips are kept is :func:`keeps_clip`; their ids, :func:`clip_id`.
    ``registry_ids`` / ``registry_centroids``: the known speakers the recording was matched
    against (rows of unit centroids on the identity embedding); given, each clip is also
    checked on its own against them (:func:`convoice.models.routing.identity_strength`).
    ``clip_f0``: per clip region, its median F0 (Hz), kept on the clip (empty: unknown).
    """
    identity = clip_embeddings if identity_embeddings is None else identity_embeddings
    by_speaker = {m.recording_speaker: m for m in matches}
    known = registry_centroids if registry_ids else None  # nobody known: nothing to check
    nobody = np.zeros(0, np.float32) if registry_ids is not None else None
    known_index = {s: k for k, s in enumerate(registry_ids or ())}
    clips: list[Clip] = []
    for i, (region, transcript, label) in enumerate(
        zip(seg.clips, transcripts, speakers.clip_labels.tolist(), strict=True)
    ):
        emb, vec = clip_embeddings[i], identity[i]
        if not keeps_clip(label, emb, vec):
            continue
        match = by_speaker[label]
        two = region.two_voices or (
            bool(speakers.two_voices[i]) if speakers.two_voices is not None else False
        )
        known_sims = known @ vec if known is not None else nobody
        chosen = known_index.get(match.speaker_id, -1)
        evidence = speaker_evidence(
            speakers.centroids @ vec, label, match, scale, two, known_sims, chosen
        )
        decision = route(
            evidence, transcript, region.region.duration, region.overlap_nearby, routing,
            calibration,
        )  # fmt: skip
        own_vector = None if identity_embeddings is None else vec
        clip = _clip(
            recording_id, region, transcript, label, match, evidence, decision, emb, own_vector
        )
        clip.extra.update(
            two_voice_extra(
                region, None if speakers.voice_evidence is None else speakers.voice_evidence[i]
            )
        )
        clips.append(replace(clip, f0_hz=clip_f0[i]) if len(clip_f0) else clip)
    return clips


def _clip(
    recording_id: str,
    region: ClipRegion,
    transcript: Transcript | None,
    label: int,
    match: SpeakerMatch,
    evidence: SpeakerEvidence,
    decision: Routing,
    embedding: FloatArray,
    identity: FloatArray | None,
) -> Clip:
    """The clip row of ``region``: its speaker, its scores and where it was routed."""
    start, end = round(region.region.start, 3), round(region.region.end, 3)
    return Clip(
        clip_id=clip_id(recording_id, start, end),
        recording_id=recording_id,
        start=start,
        end=end,
        recording_speaker=f"S{label}",
        embedding=embedding.astype(np.float32),
        speaker_id=match.speaker_id,
        speaker_confidence=decision.speaker_confidence,
        overlap_nearby=region.overlap_nearby,
        transcript=transcript,
        transcript_confidence=decision.transcript_confidence,
        status=decision.status,
        review_reasons=decision.reasons,
        extra={
            "own_similarity": round(evidence.own_similarity, 4),
            "other_similarity": round(evidence.other_similarity, 4),
            "identity_similarity": round(match.similarity, 4),
            "identity_runner_up": round(match.runner_up, 4),
            "identity_strength": evidence.identity_strength,
            "clip_identity": round(evidence.clip_identity, 4),
            "clip_runner_up": round(evidence.clip_runner_up, 4),
            "speaker_kind": speaker_kind(evidence),  # the calibration curve it was judged by
        },
        speaker_embedding=None if identity is None else identity.astype(np.float32),
        speaker_status=decision.speaker_status,
        transcript_status=decision.transcript_status,
        speaker_score=decision.speaker_score,
        transcript_score=decision.transcript_score,
        calibration=decision.calibration,
    )


def two_voice_extra(region: ClipRegion, voices: VoiceEvidence | None) -> dict[str, float]:
    """What each two-voice detector measured on a clip (kept in its ``extra``):
    ``two_voice_other`` (segmentation: the mean probability that another local speaker
    talks at the same time, :func:`~convoice.models.segmentation.other_voice_together`),
    ``two_voice_edge`` (1: an overlap at its edge was not trimmed off), and with CAM++
    windows ``two_voice_switch``, ``two_voice_pair``, ``two_voice_part``
    (:class:`VoiceEvidence`).
    """
    out = {
        "two_voice_other": round(region.other_voice, 4),
        "two_voice_edge": float(region.edge_overlap),
    }
    if voices is not None:
        out |= {
            "two_voice_switch": round(voices.switch, 4),
            "two_voice_pair": round(voices.pair, 4),
            "two_voice_part": round(voices.part, 4),
        }
    return out


def absorbed_clips(
    decision: MatchDecision,
    known: bool,
    clip_reasons: Sequence[Sequence[str]],
    moves_centroid: bool = True,
) -> list[bool]:
    """Which of a recording speaker's clips count in its identity's registry sum.

    An uncertain match to a known speaker counts none (it must not pull that
    centroid before a person confirms it), nor does a match below the absorb
    threshold (``moves_centroid`` False: :func:`~convoice.models.registry.match_speakers`);
    otherwise the clips sure of their
    speaker (and holding one voice) count, or all of them when none is. ``clip_reasons``: the review
    reasons of the speaker's clips.
    """
    if known and (decision == MatchDecision.UNCERTAIN or not moves_centroid):
        return [False] * len(clip_reasons)
    doubt = (ReviewReason.UNCERTAIN_SPEAKER, ReviewReason.TWO_VOICES)
    sure = [not any(r in reasons for r in doubt) for reasons in clip_reasons]
    return sure if any(sure) else [True] * len(clip_reasons)


def update_registry(
    recording_id: str,
    clips: list[Clip],
    matches: list[SpeakerMatch],
    known: dict[str, Speaker],
    at: str,
) -> list[Speaker]:
    """Copies of the registry speakers this recording touched, with its clips absorbed.

    Which clips count is :func:`absorbed_clips`; each clip records it in
    ``extra["absorbed"]`` (the review pull's accounting reads it, see
    :func:`convoice.review.decisions.machine_absorbed`).
    """
    touched: list[Speaker] = []
    for match in matches:
        mine = [c for c in clips if c.speaker_id == match.speaker_id]
        speaker = copy.deepcopy(known.get(match.speaker_id))  # the caller's stay as they were
        flags = absorbed_clips(
            match.decision, speaker is not None, [c.review_reasons for c in mine],
            match.moves_centroid,
        )  # fmt: skip
        for clip, flag in zip(mine, flags, strict=True):
            clip.extra["absorbed"] = flag
        counted = [c for c, flag in zip(mine, flags, strict=True) if flag]
        if not counted:
            continue
        emb = np.stack([c.identity_vector for c in counted]).astype(np.float32)
        if speaker is None:
            speaker = Speaker(
                speaker_id=match.speaker_id,
                vector_sum=np.zeros(emb.shape[1], dtype=np.float32),
                n_clips=0,
                total_duration=0.0,
                n_recordings=0,
                first_seen=at,
                updated_at=at,
            )
        speaker.absorb(
            recording_id, emb, sum(c.duration for c in counted), at, [c.f0_hz for c in counted]
        )
        touched.append(speaker)
    return touched


def bridge_pauses(
    turns: list[tuple[float, float, str]], gap_s: float, lone: bool = False
) -> list[tuple[float, float, str]]:
    """``turns`` with each speaker's stretches joined across pauses shorter than ``gap_s``
    (pyannote's ``min_duration_off``), and across overlaps of their own; sorted.

    A speaker's stretches of speech with a pause of under ``gap_s`` between them become
    one: a diarization timeline, like a person's reference, counts the short pauses inside
    a turn as its speech. With ``lone``, only a pause in which no other speaker's stretch
    falls: where someone else talks between two stretches of a speaker, the turn changed
    (two people answering each other within ``gap_s``), and that gap is nobody's pause.
    """
    if gap_s < 0:
        raise ValueError(f"a pause cannot be shorter than 0 s, got {gap_s}")
    by_speaker: dict[str, list[tuple[float, float]]] = {}
    for start, end, label in turns:
        by_speaker.setdefault(label, []).append((start, end))
    out: list[tuple[float, float, str]] = []
    for label, stretches in by_speaker.items():
        talks = _someone_else(turns, label) if lone else None
        joined: list[list[float]] = []
        for start, end in sorted(stretches):
            gap = start - joined[-1][1] if joined else gap_s
            if gap < gap_s and (gap <= 0 or talks is None or not talks(joined[-1][1], start)):
                joined[-1][1] = max(joined[-1][1], end)
            else:
                joined.append([start, end])
        out.extend((start, end, label) for start, end in joined)
    return sorted(out)


def _someone_else(
    turns: list[tuple[float, float, str]], label: str
) -> Callable[[float, float], bool]:
    """Whether a speaker other than ``label`` has a stretch inside the open interval (a, b):
    one bisection over the others' stretches sorted by start, with the running latest end."""
    others = sorted((start, end) for start, end, who in turns if who != label)
    starts = [start for start, _ in others]
    latest = list(itertools.accumulate((end for _, end in others), max))

    def talks(a: float, b: float) -> bool:
        before = bisect.bisect_left(starts, b)  # the stretches that start before b
        return before > 0 and latest[before - 1] > a

    return talks


def diarization_output(
    seg: Segmentation, speakers: RecordingSpeakers, gap_s: float = 0.0, lone: bool = False
) -> list[tuple[float, float, str]]:
    """(start, end, speaker) for every stretch of speech, overlap included, for DER.

    A stretch takes the label of the clips inside it (most seconds of overlap; the
    clips' labels are the clustering's, refined), else its local speaker's: a local
    speaker the clustering split keeps each voice where its clips are. A speaker's
    pauses shorter than ``gap_s`` (``[diarization] timeline_gap_s``) are their speech
    (:func:`bridge_pauses`; with ``lone``, ``timeline_gap_lone``, only pauses in which nobody
    else talks); 0 keeps the segmentation's frames as they are.
    """
    from convoice.models.segmentation import speaker_regions

    clips_of: dict[tuple[int, int], list[tuple[Region, int]]] = {}
    for clip, label in zip(seg.clips, speakers.clip_labels, strict=True):
        if label >= 0:
            clips_of.setdefault(seg.turns[clip.turn].node, []).append((clip.region, int(label)))
    out: list[tuple[float, float, str]] = []
    for chunk_seg in seg.chunk_segmentations:
        for local in range(chunk_seg.activity.shape[1]):
            node = (chunk_seg.chunk.index, local)
            fallback = speakers.label_of(node)
            for r in speaker_regions(chunk_seg, local):
                seconds: dict[int, float] = {}
                for where, label in clips_of.get(node, []):
                    both = min(where.end, r.end) - max(where.start, r.start)
                    if both > 0:
                        seconds[label] = seconds.get(label, 0.0) + both
                label = max(seconds, key=lambda k: seconds[k]) if seconds else fallback
                if label >= 0:
                    out.append((r.start, r.end, f"S{label}"))
    return bridge_pauses(out, gap_s, lone) if gap_s > 0 else sorted(out)
