"""Fine-tuning CAM++, the encoder that identifies, on a CPU in seconds to minutes.

CAM++'s network stays frozen up to its statistics pooling; only its last
layer (``xvector.dense``: a 1024 -> 192 linear map and a fixed batch norm)
learns. Each clip is cut into the 1 s windows ingestion embeds
(:func:`convoice.models.embed.embed_regions_campplus`), the frozen network
turns each window into its pooled statistics once, and training steps then
cost a matrix product: a batch is ``[encoder] speakers_per_batch`` speakers x
``utterances_per_speaker`` clips, a clip's embedding is the normalised sum of
the unit embeddings of a random half of its windows (at least one), and the
loss is GE2E's (:func:`convoice.models.ge2e.ge2e_loss`), plus a pull of the
layer towards its pretrained weights so that the similarity scale the
thresholds were fitted on moves little.

The result is a whole CAM++ state dict, loadable by
:func:`convoice.engines.loaders.campplus_model`. Training resumes from
``checkpoint.pt`` in the tracked run's folder, as the resemblyzer round does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.config import EncoderSettings
from convoice.engines import loaders
from convoice.models.embed import CAMPPLUS_DIM, CAMPPLUS_WINDOW, MIN_SAMPLES
from convoice.models.ge2e import NotEnoughData, ge2e_loss, plan_batch
from convoice.records import FloatArray
from convoice.training.encoder import (
    CHECKPOINT,
    WEIGHTS,
    StepLog,
    TrainedState,
    TrainResult,
    ge2e_scale,
    wave_regions,
)

if TYPE_CHECKING:
    from convoice.training.tracking import TrainingRun

log = logging.getLogger(__name__)

ANCHOR = 1e-3  # weight of the squared distance of the layer to its pretrained weights
KEEP = 0.5  # share of a clip's windows an utterance of a batch keeps


def embed_waves(weights: str, waves: Sequence[FloatArray]) -> FloatArray:
    """One unit CAM++ embedding per wave, as ingestion embeds clips ("" = the pretrained)."""
    from convoice.models.embed import embed_regions_campplus

    if not waves:
        return np.zeros((0, CAMPPLUS_DIM), dtype=np.float32)
    regions = wave_regions(waves)
    samples = np.concatenate(waves).astype(np.float32)
    return embed_regions_campplus(loaders.campplus_model(weights), samples, regions).vectors


def embed_stats(weights: str, stats: Sequence[FloatArray]) -> FloatArray:
    """Unit embeddings from :func:`window_stats` (equal to :func:`embed_waves` for every
    CAM++ this module trains: they share the frozen network and differ in the last layer)."""
    import torch

    dense: Any = loaders.campplus_model(weights).xvector.dense
    out = np.zeros((len(stats), CAMPPLUS_DIM), dtype=np.float32)
    with torch.inference_mode():
        for i, s in enumerate(stats):
            if len(s):
                windows = torch.nn.functional.normalize(dense(torch.from_numpy(s)), dim=1)
                out[i] = torch.nn.functional.normalize(windows.sum(0), dim=0).numpy()
    return out


def window_stats(weights: str, waves: Sequence[FloatArray]) -> list[FloatArray]:
    """Each wave's windows through the frozen network: pooled statistics, (windows, 1024)."""
    import torch

    from convoice.models.embed import _windows, fbank

    model = loaders.campplus_model(weights)
    trunk = model.xvector[:-1]  # everything but the embedding layer
    out: list[FloatArray] = []
    with torch.inference_mode():
        for wav in waves:
            if len(wav) < MIN_SAMPLES:
                out.append(np.zeros((0, 1024), dtype=np.float32))
                continue
            wins = _windows(fbank(wav), CAMPPLUS_WINDOW)
            by_len: dict[int, list[FloatArray]] = {}
            for w in wins:
                by_len.setdefault(w.shape[0], []).append(w)
            parts = [
                trunk(model.head(torch.from_numpy(np.stack(g)).permute(0, 2, 1))).numpy()
                for g in by_len.values()
            ]
            out.append(np.concatenate(parts).astype(np.float32))
    return out


