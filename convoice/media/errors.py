"""Why one item is not ingested: the reason codes and the error that carries one.

Every failure of one item becomes a :class:`~convoice.records.SkippedItem` (listing)
or an :class:`IngestError` (download, decode) with a machine-readable ``reason_code``:
one bad item never stops a batch. A full disk is no item's failure
(:func:`mentions_full_disk`, :mod:`convoice.orchestration.disk_space`).
"""

from __future__ import annotations

from convoice.records import SkipReason

REASON_CODES = frozenset(SkipReason)
FULL_DISK_TEXTS = (
    "no space left on device", "os error 28", "disk quota exceeded", "os error 122",
    "out of disk space",  # a DiskFull's own message, carried on (a loop's ingest step)
)  # fmt: skip


def mentions_full_disk(text: str) -> bool:
    """Whether an error message (Python's, deltalake's, ffmpeg's stderr) says a disk is full."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in FULL_DISK_TEXTS)


class IngestError(Exception):
    """One item could not be ingested; ``reason_code`` is one of :data:`REASON_CODES`."""

    def __init__(self, reason_code: str, message: str) -> None:
        if reason_code not in REASON_CODES:
            raise ValueError(f"unknown reason code {reason_code!r}")
        super().__init__(message)
        self.reason_code = reason_code
        self.reason = message

    def __reduce__(self) -> tuple[type[IngestError], tuple[str, str]]:
        return (type(self), (self.reason_code, self.reason))  # picklable across processes
