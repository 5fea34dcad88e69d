"""The versioned store: Delta tables, immutable audio and numbered releases."""

from convoice.storage.pull import PullResult
from convoice.storage.releases import Release, UnknownReleaseError
from convoice.storage.store import ConcurrentCommitError, Store

__all__ = ["ConcurrentCommitError", "PullResult", "Release", "Store", "UnknownReleaseError"]
