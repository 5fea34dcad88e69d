"""Which voices ``convoice bench`` runs on (``--split``): the halves of the voice split, or seven.

A module of its own, without heavy imports, so the command line can offer the
choices at once (see :mod:`convoice.synth.inventory` for the rule that splits
the voices in two halves).
"""

from __future__ import annotations

from enum import StrEnum


class Split(StrEnum):
    """``report``/``tune``: the halves of the voice split; ``seven``: the former corpus of the
    seven tuning voices (20 minutes)."""

    REPORT = "report"  # the half nothing is tuned on
    TUNE = "tune"  # the half settings may look at
    SEVEN = "seven"  # the former 20-minute corpus of seven voices


def generated_half(quick: bool, split: str, corpus_dir: str | None) -> bool:
    """Whether the corpus is dealt from a half's voices by a seed (so it has other draws,
    ``--draws``): not the quick, seven-voice or an operator's corpus, each one fixed corpus."""
    return not (quick or corpus_dir or split == Split.SEVEN)
