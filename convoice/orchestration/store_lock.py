"""The ``convoice-store`` global concurrency limit, held by the flows that write the store.

``convoice deploy`` creates it with one slot (the work queue of the same name
runs one flow at a time); ingests, releases, review pulls and re-labelling
hold it while they write, so they never commit over each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

STORE_LIMIT = "convoice-store"
"""Global concurrency limit held by the flows that write the store."""


@contextlib.contextmanager
def store_lock(locked: bool = True) -> Iterator[None]:
    """Hold the ``convoice-store`` limit for the block (nothing when not ``locked``)."""
    if not locked:
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(STORE_LIMIT, occupy=1):
        yield


def store_limit_exists() -> bool:
    """Whether the Prefect server has the ``convoice-store`` limit; warns once when not."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(STORE_LIMIT)
        except ObjectNotFound:
            get_run_logger().warning(
                "no %r concurrency limit on the Prefect server: commits are not kept apart "
                "from other ingests and releases (`convoice deploy` creates it)",
                STORE_LIMIT,
            )
            return False
    return True
