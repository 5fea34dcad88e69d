"""The vocabulary a new ingest of a channel tells Whisper: the words learned for it."""

from __future__ import annotations

from convoice.config import Settings
from convoice.records import MediaItem
from convoice.storage import Store


def channel_vocabulary(item: MediaItem, settings: Settings) -> list[str]:
    """The words learned for ``item``'s channel (and the whole store): a new ingest uses them."""
    return channel_words(item, settings)[0]


def channel_words(item: MediaItem, settings: Settings) -> tuple[list[str], list[str]]:
    """What Whisper is told for ``item``'s channel, and the words people taught the channel
    itself (its machine text is post-corrected towards those).
    """
    from convoice.models.vocabulary import active_for, taught_for
    from convoice.records import channel_of
    from convoice.storage.vocabulary import read_terms

    channel = channel_of(item.uploader, item.uploader_url, item.source_url)
    terms = read_terms(Store.open(settings))
    return active_for(terms, channel, settings.asr.vocabulary_size), taught_for(terms, channel)
