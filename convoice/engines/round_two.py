"""Round two's Whisper: the model it transcribes with, and which words its tokenizer splits.

Used by :mod:`convoice.tasks.retranscribe` (transcribing again) and by the
vocabulary step, which learns only the words Whisper splits (:mod:`convoice.flows.retranscribe`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convoice.config import Settings
from convoice.engines import loaders
from convoice.models.vocabulary import is_rare


def whisper(settings: Settings, model: str) -> tuple[str, Any]:
    """Round two's Whisper (``model`` over ``[asr] model``); ModelUnavailable if it cannot load."""
    source = model or settings.asr.model
    found = loaders.whisper_model(source, settings.asr.compute_type, settings.asr.cpu_threads)
    return loaders.whisper_name(source), found


@functools.cache
def rare_word(source: str = "") -> Callable[[str], bool]:
    """Whether Whisper (``[asr] model``-style ``source``) does not know ``word``.

    Names and terms it does not know are split into pieces ("Siobhan": 3,
    "Tlaxcala": 4); words it knows, or stems of them, are one token in some
    spelling ("small", "festival", "hurried": hurry; see
    :func:`convoice.models.vocabulary.is_rare`).
    """
    from tokenizers import Tokenizer

    shipped = source in ("", "base", "small")
    folder = loaders.default_whisper_dir(source or "base") if shipped else Path(source)
    path = folder / "tokenizer.json"
    if not path.is_file():  # a hub name or a folder without a tokenizer: keep every word
        return lambda word: True
    tokenizer = Tokenizer.from_file(str(path))
    pieces = functools.lru_cache(maxsize=65536)(
        lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    )
    return lambda word: is_rare(word, pieces)
