"""Voice-cloning TTS from a released dataset: export it, fine-tune on it, score the result.

``export_tts_flow`` writes a release as a TTS training set (LJSpeech, VCTK or
coqui layout, with d-vectors and attribution). ``retrain_tts_flow`` exports
the release into a tracked training run, fine-tunes coqui-tts's VITS on the
clips' speaker embeddings (resuming the run's newest checkpoint when it is
started again with ``resume``), then synthesizes the heldout sentences and
scores speaker similarity and WER against the real heldout clips. Parameters,
losses and metrics go to the run (TensorBoard files, ``params.json``,
``metrics.json``, ``evaluation.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger

from convoice.config import load_settings
from convoice.storage import Store
from convoice.tasks.tts import evaluate_task, export_task, run_export_task, train_task
from convoice.training import tts_config
from convoice.training.tracking import open_run
from convoice.training.tts import TrainResult
from convoice.training.tts_eval import TtsEvaluation
from convoice.training.tts_export import TtsExport
from convoice.training.tts_runs import (
    DATA_DIR,
    KIND,
    choose_run,
    run_params,
    save_evaluation,
    wants_evaluation,
)


@dataclass(frozen=True)
class TtsRetrainReport:
    """What ``retrain_tts_flow`` did."""

    dataset: str  # "v3"
    run_id: str
    run_dir: Path
    export: TtsExport
    training: TrainResult
    evaluation: TtsEvaluation | None
    note: str = ""  # why the run was picked, why nothing was scored

    def summary(self) -> str:
        train = self.training
        how = f"resumed at step {train.start_step}" if train.resumed else "from the start"
        losses = ", ".join(
            f"{k} {v:.3f}" for k, v in train.last_losses().items() if k in ("loss_0", "loss_1")
        )
        lines = [
            *([self.note] if self.note else []),
            self.export.summary(),
            f"trained run {self.run_id} ({how}) to step {train.steps_done} in {train.seconds:.1f} s"
            f"; last losses: {losses or 'none (no step run)'}; checkpoint {train.checkpoint}",
            self.evaluation.summary() if self.evaluation
            else "evaluation: none this time (no new step, not asked for, or no heldout clip of"
                 " a speaker with training clips)",
        ]  # fmt: skip
        return "\n".join(lines)


@flow(name="convoice-export-tts", log_prints=True)
def export_tts_flow(dataset: str, fmt: str, to: str, home: str | None = None) -> TtsExport:
    """Write release ``dataset`` (``v3``, ``3`` or a tag) into ``to`` as a TTS training set.

    ``fmt`` is ``ljspeech``, ``vctk`` or ``coqui`` (see :mod:`convoice.training.tts_export`).
    """
    settings = load_settings(home=home)
    store = Store.open(settings)
    release = store.resolve(dataset)
    result = export_task(store, release, fmt, Path(to), settings.tts.sample_rate)
    get_run_logger().info(result.summary())
    return result


@flow(name="convoice-retrain-tts", log_prints=True)
def retrain_tts_flow(
    dataset: str | None = None,
    home: str | None = None,
    steps: int | None = None,
    resume: str | None = None,
    evaluate: bool = True,
) -> TtsRetrainReport:
    """Fine-tune the d-vector VITS on release ``dataset`` and score it (see the module).

    ``steps`` is the total for the run (default ``[tts] steps``); ``resume`` is a
    run id to continue (its dataset is used when ``dataset`` is None). With
    neither, the latest release is trained on, continuing its latest run when
    there is one (so a scheduled loop adds steps instead of starting over, and
    does nothing when the run has its steps already). The heldout clips are
    scored whenever steps were run (or never were scored).
    """
    logger = get_run_logger()
    settings = load_settings(home=home)
    store = Store.open(settings)
    dataset, resume, note = choose_run(settings, store, dataset, resume)
    release = store.resolve(dataset)
    tts_config.check_settings(settings.tts)
    total = steps if steps is not None else settings.tts.steps
    run = open_run(settings, KIND, resume)
    try:
        data = run.dir / DATA_DIR
        export = run_export_task(store, release.name, data, settings)
        run.log_params(run_params(release, total, export, settings))
        training = train_task(settings, run, data, total, settings.tts.checkpoint_every)
        logger.info(
            "run %s: steps %d -> %d in %.1f s, last losses %s",
            run.run_id, training.start_step, training.steps_done, training.seconds,
            training.last_losses(),
        )  # fmt: skip
        evaluation = None
        if wants_evaluation(evaluate, training, run.dir):
            evaluation = evaluate_task(settings, training.checkpoint, data)
        if evaluation is not None:
            save_evaluation(run, evaluation, training.steps_done)
    finally:
        run.close()
    report = TtsRetrainReport(release.name, run.run_id, run.dir, export, training, evaluation, note)
    logger.info(report.summary())
    return report
