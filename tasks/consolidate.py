"""Consolidation of the speaker registry as a task: the ingest's last step.

The work (read, plan, record, commit) is :func:`convoice.storage.consolidation.consolidate_store`;
the plan itself is :mod:`convoice.models.consolidate`.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from convoice.config import ConsolidationSettings
from convoice.orchestration.store_lock import store_lock
from convoice.storage import Store
from convoice.storage.consolidation import (
    ConsolidationReport,
    UnfinishedRelabel,
    consolidate_store,
)
from convoice.storage.store import ConcurrentCommitError


@task(name="consolidate", cache_policy=NO_CACHE)
def consolidate(
    store: Store, cfg: ConsolidationSettings, run_id: str, locked: bool, pitch_veto: float = 0.0
) -> ConsolidationReport | None:
    """Heal the registry as a whole (models/consolidate.py); a clash waits for the next run.

    ``pitch_veto``: ``[identity] pitch_veto_semitones`` (0: off)."""
    logger = get_run_logger()
    with store_lock(locked, store.root):
        try:
            done = consolidate_store(store, cfg, run_id, pitch_veto=pitch_veto)
        except ConcurrentCommitError as err:
            logger.warning("registry not consolidated this run (%s); the next run will", err)
            return None
        except UnfinishedRelabel as err:
            logger.warning("registry not consolidated: %s", err)
            return None
    logger.info(done.summary())
    return done
