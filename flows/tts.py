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

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from convoice.config import Settings, load_settings
from convoice.storage import Store
from convoice.training import tts as tts_train
from convoice.training import tts_config, tts_eval, tts_export
from convoice.training.tracking import open_run, tracking_dir
from convoice.training.tts import TrainResult
from convoice.training.tts_config import TtsTrainingError
from convoice.training.tts_eval import TtsEvaluation
from convoice.training.tts_export import TtsExport

KIND = "tts"
DATA_DIR = "data"  # the run's own export (coqui format)

export_task = task(name="export-tts", cache_policy=NO_CACHE)(tts_export.export_release)
train_task = task(name="train-tts", cache_policy=NO_CACHE)(tts_train.train)
evaluate_task = task(name="evaluate-tts", cache_policy=NO_CACHE)(tts_eval.evaluate)


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


def runs_of(settings: Settings, dataset: str) -> list[str]:
    """Ids of the TTS runs that trained on release ``dataset`` (``"v3"``), oldest first."""
    found = []
    for params in sorted((tracking_dir(settings) / KIND).glob("*/params.json")):
        if json.loads(params.read_text()).get("dataset") == dataset:
            found.append(params.parent.name)
    return found


def run_dataset(settings: Settings, run_id: str, dataset: str | None) -> str:
    """The dataset of the run ``run_id``; TtsTrainingError when there is no such run."""
    params = tracking_dir(settings) / KIND / run_id / "params.json"
    if not params.is_file():
        raise TtsTrainingError(f"no TTS training run {run_id!r} in {params.parent.parent}")
    logged = str(json.loads(params.read_text()).get("dataset", ""))
    if dataset and logged and dataset != logged:
        raise TtsTrainingError(f"run {run_id} trains on {logged}, not {dataset}")
    return dataset or logged


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
    note = ""
    if resume:
        dataset = run_dataset(settings, resume, dataset)
    if not dataset:
        releases = store.releases()
        if not releases:
            raise TtsTrainingError("the store has no release yet: make one first")
        dataset = releases[-1].name
        earlier = runs_of(settings, dataset)
        resume = earlier[-1] if earlier else None
        note = f"latest release {dataset}" + (f", continuing run {resume}" if resume else "")
    release = store.resolve(dataset)
    tts_config.check_settings(settings.tts)
    total = steps if steps is not None else settings.tts.steps
    run = open_run(settings, KIND, resume)
    try:
        data = run.dir / DATA_DIR
        export = run_export_task(store, release.name, data, settings)
        run.log_params(
            {"dataset": release.name, "dataset_tag": release.tag or "", "steps": total,
             "start": settings.tts.checkpoint or "scratch (tiny configuration)",
             "export": {"train": export.n_train, "heldout": export.n_heldout,
                        "speakers": export.n_speakers, "train_hours": export.train_hours},
             "settings": {"tts": asdict(settings.tts), "asr": asdict(settings.asr)}}
        )  # fmt: skip
        training = train_task(settings, run, data, total, settings.tts.checkpoint_every)
        logger.info(
            "run %s: steps %d -> %d in %.1f s, last losses %s",
            run.run_id, training.start_step, training.steps_done, training.seconds,
            training.last_losses(),
        )  # fmt: skip
        evaluation = None
        stale = training.steps_done > training.start_step
        if evaluate and (stale or not (run.dir / "evaluation.json").is_file()):
            evaluation = evaluate_task(settings, training.checkpoint, data)
        if evaluation is not None:
            run.log_metrics(evaluation.metrics(), step=training.steps_done)
            (run.dir / "evaluation.json").write_text(
                json.dumps(asdict(evaluation), indent=1, default=str) + "\n"
            )
    finally:
        run.close()
    report = TtsRetrainReport(release.name, run.run_id, run.dir, export, training, evaluation, note)
    logger.info(report.summary())
    return report


@task(name="export-tts-for-run", cache_policy=NO_CACHE)
def run_export_task(store: Store, dataset: str, data: Path, settings: Settings) -> TtsExport:
    """The run's coqui-format export, written once (kept when the run is resumed)."""
    release = store.resolve(dataset)
    try:
        done = tts_export.read_export(data)
    except tts_export.ExportError:
        done = {}
    if (done.get("release"), done.get("format"), done.get("sample_rate")) == (
        release.name, "coqui", settings.tts.sample_rate,
    ):  # fmt: skip
        return TtsExport(
            release=release.name, format="coqui", path=data, sample_rate=settings.tts.sample_rate,
            n_train=done["train"], n_heldout=done["heldout"], n_speakers=done["speakers"],
            train_hours=done["train_hours"], skipped=done["skipped"],
            n_recordings=done["recordings"],
        )  # fmt: skip
    return tts_export.export_release(store, release, "coqui", data, settings.tts.sample_rate)
