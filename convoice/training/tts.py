"""Fine-tune a multi-speaker VITS on d-vectors with coqui-tts, resume it, synthesize.

The model is coqui-tts's VITS (``TTS.tts.models.vits.Vits``) conditioned on the
clips' resemblyzer embeddings (``use_d_vector_file=True``, ``d_vector_dim=256``),
trained with coqui's ``Trainer`` (its optimizers, GAN steps, checkpoints and
TensorBoard logger). With ``[tts] checkpoint`` and ``config`` it starts from the
operator's pretrained model (``restore_path``: matching layers are loaded,
the speaker conditioning is new when the checkpoint had none); without them it
trains :func:`~convoice.training.tts_config.tiny_args`, a configuration small
enough to take a few steps on a CPU, which proves the path and produces noise.

Steps are counted exactly: the trainer's epoch loop is replaced by a loop over
its own ``train_step`` that stops after ``steps`` steps in total. Every
``checkpoint_every`` steps, and at the end, the trainer writes
``checkpoint_<steps done>.pth`` into its folder under the tracked run
(``<run>/coqui/<trainer run>/``); a run started again with the same run id
continues from the newest one (coqui's ``continue_path``), with its optimizer
state and step counter. Each step's losses go to the tracked run.
Evaluation is :mod:`convoice.training.tts_eval`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.engines import loaders
from convoice.training.tts_checkpoints import (
    TRAINER_DIR,
    drop_incomplete,
    latest_checkpoint,
    marker,
    prune,
)
from convoice.training.tts_config import TtsTrainingError, build_config, check_settings

if TYPE_CHECKING:
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits

    from convoice.config import Settings
    from convoice.training.tracking import TrainingRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did."""

    run_id: str
    trainer_dir: Path  # coqui's run folder: config.json, checkpoints, TensorBoard events
    checkpoint: Path  # the newest checkpoint
    start_step: int  # steps done before this call (0 unless resumed)
    steps_done: int
    losses: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # name -> (step, v)
    seconds: float = 0.0

    @property
    def resumed(self) -> bool:
        return self.start_step > 0

    def last_losses(self) -> dict[str, float]:
        return {name: values[-1][1] for name, values in self.losses.items() if values}


def load_samples(config: VitsConfig) -> list[dict[str, Any]]:
    """coqui's training samples of the export (its ``coqui`` formatter)."""
    from TTS.tts.datasets import load_tts_samples

    samples, _ = load_tts_samples(config, eval_split=False)
    return list(samples)


def train(
    settings: Settings, run: TrainingRun, data: Path, steps: int, checkpoint_every: int
) -> TrainResult:
    """Train until ``steps`` steps are done in ``run`` (continuing its newest checkpoint)."""
    from trainer.generic_utils import KeepAverage
    from TTS.tts.models.vits import Vits

    if steps < 1 or checkpoint_every < 1:
        raise TtsTrainingError(f"steps ({steps}) and checkpoint_every ({checkpoint_every}) >= 1")
    tts = settings.tts
    check_settings(tts)
    loaders.set_torch_threads()
    config = build_config(tts, data, run.dir / TRAINER_DIR)
    samples = load_samples(config)
    previous = _resume_point(run.dir)
    model = Vits(config)
    started = time.perf_counter()
    trainer = _trainer(config, model, samples, run, tts.checkpoint, previous)
    start = trainer.total_steps_done
    if start >= steps:
        log.info("run %s has %d steps done already (asked for %d)", run.run_id, start, steps)
    trainer.keep_avg_train = KeepAverage()
    loader: Any = trainer.get_train_dataloader(samples, verbose=False) if start < steps else []
    losses = _steps(trainer, loader, run, steps, checkpoint_every)
    trainer.dashboard_logger.flush()
    newest = latest_checkpoint(run.dir)
    if newest is None:
        raise TtsTrainingError(f"training wrote no checkpoint under {run.dir / TRAINER_DIR}")
    return TrainResult(
        run_id=run.run_id,
        trainer_dir=newest[0].parent,
        checkpoint=newest[0],
        start_step=start,
        steps_done=max(trainer.total_steps_done, newest[1]),
        losses=losses,
        seconds=round(time.perf_counter() - started, 2),
    )


