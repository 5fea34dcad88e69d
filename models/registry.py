"""Identity across recordings: match a recording's speakers to known speakers.

The cost of matching one recording is one matrix product between its few
speaker centroids and the registry's centroids (one row per known speaker),
so it grows with the number of speakers, never with the square of all clips.
Speakers of one recording are different people, so the assignment is
one-to-one (Hungarian algorithm on the similarities).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from convoice.models.records import stable_id

FloatArray = npt.NDArray[np.float32]


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


def _ramp(x: float, lo: float, hi: float) -> float:
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
) -> list[SpeakerMatch]:
    """Assign every recording speaker (row of ``centroids``) an identity.

    ``known_centroids`` has one unit row per known speaker (shape (K, dim)).
    A speaker whose best one-to-one match reaches ``match_threshold`` and beats
    its runner-up by ``margin`` reuses that identity; one below
    ``new_threshold`` for everybody becomes a new speaker; anything between is
    assigned its best candidate but marked uncertain (the review queue decides).
    """
    r = centroids.shape[0]
    if known_centroids.shape[0] == 0 or r == 0:
        return [_new(recording_id, i, -1.0, new_threshold, margin) for i in range(r)]
    sims = (centroids @ known_centroids.T).astype(np.float64)  # shape: (r, K)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-sims)
    assigned = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    matches: list[SpeakerMatch] = []
    for i in range(r):
        best_any = float(sims[i].max())
        if i not in assigned or sims[i, assigned[i]] < new_threshold:
            matches.append(_new(recording_id, i, best_any, new_threshold, margin))
            continue
        j = assigned[i]
        sim = float(sims[i, j])
        others = np.delete(sims[i], j)
        runner = float(others.max()) if others.size else -1.0
        confident = sim >= match_threshold and sim - runner >= margin
        confidence = min(
            _ramp(sim, new_threshold, match_threshold), _ramp(sim - runner, 0.0, margin)
        )
        matches.append(
            SpeakerMatch(
                recording_speaker=i,
                speaker_id=known_ids[j],
                decision=MatchDecision.MATCHED if confident else MatchDecision.UNCERTAIN,
                similarity=sim,
                runner_up=runner,
                confidence=1.0 if confident else min(confidence, 0.69),
            )
        )
    return matches


def _new(
    recording_id: str, index: int, best_known: float, new_threshold: float, margin: float
) -> SpeakerMatch:
    """A new identity; unsure when somebody known comes within ``margin`` of the threshold."""
    confidence = _ramp(new_threshold - best_known, 0.0, margin)
    return SpeakerMatch(
        recording_speaker=index,
        speaker_id=stable_id("spk", recording_id, index, length=12),
        decision=MatchDecision.NEW if confidence >= 1.0 else MatchDecision.UNCERTAIN,
        similarity=float("nan"),
        runner_up=best_known,
        confidence=confidence if confidence >= 1.0 else min(confidence, 0.69),
    )
