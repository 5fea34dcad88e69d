"""One BLAS thread count at a time: for the product that needs one, and the others.

OpenBLAS's thread count is the process's, not a thread's. Whisper's features
run their mel product on one BLAS thread (:mod:`convoice.engines.whisper_features`);
while the threads runner prepares the next recording beside Whisper
(:mod:`convoice.orchestration.pipeline`), a product in that other thread (the
speaker encoder's mel spectrogram) would otherwise sometimes run on one thread
and sometimes on two, and OpenBLAS splits float32 products differently on each
(the last bit, 1.5e-8): its embeddings would depend on the timing. Both hold
:func:`blas_threads`' lock, so neither sees the other's setting.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.RLock()


@functools.cache
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # scans the loaded BLAS libraries once per process


@contextlib.contextmanager
def blas_threads(limit: int | None = None) -> Iterator[None]:
    """Run the block alone among BLAS users that ask, on ``limit`` BLAS threads (None: as set)."""
    with _lock:
        if limit is None:
            yield
            return
        with _controller().limit(limits=limit, user_api="blas"):
            yield
