"""One ingest run: what its steps share (the store, settings, report, clock, registry, lock).

:class:`IngestRun` replaces the seven to nine parameters the ingest's steps
used to hand each other.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from convoice.config import Settings
from convoice.models.run_summary import IngestReport, StageClock
from convoice.orchestration.claims import Claims
from convoice.orchestration.prefetch import download_dir
from convoice.storage import Store
from convoice.storage.registry_cache import Registry


@dataclass
class IngestRun:
    """What every step of one ingest run shares."""

    store: Store
    settings: Settings
    run_id: str
    report: IngestReport
    clock: StageClock = field(default_factory=StageClock)
    log_format: str = "text"
    registry: Registry = field(default_factory=lambda: Registry({}))
    locked: bool = True  # whether commits hold the ``convoice-store`` limit
    claims: Claims | None = None  # the recordings it labels, kept from other ingests

    def places(self) -> dict[str, str]:
        """Where the run writes (what a full disk is looked for on): store, downloads, temp."""
        return {
            "store": self.store.root,
            "downloads": str(download_dir(self.store.root)),
            "temporary files": tempfile.gettempdir(),
        }
