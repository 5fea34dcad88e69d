"""Judge a candidate encoder on its own similarity scale, fitted by cross-fitting.

The candidate's thresholds are its parent's moved onto its cosines
(:mod:`convoice.models.encoder_scale`), fitted on the judged people's labels
(clips it never trained on). So that no clip is judged by thresholds it
shaped, the judged clips are split in two stable folds by hash: the replay
that judges fold 1 runs on thresholds fitted on fold 0, and the other way
round; each replay's review share is counted on every clip except its fit
fold and the people's labels the candidate trained on. The current encoder
is judged on the same clips (its thresholds are fixed, nothing is fitted).
The thresholds stored with the candidate are then fitted on both folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from convoice.config import RegistrySettings, Settings, SimilarityScale
from convoice.models.calibration import Calibration
from convoice.models.encoder_eval import EncoderMetrics, score
from convoice.models.encoder_scale import ScaleMap, fit_map, fold, identity_on, scale_dict
from convoice.models.ge2e import FloatArray
from convoice.models.relabel import Replay, review_share
from convoice.records import SPEAKER_REASONS, ClipLabel, ClipStatus, StoredClip
from convoice.records import canonical as resolve_merges
from convoice.training.encoder_round import replay_labels

Part = tuple[Replay, list[int], list[int]]  # a replay, the judged clips and review rows it counts


@dataclass(frozen=True)
class RoundClips:
    """One round's clips: rows, which are trained on, which judge, the ingest order, merges."""

    rows: Sequence[StoredClip]
    train: Sequence[int]
    heldout: Sequence[int]
    order: list[str]
    merged: dict[str, str]
    people_train: frozenset[int]  # of ``train``, the clips people labelled


@dataclass(frozen=True)
class Judgement:
    current: EncoderMetrics
    candidate: EncoderMetrics
    scale: SimilarityScale  # the candidate's thresholds, fitted on every judged clip
    fit: ScaleMap  # that fit
    folds: tuple[ScaleMap, ScaleMap]  # the cross-fitting fits (on fold 0, on fold 1)

    def line(self) -> str:
        folds = "; ".join(f"fold {k}: {m.line()}" for k, m in enumerate(self.folds))
        return f"{self.fit.line()} [judged by cross-fitting: {folds}]"


def with_scale(settings: Settings, scale: dict[str, float]) -> Settings:
    """``settings`` identifying on ``scale`` (an encoder's stored thresholds; {}: unchanged)."""
    return replace(settings, identity=identity_on(settings.identity, scale))


def judge(
    settings: Settings,
    clips: RoundClips,
    scale: RegistrySettings | SimilarityScale,
    embeddings: tuple[FloatArray, FloatArray],
    calibration: Calibration | None,
    fit_scale: bool = True,
) -> Judgement:
    """Figures of the current encoder and the candidate (``embeddings``: theirs, in that order).

    ``scale``: the current encoder's thresholds; ``fit_scale=False`` keeps them
    for the candidate too (resemblyzer, whose ``[registry]`` thresholds stay).
    """
    base, cand = embeddings
    folds = [[i for i in clips.heldout if fold(clips.rows[i].clip_id) == k] for k in (0, 1)]
    review_rows = [_review_rows(clips, set(folds[k])) for k in (0, 1)]

    def replayed(thresholds: RegistrySettings | SimilarityScale, emb: FloatArray) -> Replay:
        return replay_labels(
            thresholds, settings, clips.order, clips.rows, emb, clips.merged,
            calibration=calibration,
        )  # fmt: skip

    def pooled(emb: FloatArray, by_fold: Sequence[Replay]) -> EncoderMetrics:
        # the replay fitted on fold k judges the other fold's clips
        parts = [(by_fold[k], folds[1 - k], review_rows[k]) for k in (0, 1)]
        return _pooled(clips, emb, parts)

    mine = replayed(scale, base)
    current = pooled(base, (mine, mine))
    if not isinstance(scale, SimilarityScale):
        fit_scale = False  # resemblyzer's [registry]: not moved
    maps = (
        _fit(clips, folds[0], base, cand, fit_scale),
        _fit(clips, folds[1], base, cand, fit_scale),
    )
    candidate = pooled(cand, [replayed(_moved(scale, m), cand) for m in maps])
    whole = _fit(clips, list(clips.heldout), base, cand, fit_scale)
    return Judgement(current, candidate, _moved(scale, whole), whole, maps)


def _moved(scale: RegistrySettings | SimilarityScale, m: ScaleMap) -> SimilarityScale:
    if isinstance(scale, RegistrySettings):
        from convoice.config import resemblyzer_scale

        scale = resemblyzer_scale(scale)
    return m.apply(scale) if m.fitted else scale


def _fit(
    clips: RoundClips, judged: list[int], base: FloatArray, cand: FloatArray, fit_scale: bool
) -> ScaleMap:
    if not fit_scale:
        return ScaleMap(clips=len(judged), why="this encoder's thresholds are not moved")
    truth = [resolve_merges(clips.rows[i].speaker_id, clips.merged) for i in judged]
    return fit_map(base[judged], cand[judged], truth)


def _review_rows(clips: RoundClips, fit_fold: set[int]) -> list[int]:
    """The rows whose routing a replay fitted on ``fit_fold`` is judged on."""
    return [i for i in range(len(clips.rows)) if i not in fit_fold and i not in clips.people_train]


def _pooled(clips: RoundClips, embeddings: FloatArray, parts: list[Part]) -> EncoderMetrics:
    """One encoder's figures: each judged clip from the replay that did not fit on it."""
    rows = clips.rows
    predicted: dict[int, str] = {}
    accepted: dict[int, bool] = {}
    statuses: list[str] = []
    durations: list[float] = []
    speaker: list[str] = []  # per review row, REVIEW when its speaker label needs a person
    for result, judged, review in parts:
        for i in judged:
            label = result.labels[rows[i].clip_id]
            predicted[i] = label.speaker_id
            accepted[i] = _speaker_accepted(label)
        statuses += [result.labels[rows[i].clip_id].status for i in review]
        durations += [float(rows[i].duration) for i in review]
        speaker += [
            ClipStatus.ACCEPTED if _speaker_accepted(result.labels[rows[i].clip_id])
            else ClipStatus.REVIEW
            for i in review
        ]  # fmt: skip
    heldout = list(clips.heldout)
    truth = [resolve_merges(rows[i].speaker_id, clips.merged) for i in heldout]
    return score(
        embeddings[heldout], truth, [predicted[i] for i in heldout],
        review_share(statuses, durations), [accepted[i] for i in heldout],
        review_share(speaker, durations)[1],
    )  # fmt: skip


def _speaker_accepted(label: ClipLabel) -> bool:
    return not set(label.review_reasons) & SPEAKER_REASONS


__all__ = ["Judgement", "RoundClips", "judge", "scale_dict", "with_scale"]