def train_campplus(
    base_weights: str,
    stats: Sequence[FloatArray],
    speakers: Sequence[str],
    cfg: EncoderSettings,
    run: TrainingRun,
    steps: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune CAM++'s embedding layer (from ``base_weights``, "" = pretrained) with GE2E."""
    import torch

    total = steps if steps is not None else cfg.steps
    if total < 1:
        raise ValueError(f"steps must be at least 1, got {total}")
    by_speaker = _by_speaker(stats, speakers)
    torch.manual_seed(cfg.seed)
    model = loaders.campplus_model(base_weights)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # never train the shared one
    dense = _fresh_dense(state)
    anchor = dense.linear.weight.detach().clone()
    weight, bias = ge2e_scale()
    optim = torch.optim.Adam(
        [{"params": dense.linear.parameters()}, {"params": [weight, bias]}],
        lr=cfg.head_learning_rate,
    )
    rng = np.random.default_rng(cfg.seed)
    trained = TrainedState("dense", dense, weight, bias, optim, rng)
    steps_log = StepLog.resume(trained, run, cfg.checkpoint_every, total, progress)
    if steps_log.start:
        where = run.dir / CHECKPOINT
        log.info("resuming CAM++ training from %s after step %d", where, steps_log.start)
    tensors = [torch.from_numpy(s) for s in stats]
    for step in range(steps_log.start + 1, total + 1):
        plan = plan_batch(by_speaker, cfg.speakers_per_batch, cfg.utterances_per_speaker, rng)
        embeds = _utterances(dense, tensors, plan.utterances, rng)
        loss: Any = ge2e_loss(embeds, weight, bias)
        loss = loss + ANCHOR * ((dense.linear.weight - anchor) ** 2).sum()
        optim.zero_grad()
        loss.backward()
        if weight.grad is not None and bias.grad is not None:  # GE2E's slower scale and offset
            weight.grad *= 0.01
            bias.grad *= 0.01
        optim.step()
        steps_log.record(step, float(loss.item()))
    return steps_log.result(_save(run.dir / WEIGHTS, state, dense))


def _by_speaker(stats: Sequence[FloatArray], speakers: Sequence[str]) -> dict[str, list[int]]:
    """The clips with windows of each speaker; NotEnoughData for fewer than two speakers."""
    usable = [i for i, s in enumerate(stats) if len(s)]
    by_speaker: dict[str, list[int]] = {}
    for i in usable:
        by_speaker.setdefault(speakers[i], []).append(i)
    if len(by_speaker) < 2:
        raise NotEnoughData(f"GE2E needs at least 2 speakers, got {len(by_speaker)}")
    return by_speaker


def _fresh_dense(state: dict[str, Any]) -> Any:
    """A trainable copy of CAM++'s embedding layer, its batch norm frozen (eval mode)."""
    from convoice.models.campplus import DenseLayer

    dense = DenseLayer(1024, CAMPPLUS_DIM)
    prefix = "xvector.dense."
    dense.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    dense.eval()  # the batch norm keeps its statistics; the linear map still learns
    return dense


def _utterances(dense: Any, stats: list[Any], plan: Any, rng: np.random.Generator) -> Any:
    """(S, U, 192) unit embeddings: each slot a clip, a random share of its windows."""
    import torch

    rows: list[Any] = []
    owner: list[int] = []
    for slot, i in enumerate(plan.reshape(-1)):
        s = stats[int(i)]
        keep = rng.random(s.shape[0]) < KEEP
        keep[int(rng.integers(0, s.shape[0]))] = True
        rows.append(s[torch.from_numpy(keep)])
        owner.extend([slot] * int(keep.sum()))
    windows = torch.nn.functional.normalize(dense(torch.cat(rows)), dim=1)
    sums = torch.zeros(plan.size, CAMPPLUS_DIM).index_add(0, torch.tensor(owner), windows)
    return torch.nn.functional.normalize(sums, dim=1).reshape(*plan.shape, CAMPPLUS_DIM)


def _save(path: Path, state: dict[str, Any], dense: Any) -> Path:
    """The whole CAM++ state dict with the trained layer, written atomically."""
    import torch

    out = dict(state)
    out.update({f"xvector.dense.{k}": v.detach().clone() for k, v in dense.state_dict().items()})
    tmp = path.with_suffix(".tmp")
    torch.save(out, tmp)
    tmp.replace(path)
    return path