def _resume_point(root: Path) -> tuple[Path, int] | None:
    """The newest complete checkpoint under ``root``, its folder cleared of incomplete ones."""
    previous = latest_checkpoint(root)
    if previous is not None:
        for path in drop_incomplete(previous[0].parent):
            log.warning("dropped %s: written by a run killed while saving it", path)
    return previous


def _trainer(
    config: VitsConfig,
    model: Vits,
    samples: list[dict[str, Any]],
    run: TrainingRun,
    restore: str,
    previous: tuple[Path, int] | None,
) -> Any:
    """coqui's ``Trainer``: continuing ``previous``, else starting from ``restore`` (or scratch)."""
    from trainer import Trainer, TrainerArgs

    if previous is not None:
        args = TrainerArgs(continue_path=str(previous[0].parent))
    else:
        args = TrainerArgs(restore_path=restore)
    trainer = Trainer(
        args,
        config,
        str(run.dir / TRAINER_DIR),
        model=model,
        train_samples=samples,
        eval_samples=[],
        parse_command_line_args=False,
    )
    if previous is not None:
        # Our checkpoint_<n> holds n steps done; coqui's restore adds one for its own
        # mid-step checkpoints. Undo that, so that no step is skipped.
        trainer.total_steps_done = previous[1]
    return trainer


def _steps(
    trainer: Any, loader: Any, run: TrainingRun, steps: int, checkpoint_every: int
) -> dict[str, list[tuple[int, float]]]:
    """The trainer's own ``train_step`` until ``steps`` are done; each loss by step."""
    losses: dict[str, list[tuple[int, float]]] = {}
    while trainer.total_steps_done < steps:
        trainer.callbacks.on_epoch_start(trainer)
        trainer.model.train()
        tick = time.time()
        for index, batch in enumerate(loader):
            _, loss_dict = trainer.train_step(batch, len(loader), index, tick)
            done = trainer.total_steps_done
            for name, value in (loss_dict or {}).items():
                if name.startswith("loss"):
                    losses.setdefault(name, []).append((done, float(value)))
                    run.log_scalar(f"tts/{name}", float(value), done)
            if done % checkpoint_every == 0 or done >= steps:
                trainer.save_checkpoint()
                marker(trainer.output_path / f"checkpoint_{done}.pth").touch()
                prune(trainer.output_path)
            if done >= steps:
                break
            tick = time.time()
        trainer.epochs_done += 1
    return losses


# -- synthesis -----------------------------------------------------------------


def load_model(checkpoint: Path) -> Vits:
    """A trained VITS from a checkpoint and the ``config.json`` next to it, for inference."""
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits

    config = VitsConfig()
    config.load_json(str(checkpoint.parent / "config.json"))
    model = Vits(config)
    model.load_checkpoint(config, str(checkpoint), eval=True)
    return model


def synthesize(model: Vits, text: str, d_vector: np.ndarray) -> np.ndarray:
    """Speech for ``text`` in the voice of ``d_vector``: float32 at the model's rate."""
    import torch

    ids = model.tokenizer.text_to_ids(text)
    if not ids:
        raise TtsTrainingError(f"no character of {text!r} is in the model's vocabulary")
    tokens = torch.as_tensor(ids, dtype=torch.long).unsqueeze(0)
    vector = torch.as_tensor(np.asarray(d_vector, dtype=np.float32)).unsqueeze(0)
    with torch.inference_mode():
        outputs = model.inference(
            tokens,
            aux_input={
                "x_lengths": torch.tensor([tokens.shape[1]]),
                "d_vectors": vector,
                "speaker_ids": None,
                "language_ids": None,
            },
        )
    wav = outputs["model_outputs"][0].detach().cpu().numpy().reshape(-1)
    return np.clip(wav, -1.0, 1.0).astype(np.float32)
