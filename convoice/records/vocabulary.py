"""Vocabulary records: words learned from people's corrections (learned in models/vocabulary.py)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

STORE_WIDE = ""  # the channel of a term learned from, or meant for, every channel


class TermOrigin(StrEnum):
    LEARNED = "learned"  # from people's corrections
    OPERATOR = "operator"  # added by an operator


class TermState(StrEnum):
    ACTIVE = "active"
    REMOVED = "removed"  # by an operator: never given to Whisper, never re-learned


@dataclass(frozen=True)
class Term:
    """One word (or name) of a channel's vocabulary."""

    channel: str  # STORE_WIDE ("") for the whole store
    term: str  # as people write it ("Tlaxcala")
    count: int = 0  # how often people corrected the machine to it
    origin: TermOrigin = TermOrigin.LEARNED  # from corrections, or added by an operator
    state: TermState = TermState.ACTIVE  # REMOVED: never given to Whisper, never re-learned
    clip_ids: tuple[str, ...] = ()  # the corrected clips it was learned from
    updated_at: str = ""
    updated_by: str = ""

    @property
    def key(self) -> str:
        return term_key(self.channel, self.term)


def term_key(channel: str, term: str) -> str:
    """The identity of a term: its channel and its normalised spelling."""
    return f"{channel}\x1f{normalise(term)}"


def normalise(word: str) -> str:
    """Lower case, accents and punctuation off: how words are compared."""
    plain = unicodedata.normalize("NFKD", word)
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return re.sub(r"[^\w']+", "", plain.lower()).strip("'")


@dataclass(frozen=True)
class Correction:
    """A person's transcript of a clip next to the machine's, and the clip's channel."""

    clip_id: str
    channel: str
    machine: str
    human: str


@dataclass
class Learned:
    """What one learning pass found: the terms after it, and what changed."""

    terms: list[Term]
    new_clips: int = 0
    changed: list[Term] = field(default_factory=list)


def channel_of(uploader: str, uploader_url: str, source_url: str) -> str:
    """A recording's channel: its uploader, else the uploader's URL, else its source's folder.

    Direct media links have no uploader; files served from one folder
    (``https://host/shows/a.mp4``, ``.../b.mp4``) are one channel, ``https://host/shows/``.
    """
    if uploader.strip():
        return uploader.strip()
    if uploader_url.strip():
        return uploader_url.strip()
    parts = urlsplit(source_url)
    if not parts.scheme:
        return source_url
    folder = parts.path.rsplit("/", 1)[0] + "/"
    return f"{parts.scheme}://{parts.netloc}{folder}"
