"""``convoice retrain ...``, ``convoice encoder ...``, ``convoice export ...``, ``convoice loop``.

The commands that close the loop: models retrained on released labels, the
encoder registry (list, promote, roll back), training-set exports, and the
whole loop as one run.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from convoice.cli_common import HomeOption, prefect_defaults
from convoice.cli_tts import export_tts_command, retrain_tts_command

console = Console()

retrain_app = typer.Typer(no_args_is_help=True, help="Retrain models on a released dataset.")
encoder_app = typer.Typer(no_args_is_help=True, help="The speaker-encoder registry.")
export_app = typer.Typer(no_args_is_help=True, help="Export a release as a training set.")
export_app.command("tts")(export_tts_command)
retrain_app.command("tts")(retrain_tts_command)

ConfigOption = Annotated[str | None, typer.Option("--config", help="A config.toml to use.")]


def _registry(home: str | None):  # type: ignore[no-untyped-def]
    from convoice.config import load_settings
    from convoice.storage import Store
    from convoice.storage.encoders import EncoderRegistry

    settings = load_settings(home=home)
    return EncoderRegistry(Store.open(settings).location)


@retrain_app.command("encoder")
def retrain_encoder(
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Release to train on (default: the latest).")
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Training steps ([encoder] steps).")
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Run id of a killed run to continue.")
    ] = None,
    no_relabel: Annotated[
        bool, typer.Option("--no-relabel", help="Do not re-label after a promotion.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Train even on a release trained on before.")
    ] = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Fine-tune the speaker encoder on a release; promote it if the held-out set says better."""
    from convoice.flows.retrain import retrain_encoder_flow
    from convoice.models.ge2e import NotEnoughData
    from convoice.storage.releases import UnknownReleaseError

    prefect_defaults()
    try:
        report = retrain_encoder_flow(
            dataset=dataset,
            home=home,
            config=config,
            steps=steps,
            resume=resume,
            relabel=not no_relabel,
            force=force,
        )
    except (NotEnoughData, UnknownReleaseError, ValueError) as err:
        console.print(f"[red]cannot retrain:[/red] {escape(str(err))}")
        raise typer.Exit(2) from err
    console.print(escape(report.summary()))
    if report.run_id:
        console.print(f"training run: {report.run_id} (resume with --resume {report.run_id})")


@encoder_app.command("list")
def encoder_list(home: HomeOption = None) -> None:
    """Every trained encoder, its figures and which one labels now."""
    registry = _registry(home)
    current = registry.current()
    table = Table(title=f"speaker encoders (current: {current})")
    for col in ("encoder", "from", "dataset", "EER", "B-cubed F1", "review", "decision"):
        table.add_column(col)
    for card in registry.cards():
        m = card.metrics
        table.add_row(
            ("* " if card.encoder_id == current else "") + card.encoder_id,
            card.parent,
            card.dataset,
            f"{m.get('eer', float('nan')):.4f}",
            f"{m.get('bcubed_f1', float('nan')):.4f}",
            f"{m.get('review_share', float('nan')):.3f}",
            card.decision,
        )
    console.print(table)
    history = registry.history()
    console.print(f"history (roll back order, newest last): {', '.join(history) or '-'}")


@encoder_app.command("promote")
def encoder_promote(
    encoder_id: Annotated[str, typer.Argument(help="A registered encoder id, or 'pretrained'.")],
    relabel: Annotated[bool, typer.Option(help="Re-label the store with it.")] = True,
    home: HomeOption = None,
) -> None:
    """Make an encoder the current one (by hand), and re-label with it."""
    from convoice.storage.encoders import UnknownEncoderError

    registry = _registry(home)
    try:
        before = registry.promote(encoder_id)
    except UnknownEncoderError as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(2) from err
    console.print(f"current encoder: {encoder_id} (was {before})")
    if relabel:
        _relabel(home, encoder_id)


@encoder_app.command("rollback")
def encoder_rollback(
    relabel: Annotated[bool, typer.Option(help="Re-label the store with it.")] = True,
    home: HomeOption = None,
) -> None:
    """Return to the encoder used before the current one, and re-label with it."""
    from convoice.storage.encoders import UnknownEncoderError

    registry = _registry(home)
    try:
        now = registry.rollback()
    except UnknownEncoderError as err:
        console.print(f"[red]{escape(str(err))}[/red]")
        raise typer.Exit(2) from err
    console.print(f"current encoder: {now}")
    if relabel:
        _relabel(home, now)


def _relabel(home: str | None, encoder_id: str) -> None:
    from convoice.config import load_settings
    from convoice.flows.retrain import relabel_store
    from convoice.storage import Store
    from convoice.storage.encoders import EncoderRegistry
    from convoice.tasks import loaders

    settings = load_settings(home=home)
    store = Store.open(settings)
    weights = EncoderRegistry(store.location).weights(encoder_id, loaders.cache_dir() / "encoders")
    console.print(escape(relabel_store(store, settings, encoder_id, weights).line()))


def loop_command(
    sources: Annotated[
        str | None, typer.Option("--sources", help="Sources file (CSV/TXT) to ingest first.")
    ] = None,
    tts: Annotated[bool, typer.Option("--tts", help="Also fine-tune the TTS.")] = False,
    encoder_steps: Annotated[
        int | None, typer.Option("--encoder-steps", help="Encoder training steps.")
    ] = None,
    retranscribe: Annotated[
        bool, typer.Option(help="Learn the vocabulary and run round two of transcription.")
    ] = True,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """One turn of the loop: ingest, pull reviews, release, retrain, re-label, push reviews."""
    from convoice.flows.loop import FAILED, loop_flow

    prefect_defaults()
    report = loop_flow(
        home=home,
        sources_file=sources,
        config=config,
        tts=tts,
        encoder_steps=encoder_steps,
        retranscribe=retranscribe,
    )
    table = Table(title="loop")
    for col in ("step", "outcome", "what happened"):
        table.add_column(col)
    for step in report.steps:
        table.add_row(step.name, step.outcome, escape(step.detail))
    console.print(table)
    if any(s.outcome == FAILED for s in report.steps):
        raise typer.Exit(1)
