"""The speaker registry as one ingest run sees it: read again only when the table changed."""

from __future__ import annotations

from dataclasses import dataclass

from convoice.models.registry import centroid_matrix
from convoice.records import FloatArray, Speaker
from convoice.storage.store import Store


@dataclass
class Registry:
    """The speaker registry as this run sees it (read again when the table changed)."""

    speakers: dict[str, Speaker]
    version: int | None = None

    def matrix(self) -> tuple[list[str], FloatArray]:
        """Speaker ids (sorted) and their unit centroids, the rows new speakers match."""
        return centroid_matrix(self.speakers.values())

    def refresh(self, store: Store) -> None:
        """Read the registry again if another run (or this one) committed since."""
        version = store.tables.version("speakers")
        if version != self.version or version is None:
            self.speakers = {s.speaker_id: s for s in store.speakers()}
            self.version = version

    def committed(self, store: Store, speakers: list[Speaker], locked: bool) -> None:
        """Take in the speakers this run just committed.

        When ``locked``, nobody else wrote the registry since it was read: the
        new table version is noted so it is not read again.
        """
        self.speakers.update({s.speaker_id: s for s in speakers})
        if locked:
            self.version = store.tables.version("speakers")
