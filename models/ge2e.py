"""GE2E training arithmetic for the speaker encoder, and speaker-verification scoring.

The encoder (resemblyzer's LSTM) was trained with the generalized end-to-end
loss of Wan et al. (2018): a batch holds ``S`` speakers x ``U`` utterances,
every utterance is scored against every speaker's centroid (its own centroid
leaves it out), and a softmax over speakers pulls it to its own. Fine-tuning
keeps the same loss and the same 1.6 s partial windows (160 mel frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from convoice.records import FloatArray

PARTIAL_FRAMES = 160  # 1.6 s of 10 ms mel frames, as resemblyzer was trained


class NotEnoughData(ValueError):
    """Too few speakers or utterances to train or evaluate."""


@dataclass(frozen=True)
class BatchPlan:
    """Which utterance (index into the training mels) fills each batch slot."""

    speakers: list[str]
    utterances: npt.NDArray[np.int64]  # shape: (S, U)


def plan_batch(
    by_speaker: dict[str, list[int]],
    n_speakers: int,
    n_utterances: int,
    rng: np.random.Generator,
) -> BatchPlan:
    """Draw ``n_speakers`` speakers and ``n_utterances`` of each (with replacement when short)."""
    names = sorted(by_speaker)
    if len(names) < 2:
        raise NotEnoughData(f"GE2E needs at least 2 speakers, got {len(names)}")
    s = min(n_speakers, len(names))
    chosen = [names[i] for i in sorted(rng.choice(len(names), size=s, replace=False))]
    rows = []
    for name in chosen:
        pool = by_speaker[name]
        rows.append(rng.choice(pool, size=n_utterances, replace=len(pool) < n_utterances))
    return BatchPlan(chosen, np.asarray(rows, dtype=np.int64))


def random_crop(mel: FloatArray, rng: np.random.Generator) -> FloatArray:
    """A random 160-frame window of ``mel`` (zero-padded when shorter)."""
    n = mel.shape[0]
    if n <= PARTIAL_FRAMES:
        pad = np.zeros((PARTIAL_FRAMES - n, mel.shape[1]), dtype=np.float32)
        return np.concatenate([mel, pad]).astype(np.float32)
    start = int(rng.integers(0, n - PARTIAL_FRAMES + 1))
    return mel[start : start + PARTIAL_FRAMES].astype(np.float32)


def ge2e_loss(embeds: object, weight: object, bias: object) -> object:
    """Softmax GE2E loss of unit embeddings shaped (S, U, D) (torch tensors in and out).

    ``weight`` and ``bias`` are the learned scale and offset of the cosine
    similarities (``weight`` is clamped positive, as in the paper).
    """
    import torch
    import torch.nn.functional as F

    e = embeds if isinstance(embeds, torch.Tensor) else torch.as_tensor(embeds)
    s, u, _ = e.shape
    if u < 2:
        raise NotEnoughData("GE2E needs at least 2 utterances per speaker")
    centroids = F.normalize(e.mean(dim=1), dim=1)  # shape: (S, D)
    exclusive = F.normalize((e.sum(dim=1, keepdim=True) - e) / (u - 1), dim=2)  # (S, U, D)
    sims = torch.einsum("sud,kd->suk", e, centroids)  # every utterance to every centroid
    own = (e * exclusive).sum(dim=2)  # (S, U): to its own centroid without itself
    mask = torch.eye(s, dtype=torch.bool).unsqueeze(1).expand(s, u, s)
    sims = torch.where(mask, own.unsqueeze(2).expand(s, u, s), sims)
    w = torch.clamp(torch.as_tensor(weight), min=1e-6)
    logits = (w * sims + torch.as_tensor(bias)).reshape(s * u, s)
    target = torch.arange(s).repeat_interleave(u)
    return F.cross_entropy(logits, target)


# -- verification ----------------------------------------------------------------


@dataclass(frozen=True)
class Trials:
    """Every pair of evaluation clips: cosine score and whether it is one speaker."""

    scores: npt.NDArray[np.float64]
    same: npt.NDArray[np.bool_]

    @property
    def n_target(self) -> int:
        return int(self.same.sum())

    @property
    def n_nontarget(self) -> int:
        return int((~self.same).sum())


def all_pairs(embeddings: FloatArray, speakers: Sequence[str]) -> Trials:
    """Trials of all clip pairs (i < j) of unit ``embeddings`` labelled by ``speakers``."""
    if len(speakers) != embeddings.shape[0]:
        raise ValueError("one speaker per embedding row is needed")
    sims = embeddings.astype(np.float64) @ embeddings.T.astype(np.float64)
    i, j = np.triu_indices(len(speakers), k=1)
    labels = np.asarray(speakers)
    return Trials(sims[i, j], labels[i] == labels[j])


def equal_error_rate(trials: Trials) -> float:
    """EER: the rate where false acceptances equal false rejections (interpolated)."""
    if trials.n_target == 0 or trials.n_nontarget == 0:
        raise NotEnoughData(
            f"EER needs same- and different-speaker pairs; got {trials.n_target} and "
            f"{trials.n_nontarget}"
        )
    order = np.argsort(-trials.scores, kind="stable")
    same = trials.same[order]
    # Accept the top k pairs, for k = 0..n: false accepts and false rejects.
    fa = np.concatenate([[0], np.cumsum(~same)]) / trials.n_nontarget
    fr = 1.0 - np.concatenate([[0], np.cumsum(same)]) / trials.n_target
    k = int(np.argmax(fa >= fr))  # first point where the curves cross
    if k == 0:
        return float(fr[0])
    # Linear interpolation between points k-1 and k.
    d0, d1 = fr[k - 1] - fa[k - 1], fr[k] - fa[k]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fa[k - 1] + t * (fa[k] - fa[k - 1]))
