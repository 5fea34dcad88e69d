"""Re-label the store with another speaker encoder: identities, confidences, routing.

After a new encoder is promoted, every clip gets a new embedding, and the
cross-recording identities are worked out again the way ingestion works them
out: recordings in the order they were ingested, each recording's speakers
matched one-to-one to the registry built from the recordings before it
(:func:`convoice.models.registry.match_speakers`), the sure clips absorbed.
People's labels are inputs, never outputs: a clip a person labelled feeds the
registry under the person's speaker and keeps the person's label (the release
overlays it); speaker merges (people's and consolidation's) map the ids the
replay gives onto the kept ones, so an id merged away is never given again.
Consolidation's splits are carried too (``splits``): a recording speaker a
split moved off an id gets the split's piece when the replay gives it that
id again (the new encoder repeats the mistake the split healed), and keeps
the replay's id when it does not (it heard the voice apart by itself).
Consolidation never puts two speakers of one recording under one id, and the
carried changes do not either: a recording speaker that a machine merge or a
split would send to an id another speaker of its recording has gets an id of
its own instead (:func:`own_id`; a person's merge is followed whatever).

What is not redone: the diarization inside a recording (which clip belongs to
which local speaker, ``recording_speaker``) and the transcripts; reasons for
review that come from the transcript are kept as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from convoice.config import RegistrySettings, RoutingSettings, SimilarityScale, resemblyzer_scale
from convoice.models.calibration import Calibration
from convoice.models.clustering import normalize
from convoice.models.labelling import absorbed_clips, match_on_scale
from convoice.models.pitch import pitch_allowed, pitch_range
from convoice.models.registry import SpeakerMatch, new_speaker_id
from convoice.models.routing import (
    SpeakerEvidence,
    clip_status,
    rerouted_reasons,
    speaker_evidence,
    speaker_kind,
    speaker_side,
)
from convoice.records import (
    ClipLabel,
    ClipStatus,
    FloatArray,
    LabelSource,
    ReviewReason,
    Speaker,
    stable_id,
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
    pitches: list[float] = field(default_factory=list)  # its clips' median F0 (Hz), when known

    def add(
        self, vector: FloatArray, duration: float, recording_id: str, pitch: float = float("nan")
    ) -> None:
        """Count one clip of ``recording_id`` (its median F0 ``pitch``) in the sum."""
        self.vector = self.vector + vector
        self.n += 1
        self.duration += duration
        self.recordings.add(recording_id)
        self.pitches.append(pitch)


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
    splits: Mapping[tuple[str, str], tuple[str, str]] | None = None,
    machine_merged: frozenset[str] = frozenset(),
    pitch: Mapping[str, float] | None = None,
    pitch_veto: float = 0.0,
) -> Replay:
    """Label ``clips`` (rows of unit ``embeddings``) recording by recording, in ingest order.

    ``registry_cfg``: the thresholds of the encoder that made ``embeddings``
    (``RegistrySettings``: resemblyzer's, as the encoder round trains it).

    ``calibration``: raw speaker scores to probabilities and routing by target
    precision, as ingestion does (None: the raw scores and thresholds).

    ``previous`` (the registry being replaced) lends its speakers' names,
    label sources and first-seen times to the rebuilt ones.

    ``merged_into``: every merge, people's and the machine's (old id -> kept id);
    ``machine_merged``: the ids among them consolidation merged away.
    ``splits``: (recording, recording speaker) -> (the id a split moved it off,
    the split's piece): see the module docstring. A clip of such a speaker is
    labelled with the piece itself (its rows say which split they carry; the
    merges say what the piece lives on as); the registry holds the id it lives on as.

    ``pitch`` (clip id -> median F0 in Hz, :mod:`convoice.models.pitch`) with
    ``pitch_veto`` > 0 (semitones): a recording speaker never matches an identity whose
    clips' pitch range lies further than that from its own clips' (as the ingest rules,
    ``[identity] pitch_veto_semitones``; 0: off). The speakers carry their clips' range.
    """
    if embeddings.shape[0] != len(clips):
        raise ValueError(f"{len(clips)} clips but {embeddings.shape[0]} embeddings")
    if isinstance(registry_cfg, RegistrySettings):
        registry_cfg = resemblyzer_scale(registry_cfg)
    out = Replay()
    sums: dict[str, _Sum] = {}
    dim = embeddings.shape[1]
    for rid, rows in _in_ingest_order(recordings, clips):
        registry = _known(
            sums, dim, merged_into, registry_cfg, splits or {}, machine_merged, pitch_veto
        )
        pitches = [_pitch(pitch, clips[i].clip_id) for i in rows]
        labels = _label_recording(
            rid, [clips[i] for i in rows], embeddings[rows], registry, routing_cfg, calibration,
            pitches,
        )  # fmt: skip
        for i, label in zip(rows, labels, strict=True):
            out.labels[clips[i].clip_id] = label
            # Every identity the machine gives is registered, even before a sure clip.
            sums.setdefault(
                resolve_merges(label.speaker_id, merged_into), _Sum(np.zeros(dim, np.float32))
            )
            owner = _owner(clips[i], label, merged_into)
            if owner:
                sums.setdefault(owner, _Sum(np.zeros(dim, np.float32))).add(
                    embeddings[i], clips[i].duration, rid, _pitch(pitch, clips[i].clip_id)
                )
    out.speakers = _speakers(sums, previous or {}, at)
    return out


def _pitch(pitch: Mapping[str, float] | None, clip_id: str) -> float:
    return float("nan") if pitch is None else float(pitch.get(clip_id, float("nan")))


def _known(
    sums: Mapping[str, _Sum],
    dim: int,
    merged_into: Mapping[str, str],
    scale: SimilarityScale,
    splits: Mapping[tuple[str, str], tuple[str, str]],
    machine_merged: frozenset[str] = frozenset(),
    pitch_veto: float = 0.0,
) -> _Known:
    """The registry the next recording is matched against: every identity given so far."""
    ids = sorted(sums)  # as ingestion sees them: empty ones (zero rows) never match
    centroids = (
        normalize(np.stack([sums[s].vector for s in ids]))
        if ids
        else np.zeros((0, dim), dtype=np.float32)
    )
    return _Known(
        ids, centroids, merged_into, scale, [len(sums[s].recordings) for s in ids], splits,
        machine_merged, [sums[s].pitches for s in ids], pitch_veto,
    )  # fmt: skip


def _in_ingest_order(
    recordings: Sequence[str], clips: Sequence[ClipFacts]
) -> list[tuple[str, list[int]]]:
    """(recording id, its clips' indices), recordings in the order they were ingested."""
    order = {rid: i for i, rid in enumerate(recordings)}
    missing = {c.recording_id for c in clips} - set(order)
    if missing:
        raise ValueError(f"clips of unknown recordings: {sorted(missing)[:3]}")
    by_recording: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        by_recording.setdefault(clip.recording_id, []).append(i)
    return [(rid, by_recording[rid]) for rid in sorted(by_recording, key=order.__getitem__)]


def _owner(clip: ClipFacts, label: ClipLabel, merged_into: Mapping[str, str]) -> str:
    """The speaker whose registry sum the clip counts in ("" for none).

    As the review pull counts clips (review_registry.desired_contributions): a
    person's accept counts the clip under the person's speaker, a reject not at all.
    """
    if clip.human_status == ClipStatus.REJECTED:
        return ""
    if clip.human_status == ClipStatus.ACCEPTED:
        return resolve_merges(clip.human_speaker or label.speaker_id, merged_into)
    return resolve_merges(label.speaker_id, merged_into) if label.absorbed else ""


@dataclass(frozen=True)
class _Known:
    """The registry a recording is matched against, as ingestion saw it, and on what scale."""

    ids: list[str]
    centroids: FloatArray  # shape: (known speakers, dim), unit norm
    merged_into: Mapping[str, str]  # every merge: merged id -> kept id
    scale: SimilarityScale
    recordings: list[int] = field(default_factory=list)  # per known speaker, recordings absorbed
    # (recording, recording speaker) -> (id a split moved it off, the split's piece)
    splits: Mapping[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    machine_merged: frozenset[str] = frozenset()  # ids consolidation merged away
    pitches: list[list[float]] = field(default_factory=list)  # per known speaker, clip F0s
    pitch_veto: float = 0.0  # semitones (0: off), see :func:`replay`


@dataclass(frozen=True)
class _Locals:
    """A recording's local speakers: each clip's, their centroids and identities."""

    names: list[str]  # "S0", "S1", ... in index order
    member: npt.NDArray[np.int64]  # per clip, its local speaker's position in ``names``
    centroids: FloatArray  # shape: (local speakers, dim), unit norm
    matches: list[SpeakerMatch]  # per local speaker, its match to the registry
    ids: list[str]  # per local speaker, the identity it gets (merges followed)
    written: list[str]  # per local speaker, the id its clip rows carry (a split's piece)


def _local_speakers(
    rid: str,
    clips: list[ClipFacts],
    emb: FloatArray,
    known: _Known,
    pitches: Sequence[float] = (),
) -> _Locals:
    """The recording's local speakers matched one-to-one to the registry, as ingestion does."""
    names = sorted({c.recording_speaker for c in clips}, key=_local_index)
    index = {name: k for k, name in enumerate(names)}
    member = np.array([index[c.recording_speaker] for c in clips])
    sums = np.zeros((len(names), emb.shape[1]), dtype=np.float32)
    np.add.at(sums, member, emb)
    centroids = normalize(sums)
    allowed = None
    if known.pitch_veto > 0 and pitches:
        mine = [
            [p for p, m in zip(pitches, member, strict=True) if m == k] for k in range(len(names))
        ]
        allowed = pitch_allowed(mine, known.pitches, known.pitch_veto)
    matches = match_on_scale(
        rid, centroids, known.ids, known.centroids, known.scale, known.recordings, allowed
    )
    ids: list[str] = []
    written: list[str] = []
    carried: list[bool] = []  # whether a machine merge or a split chose the id
    for k, match in enumerate(matches):
        speaker = match.speaker_id
        if speaker == new_speaker_id(rid, k):  # new speakers keep the id ingestion gave them
            speaker = new_speaker_id(rid, _local_index(names[k]))
        carried.append(speaker in known.machine_merged)
        speaker = resolve_merges(speaker, known.merged_into)
        moved_off, piece = known.splits.get((rid, names[k]), ("", ""))
        if piece and speaker == resolve_merges(moved_off, known.merged_into):
            speaker = piece  # the split it was healed by, carried into the new ids
            carried[k] = True
        ids.append(resolve_merges(speaker, known.merged_into))
        written.append(speaker)
    for k in range(len(names)):
        others = [ids[j] for j in range(len(names)) if j != k and not (carried[j] and j > k)]
        if carried[k] and ids[k] in others:
            ids[k] = written[k] = own_id(rid, names[k])
    return _Locals(names, member, centroids, matches, ids, written)


def own_id(recording_id: str, recording_speaker: str) -> str:
    """The id of a recording speaker a carried change would put under another's id."""
    return stable_id("spk", "relabel", recording_id, recording_speaker, length=12)


def _label_recording(
    rid: str,
    clips: list[ClipFacts],
    emb: FloatArray,
    known: _Known,
    routing_cfg: RoutingSettings,
    calibration: Calibration | None = None,
    pitches: Sequence[float] = (),
) -> list[ClipLabel]:
    """New labels of one recording's clips (``absorbed``: whether each counts for the registry)."""
    local = _local_speakers(rid, clips, emb, known, pitches)
    sims = emb @ local.centroids.T  # shape: (clips, local speakers)
    known_sims = emb @ known.centroids.T  # shape: (clips, known speakers)
    known_index = {s: j for j, s in enumerate(known.ids)}
    evidence: list[SpeakerEvidence] = []
    scores: list[tuple[float, float]] = []  # (raw score, probability) of each clip
    reasons_of: list[list[str]] = []
    for i, clip in enumerate(clips):
        k = int(local.member[i])
        two = ReviewReason.TWO_VOICES in clip.machine_reasons  # kept as found at ingestion
        match = local.matches[k]
        chosen = known_index.get(match.speaker_id, -1)
        ev = speaker_evidence(sims[i], k, match, known.scale, two, known_sims[i], chosen)
        raw, probability, doubts = speaker_side(ev, routing_cfg, calibration, clip.duration)
        evidence.append(ev)
        scores.append((raw, min(1.0, raw) if calibration is None else probability))
        reasons_of.append(rerouted_reasons(doubts, clip.machine_reasons))
    absorbed = _absorbed(local, known.ids, reasons_of)
    return [
        ClipLabel(
            clip_id=clip.clip_id,
            speaker_id=local.written[int(local.member[i])],
            speaker_confidence=scores[i][1],  # raw, capped at 1, when not calibrated
            status=clip_status(reasons_of[i]),
            review_reasons=tuple(reasons_of[i]),
            own_similarity=round(evidence[i].own_similarity, 4),
            other_similarity=round(evidence[i].other_similarity, 4),
            identity_similarity=round(local.matches[int(local.member[i])].similarity, 4),
            absorbed=absorbed[i],
            speaker_score_raw=scores[i][0],
            calibration="" if calibration is None else calibration.version,
            speaker_kind=speaker_kind(evidence[i]),
        )
        for i, clip in enumerate(clips)
    ]


def _absorbed(local: _Locals, known_ids: list[str], reasons_of: list[list[str]]) -> list[bool]:
    """Per clip, whether it counts in its speaker's registry sum, as ingestion decides it."""
    absorbed = [False] * len(reasons_of)
    for k, match in enumerate(local.matches):  # per recording speaker
        members = [i for i in range(len(reasons_of)) if local.member[i] == k]
        flags = absorbed_clips(
            match.decision, match.speaker_id in known_ids, [reasons_of[i] for i in members],
            match.moves_centroid,
        )  # fmt: skip
        for i, flag in zip(members, flags, strict=True):
            absorbed[i] = flag
    return absorbed


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
        low, high = pitch_range(s.pitches)
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
            f0_low_hz=low,
            f0_high_hz=high,
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
