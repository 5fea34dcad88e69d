"""Commits kept apart: the ``convoice-store`` limit, or a lock file on this machine.

``convoice deploy`` creates the ``convoice-store`` global concurrency limit with one
slot (the work queue of the same name runs one flow at a time); ingests, releases,
review pulls and re-labelling hold it while they write, so they never commit over
each other. A plain ``convoice ingest`` talks to a temporary Prefect server of its
own, which has no such limit: its commits then hold an exclusive ``flock`` on a lock
file of the store (:func:`machine_lock`), which keeps apart the ingests of one machine
(two at once used to clash at the registry: ``ConcurrentCommitError``, the recording
skipped as a crash), not workers on several machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from convoice.engines import loaders

STORE_LIMIT = "convoice-store"
"""Global concurrency limit held by the flows that write the store."""


def store_key(store_root: str) -> str:
    """A short name for the store at ``store_root`` (a path or a URI) in this machine's cache."""
    return hashlib.sha1(store_root.encode("utf-8")).hexdigest()[:12]


@contextlib.contextmanager
def store_lock(locked: bool = True, store_root: str = "") -> Iterator[None]:
    """Hold the ``convoice-store`` limit for the block; when not ``locked`` (the server has
    no such limit), the store's lock file on this machine (:func:`machine_lock`; nothing
    when no ``store_root`` is given)."""
    if not locked:
        with machine_lock(store_root) if store_root else contextlib.nullcontext():
            yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(STORE_LIMIT, occupy=1):
        yield


@contextlib.contextmanager
def machine_lock(store_root: str) -> Iterator[None]:
    """Hold the store's lock file (``<cache>/locks/<store key>.lock``) for the block, waiting
    for another process of this machine that holds it; the kernel lets go of a killed one's."""
    path = loaders.cache_dir() / "locks" / f"{store_key(store_root)}.lock"
    Path(path.parent).mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing lets the lock go


def store_limit_exists() -> bool:
    """Whether the Prefect server has the ``convoice-store`` limit; says once when not."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(STORE_LIMIT)
        except ObjectNotFound:
            get_run_logger().info(
                "no %r concurrency limit on the Prefect server: commits are kept apart by a "
                "lock file on this machine (`convoice deploy` creates the limit, for workers "
                "on several machines)",
                STORE_LIMIT,
            )
            return False
    return True
