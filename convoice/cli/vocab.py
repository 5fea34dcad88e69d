"""``convoice vocabulary list|add|remove|learn`` and ``convoice retranscribe``.

The vocabulary is the words Whisper got wrong, learned from people's
corrections per channel (README "Vocabulary: transcripts that learn from
corrections"); round two transcribes again, with it, what still needs a person.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from convoice.cli.common import HomeOption, fail, prefect_defaults

if TYPE_CHECKING:
    from convoice.records import TermState

vocabulary_app = typer.Typer(
    no_args_is_help=True,
    help="The words Whisper got wrong, learned from people's corrections: view and edit.",
)
console = Console()

ConfigOption = Annotated[str | None, typer.Option("--config", help="A config.toml to use.")]
ChannelOption = Annotated[
    str,
    typer.Option(
        "--channel",
        help='The channel (an uploader, or a source folder); "" = the whole store.',
    ),
]


def _store(home: str | None, config: str | None = None):  # type: ignore[no-untyped-def]
    from convoice.config import load_settings
    from convoice.storage import Store

    return Store.open(load_settings(config, home=home))


@vocabulary_app.command("list")
def list_command(
    channel: Annotated[
        str | None, typer.Option("--channel", help='Only this channel ("" = store-wide terms).')
    ] = None,
    removed: Annotated[bool, typer.Option("--removed", help="Show removed terms too.")] = False,
    home: HomeOption = None,
) -> None:
    """Every term: its channel, how often people corrected Whisper to it, who added it."""
    from convoice.records import TermState
    from convoice.storage.vocabulary import read_terms

    terms = [
        t for t in read_terms(_store(home))
        if (channel is None or t.channel == channel) and (removed or t.state == TermState.ACTIVE)
    ]  # fmt: skip
    table = Table(title=f"vocabulary: {len(terms)} terms")
    for col in ("channel", "term", "count", "origin", "state", "clips", "updated"):
        table.add_column(col, overflow="fold")
    for t in terms:
        table.add_row(
            escape(t.channel or "(whole store)"), escape(t.term), str(t.count), t.origin,
            t.state, str(len(t.clip_ids)), escape(f"{t.updated_at} {t.updated_by}".strip()),
        )  # fmt: skip
    console.print(table)


def _operator() -> str:
    return os.environ.get("USER") or "operator"


@vocabulary_app.command("add")
def add_command(
    terms: Annotated[list[str], typer.Argument(help="Words to add (one word each).")],
    channel: ChannelOption = "",
    home: HomeOption = None,
) -> None:
    """Add words an operator knows Whisper needs (kept as the operator's, never re-learned away)."""
    from convoice.records import TermState

    _set_terms(home, channel, terms, TermState.ACTIVE, "added {term} to {channel}")


@vocabulary_app.command("remove")
def remove_command(
    terms: Annotated[list[str], typer.Argument(help="Words to remove.")],
    channel: ChannelOption = "",
    home: HomeOption = None,
) -> None:
    """Stop giving words to Whisper; learning never brings a removed word back."""
    from convoice.records import TermState

    _set_terms(home, channel, terms, TermState.REMOVED, "removed {term} from {channel}")


def _set_terms(
    home: str | None, channel: str, words: list[str], state: TermState, done: str
) -> None:
    """Set each word's ``state`` as the operator's, saying ``done`` of each; exit 2 on a bad one."""
    from convoice.storage.vocabulary import set_term

    store = _store(home)
    for word in words:
        try:
            made = set_term(store, channel, word, state, _operator())
        except ValueError as err:
            fail(err)
        where = escape(channel or "(whole store)")
        console.print(done.format(term=escape(made.term), channel=where))


@vocabulary_app.command("learn")
def learn_command(home: HomeOption = None) -> None:
    """Learn from the transcripts people corrected since the last time (retranscribe does too)."""
    from convoice.config import load_settings
    from convoice.engines.round_two import rare_word
    from convoice.storage import Store
    from convoice.storage.vocabulary import learn_from_store

    settings = load_settings(home=home)
    found = learn_from_store(Store.open(settings), rare_word(settings.asr.model))
    console.print(
        f"learned from {found.new_clips} corrected clips: {len(found.changed)} terms changed,"
        f" {len(found.terms)} in the vocabulary"
    )


def retranscribe_command(
    recording: Annotated[
        str | None, typer.Option("--recording", help="Only this recording id.")
    ] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Only this channel.")] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help='Whisper for round two: "base" (shipped), a CTranslate2 folder; "" = [asr]'
            ' model. "small" from PyPI is incomplete and does not load.',
        ),
    ] = "",
    review_only: Annotated[
        bool,
        typer.Option(
            "--review-only",
            help="Only clips waiting for review or below the transcript-confidence bar.",
        ),
    ] = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Round two: learn the vocabulary, transcribe the channel's clips again with it, re-route."""
    from convoice.config import load_settings
    from convoice.engines.round_two import whisper
    from convoice.flows.retranscribe import retranscribe_flow

    if recording and channel:
        console.print("[red]give --recording or --channel, not both[/red]")
        raise typer.Exit(2)
    try:  # before any flow starts: a model that cannot load is a usage error
        whisper(load_settings(config, home=home), model)
    except RuntimeError as err:
        fail(err)
    prefect_defaults()
    try:
        report = retranscribe_flow(
            home=home,
            config=config,
            recording=recording,
            channel=channel,
            model=model,
            review_only=review_only,
        )
    except (ValueError, RuntimeError) as err:
        fail(err)
    console.print(escape(report.summary()), soft_wrap=True)
