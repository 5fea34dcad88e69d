"""Out of disk space: told apart from a bad item, so an ingest stops and says where.

A full disk fails every item after the first in the same way, and what it raises
depends on who was writing: an ``OSError`` with ``ENOSPC`` from Python, "No space
left on device (os error 28)" inside a deltalake error, ffmpeg's last line of
stderr, torch's "file write failed". Counted as the items' own failures, a full
disk looked like a batch of corrupt media and crashes. An item that fails so is
not the item's fault: the run stops (:class:`DiskFull`, exit code 3), the item is
not recorded as skipped, and the next run resumes where this one stopped.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from convoice.media.errors import mentions_full_disk
from convoice.storage.location import is_local_root

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
LOW_FREE_BYTES = 64 * 1024 * 1024
"""Under this much free space where the run writes, any write error counts as a full disk
(torch's "file write failed" says nothing more); an hour of audio decodes to 115 MB."""
WARN_FREE_BYTES = 1_000_000_000
"""Under this much free space where it writes, an ingest warns before it starts (about
nine hours of decoded audio, or a few downloaded videos), so a nightly run that will fill
the disk is seen coming rather than found stopped."""


@dataclass(frozen=True)
class Space:
    """Free space on the filesystem of one place a run writes to."""

    what: str  # "store", "downloads", "temporary files"
    path: str
    free_bytes: int

    def describe(self) -> str:
        return f"{self.path} ({self.what}) has {self.free_bytes / 1e6:.1f} MB free"


class DiskFull(RuntimeError):
    """A run stopped because a disk it writes to is full (no item's fault)."""

    def __init__(self, spaces: list[Space], detail: str) -> None:
        self.spaces = spaces
        self.detail = detail
        low = [s for s in spaces if s.free_bytes < LOW_FREE_BYTES] or spaces
        where = "; ".join(s.describe() for s in low) or "the disk it writes to"
        super().__init__(
            f"stopped: out of disk space ({detail}): {where}. Free space and run the same "
            "command again: what was labelled is kept, and the run resumes where it stopped"
        )

    def __reduce__(self) -> tuple[type[DiskFull], tuple[list[Space], str]]:
        return (type(self), (self.spaces, self.detail))  # picklable across processes


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, then its causes and contexts (each once)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def says_out_of_space(err: BaseException) -> bool:
    """Whether ``err`` or an error it came from says the disk is full (errno or text)."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in FULL_ERRNOS:
            return True
        if mentions_full_disk(str(e)):
            return True
    return False


def free_space(places: Mapping[str, str | Path]) -> list[Space]:
    """Free space on each local place (its nearest existing folder); remote ones are left out."""
    spaces = []
    for what, place in places.items():
        if not is_local_root(str(place)):
            continue
        path = Path(place).expanduser()
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            spaces.append(Space(what, str(place), shutil.disk_usage(path).free))
        except OSError:
            continue
    return spaces


def low_space_warning(places: Mapping[str, str | Path]) -> str | None:
    """One line naming the places with under :data:`WARN_FREE_BYTES` free (None: none)."""
    low = [s for s in free_space(places) if s.free_bytes < WARN_FREE_BYTES]
    if not low:
        return None
    return (
        f"low disk space before the run: {'; '.join(s.describe() for s in low)} (under "
        f"{WARN_FREE_BYTES / 1e9:.1f} GB). If it fills up, the run stops with exit code 3 and "
        "keeps what it labelled"
    )


def out_of_space(
    err: BaseException, places: Mapping[str, str | Path], by_free_space: bool = True
) -> DiskFull | None:
    """A :class:`DiskFull` when ``err`` came from a full disk, else None.

    Full when ``err`` says so, or (``by_free_space``) when one of ``places`` has under
    :data:`LOW_FREE_BYTES` free (a writer that says only that its write failed).
    """
    said = says_out_of_space(err)
    if not said and not by_free_space:
        return None
    spaces = free_space(places)
    if said or any(s.free_bytes < LOW_FREE_BYTES for s in spaces):
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return DiskFull(spaces, f"{type(err).__name__}: {first_line[:160]}")
    return None
