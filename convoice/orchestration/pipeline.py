"""One recording ahead of Whisper (threads runner): Whisper's turns, in item order.

With ``[runner] pipeline = true`` (the default) the threads runner runs two
``prepare-recording`` tasks at a time: while recording N is transcribed,
recording N+1 is downloaded, decoded, segmented, embedded and its own speakers
clustered in the other thread, its networks on one thread while Whisper runs
(:func:`convoice.engines.budget.network_threads`; CTranslate2 keeps its own).
Transcription itself takes turns in item order (:class:`WhisperTurns`): one
Whisper at a time, recording N before N+1, so N+1 waits with its clips (at
most one recording ahead of the one transcribed) and N is ready for the flow's
in-order step (identify against the registry, route, commit) first.

N+1's compute (decode, segment, embed) also waits for N to reach Whisper
(:meth:`WhisperTurns.prepare_after`), its download does not: two recordings
prepared side by side would each take half the cores and delay the first
transcription; one after the other, recording 1 reaches Whisper as soon as it
can, and N+1 fills the cycles Whisper leaves idle.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from convoice.engines import budget


class WhisperTurns:
    """Transcription turns in the order recordings were queued; one at a time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._busy = False

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
            self._cond.wait_for(lambda: self._may_prepare(recording_id))

    def _may_prepare(self, recording_id: str) -> bool:
        if recording_id not in self._queue:
            return True
        ahead = self._queue.index(recording_id)
        return ahead == 0 or (ahead == 1 and self._busy)

    @contextlib.contextmanager
    def turn(self, recording_id: str) -> Iterator[None]:
        """Wait for ``recording_id``'s turn, run the block as Whisper's, then pass the turn on.

        A recording that was never queued (Dask workers, pipeline off) does not wait.
        """
        with self._cond:
            if recording_id in self._queue:
                self._cond.wait_for(lambda: not self._busy and self._queue[0] == recording_id)
                self._busy = True
                self._cond.notify_all()  # the next recording may prepare now
        try:
            with budget.whisper_running():
                yield
        finally:
            with self._cond:
                self._busy = False
            self.leave(recording_id)


TURNS = WhisperTurns()
"""The process's turns (the flow queues each recording as it submits it)."""
