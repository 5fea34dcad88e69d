"""``convoice registry``: look after the speaker registry (``consolidate``, ``apart``,
``changes``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from convoice.cli.common import HomeOption, fail

registry_app = typer.Typer(no_args_is_help=True, help="The cross-recording speaker registry.")
console = Console()


@registry_app.command("consolidate")
def consolidate_command(
    home: HomeOption = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Centroid cosine to merge at (default: [consolidation] of the encoder)."),
    ] = None,
) -> None:
    """Heal identities (ingest does this after each run): split ids holding two voices, merge
    ids of one person split across recordings."""
    import dataclasses

    from convoice.config import load_settings
    from convoice.models.consolidate import ConsolidationError
    from convoice.storage import Store
    from convoice.storage.consolidation import consolidate_store
    from convoice.storage.store import ConcurrentCommitError

    settings = load_settings(home=home)
    cfg = settings.consolidation
    if threshold is not None:
        cfg = dataclasses.replace(
            cfg, threshold_campplus=threshold, threshold_resemblyzer=threshold
        )
    try:
        report = consolidate_store(
            Store.open(settings), cfg, run_id="cli",
            pitch_veto=settings.identity.pitch_veto_semitones,
        )  # fmt: skip
    except (ConsolidationError, ConcurrentCommitError) as err:
        fail(err, 1)
    console.print(escape(report.summary()))
    for s in report.splits:
        console.print(
            f"  split {s.split} -> {s.piece}  recordings {', '.join(s.recordings)}"
            f"  cosine {s.similarity:.3f}"
        )
    for m in report.merges:
        console.print(f"  {m.merged} -> {m.kept}  cosine {m.similarity:.3f}")


@registry_app.command("apart")
def apart_command(
    home: HomeOption = None,
    floor: Annotated[
        float, typer.Option(help="List pairs of speakers at least this alike (centroid cosine).")
    ] = 0.30,
) -> None:
    """Why consolidation keeps each pair of alike speakers apart (reads only): a recording in
    common, the threshold, or the guard that holds (README, "What consolidation cannot heal")."""
    from convoice.config import load_settings
    from convoice.storage import Store
    from convoice.storage.consolidation import explain_store

    settings = load_settings(home=home)
    held = explain_store(
        Store.open(settings), settings.consolidation, settings.identity.pitch_veto_semitones, floor
    )
    if not held:
        console.print(f"no two speakers at least {floor:.2f} alike")
    for h in held:
        console.print(
            escape(f"{h.similarity:.3f}  {h.first}  {h.second}  {h.reason or 'would merge now'}"),
            soft_wrap=True,
        )


@registry_app.command("changes")
def changes_command(home: HomeOption = None) -> None:
    """Every identity the machine folded into another or split: old id, new id, when, why."""
    from convoice.config import load_settings
    from convoice.records import ChangeKind
    from convoice.storage import Store
    from convoice.storage.identity import change_records, changes

    records = change_records(changes(Store.open(load_settings(home=home))))
    if not records:
        console.print("no identity changes")
    for c in records:
        if c.kind in (ChangeKind.RELABEL, ChangeKind.RELABEL_DONE):
            run = f" [{c.run_id}]" if c.run_id else ""
            console.print(escape(f"{c.at}  {c.kind}{run}  {c.why}"))
            continue
        where = f" (recording {c.recording_id})" if c.kind == ChangeKind.SPLIT else ""
        console.print(escape(f"{c.at}  {c.kind} {c.old_id} -> {c.new_id}{where}  {c.why}"))
