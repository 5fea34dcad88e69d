"""Commits kept apart: the ``convoice-store`` limit, and a lock file on this machine.

``convoice deploy`` creates the ``convoice-store`` global concurrency limit with one
slot (the work queue of the same name runs one flow at a time); ingests, releases,
review pulls and re-labelling hold it while they write, so they never commit over
each other. A plain ``convoice ingest`` talks to a temporary Prefect server of its
own, which has no such limit (Prefect then lets ``concurrency`` pass). So every writer
also holds an exclusive ``flock`` on a lock file of the store (:func:`machine_lock`),
which keeps apart the writers of one machine whatever the server has (two ingests at
once used to clash at the registry: ``ConcurrentCommitError``, the recording skipped as
a crash), not workers on several machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
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
    """Hold the ``convoice-store`` limit (when ``locked``: the server has it, or the caller
    is a flow that always takes it; Prefect lets a missing one pass), then the store's lock
    file on this machine (:func:`machine_lock`, when ``store_root`` is given). Always in
    that order, so two writers never wait for each other's second lock."""
    with contextlib.ExitStack() as held:
        if locked:
            from prefect.concurrency.sync import concurrency

            held.enter_context(concurrency(STORE_LIMIT, occupy=1))
        if store_root:
            held.enter_context(machine_lock(store_root))
        yield


_local = threading.local()  # per thread: store key -> how deep this thread holds it


@contextlib.contextmanager
def machine_lock(store_root: str, purpose: str = "") -> Iterator[None]:
    """Hold the store's lock file (``<cache>/locks/<store key>.lock``) for the block, waiting
    for another process (or thread) that holds it; the kernel lets go of a killed one's.

    ``purpose``: a lock of its own for one kind of work on the store (``review-push``:
    ``<store key>.review-push.lock``), which does not keep the store's writers waiting.
    Re-entrant in one thread: a review pull inside a review sync that holds it already
    goes on (a second ``flock`` on a new descriptor would wait for itself).
    """
    key = store_key(store_root) + (f".{purpose}" if purpose else "")
    depth: dict[str, int] = _local.__dict__.setdefault("depth", {})
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    path = loaders.cache_dir() / "locks" / f"{key}.lock"
    Path(path.parent).mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        depth[key] = 1
        yield
    finally:
        depth.pop(key, None)
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
