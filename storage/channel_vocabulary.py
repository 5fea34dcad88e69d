"""The vocabulary a new ingest of a channel tells Whisper: the words learned for it."""

from __future__ import annotations

from convoice.config import Settings
from convoice.records import MediaItem
from convoice.storage import Store


def channel_vocabulary(item: MediaItem, settings: Settings) -> list[str]:
    """The words learned for ``item``'s channel (and the whole store): a new ingest uses them."""
    from convoice.models.vocabulary import active_for
    from convoice.records import channel_of
    from convoice.storage.vocabulary import read_terms

    channel = channel_of(item.uploader, item.uploader_url, item.source_url)
    return active_for(read_terms(Store.open(settings)), channel, settings.asr.vocabulary_size)
