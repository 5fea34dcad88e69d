"""Which recordings an ingest is labelling into a store: one lock file per recording.

Two ``convoice ingest`` processes on overlapping sources and one store (two cron
jobs, an operator re-running a batch that is still going) used to work on the same
recordings at once in one download directory: one removed a recording's files while
the other read them (3 of 8 recordings crashed with ``LibsndfileError`` and the run
exited 1; README "Two ingests at once"). Now an ingest claims each recording before its
download starts, with an exclusive, non-blocking ``flock`` on
``<downloads>/<recording_id>.lock``, and lets it go once the recording is committed or
skipped. A recording another process holds is left to it (the report counts it as
``elsewhere``); the kernel lets go of a killed process's claims, so a resumed run
takes them up. The lock files live in the store's own download directory
(:func:`convoice.orchestration.prefetch.download_dir`): ingests into different stores
never wait for each other.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class Claims:
    """The recordings this object holds, each by an open, ``flock``-ed lock file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._held: dict[str, int] = {}  # recording id -> the lock file's descriptor

    def claim(self, recording_id: str) -> bool:
        """Hold ``recording_id`` (True), or False when another holder has it.

        Claiming one this object holds already is True again. A lock file removed by
        its holder between our open and our lock is opened again (the inode check),
        so two claimants never hold two different files of one name.
        """
        if recording_id in self._held:
            return True
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(recording_id)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._held[recording_id] = fd
                return True
            os.close(fd)  # its holder let go and removed it: take the new one

    def release(self, recording_id: str) -> None:
        """Let ``recording_id`` go (nothing when not held); its lock file is removed."""
        fd = self._held.pop(recording_id, None)
        if fd is None:
            return
        self._path(recording_id).unlink(missing_ok=True)  # still locked: no one took it
        os.close(fd)

    def release_all(self) -> None:
        """Let every held recording go (the run ends, or stops early)."""
        for recording_id in list(self._held):
            self.release(recording_id)

    def held(self) -> set[str]:
        """The recording ids held now."""
        return set(self._held)

    def _path(self, recording_id: str) -> Path:
        return self.directory / f"{recording_id}.lock"
