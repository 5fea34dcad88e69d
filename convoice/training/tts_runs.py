"""The TTS training runs of a store: which run trains on which release, and what it logs.

A run's ``params.json`` names the release it trains on; ``evaluation.json``
holds its latest scores (:mod:`convoice.training.tracking` keeps the rest).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from convoice.config import Settings
from convoice.storage import Release, Store
from convoice.training import tts_export
from convoice.training.tracking import TrainingRun, tracking_dir
from convoice.training.tts import TrainResult
from convoice.training.tts_config import TtsTrainingError
from convoice.training.tts_eval import TtsEvaluation
from convoice.training.tts_export import TtsExport

KIND = "tts"
DATA_DIR = "data"  # the run's own export (coqui format)


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


def choose_run(
    settings: Settings, store: Store, dataset: str | None, resume: str | None
) -> tuple[str, str | None, str]:
    """The release to train on, the run to continue (None: a new one) and why (a note).

    ``resume``'s dataset when ``dataset`` is None; with neither, the latest
    release, continuing its latest run when there is one.
    """
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
    return dataset, resume, note


def run_params(
    release: Release, total: int, export: TtsExport, settings: Settings
) -> dict[str, Any]:
    """The parameters a TTS run logs: its release, steps, start, export and settings."""
    return {
        "dataset": release.name, "dataset_tag": release.tag or "", "steps": total,
        "start": settings.tts.checkpoint or "scratch (tiny configuration)",
        "export": {"train": export.n_train, "heldout": export.n_heldout,
                   "speakers": export.n_speakers, "train_hours": export.train_hours},
        "settings": {"tts": asdict(settings.tts), "asr": asdict(settings.asr)},
    }  # fmt: skip


def wants_evaluation(evaluate: bool, training: TrainResult, run_dir: Path) -> bool:
    """Whether to score the run: steps were run now, or it never was scored."""
    stale = training.steps_done > training.start_step
    return evaluate and (stale or not (run_dir / "evaluation.json").is_file())


def save_evaluation(run: TrainingRun, evaluation: TtsEvaluation, step: int) -> None:
    """Log the scores as the run's metrics at ``step`` and keep them in ``evaluation.json``."""
    run.log_metrics(evaluation.metrics(), step=step)
    (run.dir / "evaluation.json").write_text(
        json.dumps(asdict(evaluation), indent=1, default=str) + "\n"
    )


def run_export(store: Store, dataset: str, data: Path, settings: Settings) -> TtsExport:
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
