"""Recordings ahead of Whisper (threads runner): Whisper's turns, in item order.

With ``[runner] pipeline = true`` (the default) the threads runner runs three
``prepare-recording`` tasks at a time: while recordings N and N+1 are
transcribed side by side (:data:`SLOTS`; their Whisper calls share the model's
workers, :mod:`convoice.engines.lanes`), recording N+2 is downloaded, decoded,
segmented, embedded and its own speakers clustered in the third thread, its
networks on one thread while Whisper runs
(:func:`convoice.engines.budget.network_threads`; CTranslate2 keeps its own).
Transcription itself takes turns in item order (:class:`WhisperTurns`): a
recording starts only once every recording queued before it has, so N+2 waits
with its clips (at most one recording ahead of those transcribed) and the
flow's in-order step (identify against the registry, route, commit) gets N first.

N+2's compute (decode, segment, embed) also waits for N and N+1 to reach
Whisper (:meth:`WhisperTurns.prepare_after`), its download does not: recordings
prepared side by side would each take part of the cores and delay the first
transcriptions; this way recording 1 reaches Whisper as soon as it can.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from convoice.engines import budget, lanes

SLOTS = lanes.WORKERS
"""Recordings transcribed at once: one Whisper call each keeps a core of its own busy, where
one recording's calls alone leave much of the second idle (README "Where the time goes")."""


class WhisperTurns:
    """Transcription turns in the order recordings were queued; ``slots`` at a time."""

    def __init__(self, slots: int = SLOTS) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._busy: set[str] = set()
        self._alone = False  # a recording transcribed alone holds every slot

    def queue(self, recording_id: str) -> None:
        """Give ``recording_id`` the next turn after those queued before it."""
        with self._cond:
            self._queue.append(recording_id)

    def leave(self, recording_id: str) -> None:
        """Give up ``recording_id``'s turn (done, or failed before it came)."""
        with self._cond:
            if recording_id in self._queue:
                self._queue.remove(recording_id)
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget every queued turn (a run that stopped early)."""
        with self._cond:
            self._queue.clear()
            self._cond.notify_all()

    def prepare_after(self, recording_id: str) -> None:
        """Wait until every recording queued before ``recording_id`` is transcribing or done.

        A recording that was never queued (Dask workers, pipeline off) does not wait.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._ahead_started(recording_id))

    def _ahead_started(self, recording_id: str) -> bool:
        """Whether every recording queued before ``recording_id`` is transcribing (the done
        ones have left the queue); True for one never queued."""
        if recording_id not in self._queue:
            return True
        return all(r in self._busy for r in self._queue[: self._queue.index(recording_id)])

    def _may_start(self, recording_id: str, alone: bool) -> bool:
        free = not self._busy if alone else len(self._busy) < self.slots
        return free and not self._alone and self._ahead_started(recording_id)

    @contextlib.contextmanager
    def turn(self, recording_id: str, alone: bool = False) -> Iterator[None]:
        """Wait for ``recording_id``'s turn, run the block as Whisper's, then pass the turn on.

        ``alone``: no other recording is transcribed meanwhile (a long one,
        :func:`convoice.engines.lanes.alone`: memory). A recording that was never queued
        (Dask workers, pipeline off) does not wait.
        """
        with self._cond:
            if recording_id in self._queue:
                self._cond.wait_for(lambda: self._may_start(recording_id, alone))
                self._busy.add(recording_id)
                self._alone = alone
                self._cond.notify_all()  # the next recording may prepare now
        try:
            with budget.whisper_running():
                yield
        finally:
            with self._cond:
                self._busy.discard(recording_id)
                if not self._busy:
                    self._alone = False
            self.leave(recording_id)


TURNS = WhisperTurns()
"""The process's turns (the flow queues each recording as it submits it)."""
