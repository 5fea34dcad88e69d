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

from convoice.cli.common import HomeOption, fail, prefect_defaults
from convoice.cli.tts import export_tts_command, retrain_tts_command
from convoice.config import EncoderKind

console = Console()

retrain_app = typer.Typer(no_args_is_help=True, help="Retrain models on a released dataset.")
encoder_app = typer.Typer(no_args_is_help=True, help="The speaker-encoder registry.")
export_app = typer.Typer(no_args_is_help=True, help="Export a release as a training set.")
export_app.command("tts")(export_tts_command)
retrain_app.command("tts")(retrain_tts_command)

ConfigOption = Annotated[str | None, typer.Option("--config", help="A config.toml to use.")]
EncoderOption = Annotated[
    EncoderKind | None,
    typer.Option(
        "--encoder",
        help="campplus or resemblyzer (default: the one the store identifies with).",
    ),
]


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
    encoder: EncoderOption = None,
) -> None:
    """Fine-tune the encoder that identifies on a release; promote it if people's judged
    labels say it is better."""
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
            encoder=encoder.value if encoder else None,
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
    from convoice.storage.encoders import KINDS

    registry = _registry(home)
    current = {kind: registry.current(kind) for kind in KINDS}
    title = ", ".join(f"{kind} {current[kind]}" for kind in KINDS)
    table = Table(title=f"speaker encoders (current: {title})")
    for col in ("encoder", "kind", "from", "dataset", "EER", "B-cubed F1", "review", "decision"):
        table.add_column(col)
    for card in registry.cards():
        m = card.metrics
        table.add_row(
            ("* " if card.encoder_id == current[card.kind] else "") + card.encoder_id,
            card.kind,
            card.parent,
            card.dataset,
            f"{m.get('eer', float('nan')):.4f}",
            f"{m.get('bcubed_f1', float('nan')):.4f}",
            f"{m.get('review_share', float('nan')):.3f}",
            card.decision,
        )
    console.print(table)
    for kind in KINDS:
        history = ", ".join(registry.history(kind)) or "-"
        console.print(f"{kind} history (roll back order, newest last): {history}")


@encoder_app.command("promote")
def encoder_promote(
    encoder_id: Annotated[
        str, typer.Argument(help="A registered id, 'pretrained', or 'campplus-tune-1' (CAM++).")
    ],
    relabel: Annotated[bool, typer.Option(help="Re-label the store with it.")] = True,
    home: HomeOption = None,
    encoder: EncoderOption = None,
) -> None:
    """Make an encoder the current one of its kind (by hand), and re-label with it.

    ``--encoder`` says which kind ``pretrained`` means (a trained one's card says it).
    """
    from convoice.storage.encoders import UnknownEncoderError

    registry = _registry(home)
    try:
        kind = registry.kind(encoder_id, encoder.value if encoder else _identity_kind(home))
        before = registry.promote(encoder_id, kind)
    except (UnknownEncoderError, ValueError) as err:
        fail(err)
    console.print(f"current {kind} encoder: {encoder_id} (was {before})")
    if relabel:
        _relabel(home, encoder_id, kind)


@encoder_app.command("rollback")
def encoder_rollback(
    relabel: Annotated[bool, typer.Option(help="Re-label the store with it.")] = True,
    home: HomeOption = None,
    encoder: EncoderOption = None,
) -> None:
    """Return to the encoder used before the current one (of ``--encoder``'s kind), and
    re-label with it."""
    from convoice.storage.encoders import UnknownEncoderError

    registry = _registry(home)
    kind = encoder.value if encoder else _identity_kind(home)
    try:
        now = registry.rollback(kind)
    except (UnknownEncoderError, ValueError) as err:
        fail(err)
    console.print(f"current {kind} encoder: {now}")
    if relabel:
        _relabel(home, now, kind)


def _identity_kind(home: str | None) -> str:
    """The encoder the store identifies with (its registry's, else ``[identity] encoder``)."""
    from convoice.config import load_settings
    from convoice.storage import Store
    from convoice.training.encoder import pin_identity

    settings = load_settings(home=home)
    return pin_identity(settings, Store.open(settings)).identity.encoder


def _relabel(home: str | None, encoder_id: str, kind: str) -> None:
    from convoice.config import load_settings
    from convoice.engines import loaders
    from convoice.storage import Store
    from convoice.storage.encoders import EncoderRegistry
    from convoice.training.round_store import relabel_store

    settings = load_settings(home=home)
    store = Store.open(settings)
    weights = EncoderRegistry(store.location).weights(encoder_id, loaders.cache_dir() / "encoders")
    report = relabel_store(store, settings, encoder_id, weights, kind=kind)
    console.print(escape(report.line()))


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
