"""Why one item is not ingested: the reason codes and the error that carries one.

Every failure of one item becomes a :class:`~convoice.records.SkippedItem` (listing)
or an :class:`IngestError` (download, decode) with a machine-readable ``reason_code``:
one bad item never stops a batch.
"""

from __future__ import annotations

from convoice.records import SkipReason

REASON_CODES = frozenset(SkipReason)


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
