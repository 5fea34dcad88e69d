"""``convoice calibrate``: refit confidences from people's labels, or fit the shipped one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from convoice.cli.common import HomeOption, fail

console = Console()


def calibrate_command(
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Fit and judge, but do not save the refit in the store (with --bench-home: "
            "do not write the module)."
        ),
    ] = False,
    bench_home: Annotated[
        list[Path] | None,
        typer.Option(
            help="Developers: fit the package's calibration on this store, one that `convoice "
            "bench --split tune --keep-stores DIR` kept, instead (writes --write); repeat it to "
            "pool several stores."
        ),
    ] = None,
    bench_seed: Annotated[
        list[int] | None,
        typer.Option(
            help="With --bench-home: the seed of each store's tuning corpus, in the same order "
            "(default: the bench's, 11; other seeds deal the same tuning voices other episodes)."
        ),
    ] = None,
    write: Annotated[Path, typer.Option(help="With --bench-home: the module to write.")] = Path(
        "models/calibration_shipped.py"
    ),
    version: Annotated[str, typer.Option(help="With --bench-home: its version.")] = "shipped-1",
    keep_top: Annotated[
        bool,
        typer.Option(
            help="With --bench-home: keep the shipped speaker curve where it reaches the target "
            "precision and fit one probability below it (the share right there); transcript "
            "curves kept as shipped unless --refit-transcripts."
        ),
    ] = False,
    refit_transcripts: Annotated[
        bool,
        typer.Option(
            help="With --bench-home --keep-top: refit the transcript curves on the same stores "
            "(isotonic, one curve for every language; without --keep-top the isotonic rule "
            "refits them anyway, the same way)."
        ),
    ] = False,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            help="With --bench-home --keep-top: give this kind of speaker evidence (e.g. "
            "uncertain) a probability of its own and accept by the precision of all that is "
            "accepted (README, Kinds of speaker evidence); repeat it for several."
        ),
    ] = None,
    speaker_model: Annotated[
        bool,
        typer.Option(
            help="With --bench-home: keep the shipped curves and add a speaker model fitted on "
            "the labels they do not accept, which orders and gives their probability (README, "
            "Confidence and review, session 48)."
        ),
    ] = False,
    home: HomeOption = None,
) -> None:
    """Refit the map from raw scores to probabilities on people's labels (held-out judged)."""
    from convoice.config import load_settings
    from convoice.models.calibration import CalibrationError
    from convoice.training import calibrate

    try:
        if bench_home:
            target = load_settings(home=home).routing.target_precision
            out = None if dry_run else write
            homes = [str(h) for h in bench_home]
            cal, held = calibrate.write_shipped(
                homes, "tune", out, version, target, tuple(bench_seed or ()), keep_top,
                refit_transcripts, tuple(kind or ()), speaker_model,
            )  # fmt: skip
            did = "fitted (not written)" if dry_run else f"wrote {write}"
            console.print(f"{did}: {cal.version}, {cal.rule}", markup=False)
            console.print("\n".join(held), markup=False)
            return
        result = calibrate.refit_from_labels(home, save=not dry_run)
    except (CalibrationError, ValueError) as err:
        fail(err)
    console.print(result.render(), markup=False)
