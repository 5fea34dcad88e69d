"""Identity across recordings: match a recording's speakers to known speakers.

The cost of matching one recording is one matrix product between its few
speaker centroids and the registry's centroids (one row per known speaker),
so it grows with the number of speakers, never with the square of all clips.
Speakers of one recording are different people, so the assignment is
one-to-one (Hungarian algorithm on the similarities above the new-speaker
threshold: a recording speaker who would be new anyway gains nothing from a
known identity, so it cannot push another speaker of the recording off its
own identity).

A match moves its identity's centroid (its clips are absorbed) only when it
is close (``absorb_threshold``): a weak match to a look-alike labels the
speaker but does not drag the look-alike's centroid towards it, where the
next recording of a third close voice would match the blend (a merge chain).
An identity heard in one recording only (young) is not trusted that far: a
weak match to it makes a new identity and asks a person (a split that people
or consolidation can heal, where a merge would never be split again).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from convoice.records import FloatArray, Speaker, stable_id

YOUNG_RECORDINGS = 2
"""An identity absorbed from fewer recordings than this is young: a match to it below the
absorb threshold is a new identity, for review. Tuning half, seed 13: mb-fr6 matched the
id mb-fr5 got in the first episode at 0.67-0.69 in four recordings; the id ended with more
mb-fr6 than mb-fr5, and mb-fr5's first (accepted) clips were judged wrong."""


class MatchDecision(StrEnum):
    MATCHED = "matched"  # a known speaker, confidently
    NEW = "new"  # nobody known is close: a new speaker
    UNCERTAIN = "uncertain"  # between the two thresholds, or two known speakers are close


@dataclass(frozen=True)
class SpeakerMatch:
    recording_speaker: int
    speaker_id: str
    decision: MatchDecision
    similarity: float  # to the chosen known speaker; nan when new
    runner_up: float  # best similarity to any other known speaker; -1 when none
    confidence: float  # 0..1
    moves_centroid: bool = True  # its clips may count in the identity's registry sum


def centroid_matrix(speakers: Iterable[Speaker], dim: int = 0) -> tuple[list[str], FloatArray]:
    """Speaker ids (sorted) and their unit centroids as an ``(n, d)`` float32 matrix.

    The one home of the registry matrix the matching reads; ``dim`` is the
    width of the empty matrix when there is no speaker.
    """
    by_id = {s.speaker_id: s for s in speakers}
    ids = sorted(by_id)
    if not ids:
        return [], np.zeros((0, dim), dtype=np.float32)
    return ids, np.stack([by_id[i].centroid for i in ids]).astype(np.float32)


def ramp(x: float, lo: float, hi: float) -> float:
    """0 at ``lo``, 1 at ``hi``, linear between."""
    if hi <= lo:
        return 1.0 if x >= hi else 0.0
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def match_speakers(
    recording_id: str,
    centroids: FloatArray,
    known_ids: list[str],
    known_centroids: FloatArray,
    match_threshold: float,
    new_threshold: float,
    margin: float,
    absorb_threshold: float = -1.0,
    known_recordings: Sequence[int] | None = None,
    allowed: npt.NDArray[np.bool_] | None = None,
) -> list[SpeakerMatch]:
    """Assign every recording speaker (row of ``centroids``) an identity.

    ``known_centroids`` has one unit row per known speaker (shape (K, dim)).
    A speaker whose best one-to-one match reaches ``match_threshold`` and beats
    its runner-up by ``margin`` reuses that identity; one below
    ``new_threshold`` for everybody becomes a new speaker. Anything between is
    marked uncertain and goes to review: it keeps the best candidate's identity
    when the similarity is above the middle of the two thresholds, and becomes
    a new speaker (which a person may later merge) below it.

    The one-to-one assignment maximises the similarities above ``new_threshold``
    (below it a speaker is new whatever it is assigned). A match below
    ``absorb_threshold`` keeps its identity but does not move that identity's
    centroid (``moves_centroid`` False; -1: every match moves it), and when that
    identity is young (``known_recordings``, per known speaker the recordings it was
    absorbed from, below :data:`YOUNG_RECORDINGS`) it is not taken at all: the speaker
    becomes a new identity, uncertain.

    ``allowed`` (shape (r, K); None: every pair): pairs that may match at all. A pair
    it rules out (a veto, e.g. :func:`convoice.models.pitch.pitch_allowed`: voices far
    apart in pitch) is never assigned and is nobody's runner-up, as if its cosine were -1.
    """
    r = centroids.shape[0]
    if known_centroids.shape[0] == 0 or r == 0:
        return [_new(recording_id, i, -1.0) for i in range(r)]
    sims = (centroids @ known_centroids.T).astype(np.float64)  # shape: (r, K)
    if allowed is not None:
        if allowed.shape != sims.shape:
            raise ValueError(f"allowed has shape {allowed.shape}, the similarities {sims.shape}")
        sims = np.where(allowed, sims, -1.0)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-np.maximum(sims - new_threshold, 0.0))
    assigned = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    matches: list[SpeakerMatch] = []
    middle = (match_threshold + new_threshold) / 2
    for i in range(r):
        best_any = float(sims[i].max())
        if i not in assigned or sims[i, assigned[i]] < new_threshold:
            matches.append(_new(recording_id, i, best_any))
            continue
        j = assigned[i]
        sim = float(sims[i, j])
        others = np.delete(sims[i], j)
        runner = float(others.max()) if others.size else -1.0
        weak = sim < absorb_threshold
        young = known_recordings is not None and known_recordings[j] < YOUNG_RECORDINGS
        if sim >= match_threshold and sim - runner >= margin and weak and young:
            new_id = new_speaker_id(recording_id, i)  # a look-alike heard once: ask a person
            matches.append(SpeakerMatch(i, new_id, MatchDecision.UNCERTAIN, sim, runner, 0.69))
            continue
        if sim >= match_threshold and sim - runner >= margin:
            decision, speaker_id, confidence = MatchDecision.MATCHED, known_ids[j], 1.0
            if weak:
                matches.append(SpeakerMatch(i, speaker_id, decision, sim, runner, 1.0, False))
                continue
        else:  # unsure: the likelier side wins for now, and a person is asked
            closeness = min(
                ramp(sim, new_threshold, match_threshold), ramp(sim - runner, 0.0, margin)
            )
            decision, confidence = MatchDecision.UNCERTAIN, min(closeness, 0.69)
            speaker_id = known_ids[j] if sim >= middle else new_speaker_id(recording_id, i)
        matches.append(SpeakerMatch(i, speaker_id, decision, sim, runner, confidence))
    return matches


def new_speaker_id(recording_id: str, index: int) -> str:
    """The id a recording's speaker gets when it is nobody known (same inputs, same id)."""
    return stable_id("spk", recording_id, index, length=12)


def _new(recording_id: str, index: int, best_known: float) -> SpeakerMatch:
    return SpeakerMatch(
        recording_speaker=index,
        speaker_id=new_speaker_id(recording_id, index),
        decision=MatchDecision.NEW,
        similarity=float("nan"),
        runner_up=best_known,
        confidence=1.0,
    )
