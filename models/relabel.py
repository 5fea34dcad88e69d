"""Re-label the store with another speaker encoder: identities, confidences, routing.

After a new encoder is promoted, every clip gets a new embedding, and the
cross-recording identities are worked out again the way ingestion works them
out: recordings in the order they were ingested, each recording's speakers
matched one-to-one to the registry built from the recordings before it
(:func:`convoice.models.registry.match_speakers`), the sure clips absorbed.
People's labels are inputs, never outputs: a clip a person labelled feeds the
registry under the person's speaker and keeps the person's label (the release
overlays it); speaker merges people made map machine ids onto the kept ones.

What is not redone: the diarization inside a recording (which clip belongs to
which local speaker, ``recording_speaker``) and the transcripts; reasons for
review that come from the transcript are kept as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from convoice.config import RegistrySettings, RoutingSettings, SimilarityScale, resemblyzer_scale
from convoice.models.calibration import Calibration
from convoice.models.clustering import normalize
from convoice.models.labelling import absorbed_clips
from convoice.models.registry import match_speakers, new_speaker_id
from convoice.models.routing import (
    Reason,
    SpeakerEvidence,
    identity_strength,
    speaker_side,
)
from convoice.records import (
    SPEAKER_REASONS,
    ClipLabel,
    ClipStatus,
    FloatArray,
    LabelSource,
    Speaker,
)
from convoice.records import canonical as resolve_merges


@dataclass(frozen=True)
class ClipFacts:
    """What the replay needs of one clip (from the store's clip rows and people's labels)."""

    clip_id: str
    recording_id: str
    recording_speaker: str  # "S0", "S1", ...: the local speaker inside its recording
    duration: float
    machine_reasons: tuple[str, ...]  # the machine's review reasons when it was labelled
    human_speaker: str = ""  # a person's speaker label, "" when none
    human_status: str = ""  # a person's status label (ClipStatus accepted / rejected), "" when none


@dataclass
class Replay:
    """New machine labels of every clip and the registry they add up to."""

    labels: dict[str, ClipLabel] = field(default_factory=dict)
    speakers: dict[str, Speaker] = field(default_factory=dict)


@dataclass
class _Sum:
    vector: FloatArray
    n: int = 0
    duration: float = 0.0
    recordings: set[str] = field(default_factory=set)


def replay(
    recordings: Sequence[str],
    clips: Sequence[ClipFacts],
    embeddings: FloatArray,
    merged_into: Mapping[str, str],
    registry_cfg: RegistrySettings | SimilarityScale,
    routing_cfg: RoutingSettings,
    previous: Mapping[str, Speaker] | None = None,
    at: str = "",
    calibration: Calibration | None = None,
) -> Replay:
    """Label ``clips`` (rows of unit ``embeddings``) recording by recording, in ingest order.

    ``registry_cfg``: the thresholds of the encoder that made ``embeddings``
    (``RegistrySettings``: resemblyzer's, as the encoder round trains it).

    ``calibration``: raw speaker scores to probabilities and routing by target
    precision, as ingestion does (None: the raw scores and thresholds).

    ``previous`` (the registry being replaced) lends its speakers' names,
    label sources and first-seen times to the rebuilt ones.
    """
    if embeddings.shape[0] != len(clips):
        raise ValueError(f"{len(clips)} clips but {embeddings.shape[0]} embeddings")
    if isinstance(registry_cfg, RegistrySettings):
        registry_cfg = resemblyzer_scale(registry_cfg)
    order = {rid: i for i, rid in enumerate(recordings)}
    missing = {c.recording_id for c in clips} - set(order)
    if missing:
        raise ValueError(f"clips of unknown recordings: {sorted(missing)[:3]}")
    by_recording: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        by_recording.setdefault(clip.recording_id, []).append(i)
    out = Replay()
    sums: dict[str, _Sum] = {}
    dim = embeddings.shape[1]
    for rid in sorted(by_recording, key=order.__getitem__):
        rows = by_recording[rid]
        known_ids = sorted(sums)  # as ingestion sees them: empty ones (zero rows) never match
        known = (
            normalize(np.stack([sums[s].vector for s in known_ids]))
            if known_ids
            else np.zeros((0, dim), dtype=np.float32)
        )
        labels = _label_recording(
            rid, [clips[i] for i in rows], embeddings[rows], known_ids, known, merged_into,
            registry_cfg, routing_cfg, calibration,
        )  # fmt: skip
        for i, label in zip(rows, labels, strict=True):
            out.labels[clips[i].clip_id] = label
            # Every identity the machine gives is registered, even before a sure clip.
            sums.setdefault(label.speaker_id, _Sum(np.zeros(dim, np.float32)))
            clip = clips[i]
            # As the review pull counts clips (review_registry.desired_contributions): a
            # person's accept counts the clip under the person's speaker, a reject not at all.
            if clip.human_status == ClipStatus.REJECTED:
                continue
            if clip.human_status == ClipStatus.ACCEPTED:
                owner = resolve_merges(clip.human_speaker or label.speaker_id, merged_into)
            elif label.absorbed:
                owner = label.speaker_id
            else:
                continue
            if owner:
                s = sums.setdefault(owner, _Sum(np.zeros(dim, np.float32)))
                s.vector = s.vector + embeddings[i]
                s.n += 1
                s.duration += clip.duration
                s.recordings.add(rid)
    out.speakers = _speakers(sums, previous or {}, at)
    return out


def _label_recording(
    rid: str,
    clips: list[ClipFacts],
    emb: FloatArray,
    known_ids: list[str],
    known: FloatArray,
    merged_into: Mapping[str, str],
    registry_cfg: SimilarityScale,
    routing_cfg: RoutingSettings,
    calibration: Calibration | None = None,
) -> list[ClipLabel]:
    """New labels of one recording's clips (``absorbed``: whether each counts for the registry)."""
    locals_ = sorted({c.recording_speaker for c in clips}, key=_local_index)
    index = {name: k for k, name in enumerate(locals_)}
    member = np.array([index[c.recording_speaker] for c in clips])
    sums = np.zeros((len(locals_), emb.shape[1]), dtype=np.float32)
    np.add.at(sums, member, emb)
    centroids = normalize(sums)
    matches = match_speakers(
        rid, centroids, known_ids, known,
        registry_cfg.match_threshold, registry_cfg.new_threshold, registry_cfg.margin,
    )  # fmt: skip
    ids: list[str] = []
    for k, match in enumerate(matches):
        speaker = match.speaker_id
        if speaker == new_speaker_id(rid, k):  # new speakers keep the id ingestion gave them
            speaker = new_speaker_id(rid, _local_index(locals_[k]))
        ids.append(resolve_merges(speaker, merged_into))
    sims = emb @ centroids.T  # shape: (clips, local speakers)
    evidence: list[SpeakerEvidence] = []
    scores: list[tuple[float, float]] = []  # (raw score, probability) of each clip
    reasons_of: list[list[str]] = []
    for i, clip in enumerate(clips):
        k, match = int(member[i]), matches[int(member[i])]
        other = float(np.delete(sims[i], k).max()) if len(locals_) > 1 else -1.0
        two = Reason.TWO_VOICES in clip.machine_reasons  # kept as found at ingestion
        strength = identity_strength(
            match.decision, match.similarity, match.runner_up,
            registry_cfg.match_threshold, registry_cfg.new_threshold,
        )  # fmt: skip
        ev = SpeakerEvidence(
            float(sims[i, k]), other, match.confidence,
            registry_cfg.fit_low, registry_cfg.fit_high, registry_cfg.fit_margin, two, strength,
        )  # fmt: skip
        raw, probability, doubts = speaker_side(ev, routing_cfg, calibration)
        # As routing.route orders them: the speaker's reasons, then the transcript's.
        kept = [r for r in clip.machine_reasons if r not in SPEAKER_REASONS]
        evidence.append(ev)
        scores.append((raw, min(1.0, raw) if calibration is None else probability))
        reasons_of.append(list(dict.fromkeys([*doubts, *kept])))
    absorbed = [False] * len(clips)
    for k, match in enumerate(matches):  # as ingestion decides it, per recording speaker
        members = [i for i in range(len(clips)) if member[i] == k]
        flags = absorbed_clips(
            match.decision, match.speaker_id in known_ids, [reasons_of[i] for i in members]
        )
        for i, flag in zip(members, flags, strict=True):
            absorbed[i] = flag
    return [
        ClipLabel(
            clip_id=clip.clip_id,
            speaker_id=ids[int(member[i])],
            speaker_confidence=scores[i][1],  # raw, capped at 1, when not calibrated
            status=ClipStatus.ACCEPTED if not reasons_of[i] else ClipStatus.REVIEW,
            review_reasons=tuple(reasons_of[i]),
            own_similarity=round(evidence[i].own_similarity, 4),
            other_similarity=round(evidence[i].other_similarity, 4),
            identity_similarity=round(matches[int(member[i])].similarity, 4),
            absorbed=absorbed[i],
            speaker_score_raw=scores[i][0],
            calibration="" if calibration is None else calibration.version,
        )
        for i, clip in enumerate(clips)
    ]


def _local_index(name: str) -> int:
    """``"S3"`` -> 3 (the local speaker's index in its recording)."""
    digits = name.lstrip("S")
    if not digits.isdigit():
        raise ValueError(f"unexpected recording speaker label {name!r}")
    return int(digits)


def _speakers(
    sums: dict[str, _Sum], previous: Mapping[str, Speaker], at: str
) -> dict[str, Speaker]:
    out: dict[str, Speaker] = {}
    for speaker_id, s in sorted(sums.items()):
        old = previous.get(speaker_id)
        out[speaker_id] = Speaker(
            speaker_id=speaker_id,
            vector_sum=s.vector.astype(np.float32),
            n_clips=s.n,
            total_duration=round(s.duration, 3),
            n_recordings=len(s.recordings),
            first_seen=old.first_seen if old else at,
            updated_at=at,
            label_source=old.label_source if old else LabelSource.MACHINE,
            name=old.name if old else "",
        )
    return out


def review_share(statuses: Sequence[str], durations: Sequence[float]) -> tuple[float, float]:
    """Share of clips, and of their seconds, with status ``review``."""
    if not statuses:
        return 0.0, 0.0
    review = np.array([s == ClipStatus.REVIEW for s in statuses])
    seconds = np.asarray(durations, dtype=np.float64)
    total = float(seconds.sum())
    return float(review.mean()), float(seconds[review].sum() / total) if total else 0.0
