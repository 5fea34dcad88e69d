"""``convoice export tts`` and ``convoice retrain tts``: the voice-cloning TTS commands.

Typer command functions, registered by :mod:`convoice.cli.root`. Heavy libraries
(Prefect, torch, coqui-tts) are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from convoice.cli.common import HomeOption, fail, prefect_defaults
from convoice.models.tts_data import TtsFormat

console = Console()


def export_tts_command(
    dataset: Annotated[str, typer.Option("--dataset", help="Release: v3, 3 or a tag.")],
    fmt: Annotated[
        TtsFormat, typer.Option("--format", help="Layout (vctk: coqui's vctk_old formatter).")
    ],
    to: Annotated[Path, typer.Option("--to", help="Destination folder (new or empty).")],
    home: HomeOption = None,
) -> None:
    """Write a release as a TTS training set: WAVs, metadata, d-vectors, attribution."""
    prefect_defaults()
    from convoice.config import load_settings
    from convoice.flows.tts import export_tts_flow
    from convoice.models.tts_data import TtsDataError
    from convoice.storage import Store, UnknownReleaseError
    from convoice.training.tts_export import ExportError, check_folder

    try:  # the operator's mistakes are a message, not a failed flow run
        store = Store.open(load_settings(home=home))
        check_folder(to, store.resolve(dataset).name, fmt.value)
        result = export_tts_flow(dataset=dataset, fmt=fmt.value, to=str(to), home=home)
    except (UnknownReleaseError, TtsDataError, ExportError) as err:
        fail(err)
    console.print(result.summary(), markup=False)


DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        help="Release: v3, 3 or a tag (default: the resumed run's, else the latest release,"
        " continuing its latest run).",
    ),
]
StepsOption = Annotated[
    int | None,
    typer.Option("--steps", min=1, help="Total steps of the run (default: the setting tts.steps)."),
]
ResumeOption = Annotated[
    str | None, typer.Option("--resume", help="Continue this run id from its last checkpoint.")
]
EvaluateOption = Annotated[
    bool, typer.Option(help="Synthesize the heldout sentences and score them.")
]


def retrain_tts_command(
    dataset: DatasetOption = None,
    home: HomeOption = None,
    steps: StepsOption = None,
    resume: ResumeOption = None,
    evaluate: EvaluateOption = True,
) -> None:
    """Fine-tune the multi-speaker VITS on a release's speaker embeddings, then score it."""
    prefect_defaults()
    from convoice.flows.tts import retrain_tts_flow
    from convoice.models.tts_data import TtsDataError
    from convoice.storage import UnknownReleaseError
    from convoice.training.tts_config import TtsTrainingError
    from convoice.training.tts_export import ExportError

    try:  # the operator's mistakes are a message, not a failed flow run
        dataset = _training_dataset(home, dataset, resume)
        report = retrain_tts_flow(
            dataset=dataset, home=home, steps=steps, resume=resume, evaluate=evaluate
        )
    except (UnknownReleaseError, TtsDataError, ExportError, TtsTrainingError) as err:
        fail(err)
    console.print(report.summary(), markup=False)
    console.print(
        f"run {report.run_id} in {report.run_dir}; resume it: convoice retrain tts"
        f" --resume {report.run_id} --steps N; watch it: tensorboard --logdir {report.run_dir}",
        markup=False,
    )


def _training_dataset(home: str | None, dataset: str | None, resume: str | None) -> str | None:
    """The release to train on (the resumed run's when resuming), checked before any flow runs.

    None means the latest release; raises when the store has none.
    """
    from convoice.config import load_settings
    from convoice.storage import Store
    from convoice.training.tts_config import TtsTrainingError, check_settings
    from convoice.training.tts_runs import run_dataset

    settings = load_settings(home=home)
    check_settings(settings.tts)
    store = Store.open(settings)
    if resume:
        dataset = run_dataset(settings, resume, dataset)
    if dataset:
        store.resolve(dataset)
    elif not store.releases():
        raise TtsTrainingError(f"the store {store.root} has no release yet: make one first")
    return dataset
