"""What the service keeps while it runs: results, batch jobs, request counts.

Everything here lives in memory. Results (synthesised audio, never uploads)
expire after ``[service] result_ttl_s``; a batch job keeps its zip until it
expires the same way.
"""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import uuid
import zipfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from convoice.media.audio import wav_bytes
from convoice.service.speak import SpeechResult


class RateLimiter:
    """At most ``per_minute`` requests per client address in any 60 s."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> float:
        """0.0 when allowed (and counted), else the seconds until the next request may come."""
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._seen.setdefault(client, deque())
            while seen and now - seen[0] >= 60.0:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return 60.0 - (now - seen[0])
            seen.append(now)
            return 0.0


def mp3_bytes(wav: bytes) -> bytes:
    """MP3 (LAME, VBR quality 4) of WAV bytes, through ffmpeg."""
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-f",
        "wav",
        "-i",
        "pipe:0",
        "-codec:a",
        "libmp3lame",
        "-q:a",
        "4",
        "-f",
        "mp3",
        "pipe:1",
    ]
    done = subprocess.run(cmd, input=wav, capture_output=True, check=False, timeout=120)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"ffmpeg could not encode mp3: {done.stderr.decode()[-300:]}")
    return done.stdout


class Results:
    """Synthesised results by id, in memory, each for ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: dict[str, SpeechResult] = {}
        self._lock = threading.Lock()

    def add(self, result: SpeechResult) -> str:
        key = uuid.uuid4().hex[:16]
        with self._lock:
            self._expire()
            self._items[key] = result
        return key

    def get(self, key: str) -> SpeechResult | None:
        with self._lock:
            self._expire()
            return self._items.get(key)

    def _expire(self) -> None:
        now = time.time()
        for key in [k for k, r in self._items.items() if now - r.created > self.ttl]:
            del self._items[key]


def audio_of(result: SpeechResult, fmt: str) -> bytes:
    wav = wav_bytes(result.speech.samples, result.speech.rate)
    return wav if fmt == "wav" else mp3_bytes(wav)


@dataclass
class Job:
    """A batch of texts being spoken in the background."""

    job_id: str
    total: int
    fmt: str
    status: str = "queued"  # queued | running | done
    done: int = 0
    failed: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    archive: bytes = b""

    def public(self) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "status": self.status,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "progress": round((self.done + self.failed) / self.total, 3),
            "items": self.items,
            "result": f"/v1/jobs/{self.job_id}/result.zip" if self.status == "done" else None,
        }


class Jobs:
    """Batch jobs run one at a time on a background thread; each item fails on its own."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._jobs: dict[str, Job] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="convoice-batch")

    def submit(
        self, items: list[dict[str, Any]], fmt: str, run: Callable[[dict[str, Any]], SpeechResult]
    ) -> Job:
        now = time.time()
        for key in [k for k, j in self._jobs.items() if now - j.created > self.ttl]:
            del self._jobs[key]
        job = Job(uuid.uuid4().hex[:16], len(items), fmt)
        self._jobs[job.job_id] = job
        self._pool.submit(self._run, job, items, run)
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def _run(
        self, job: Job, items: list[dict[str, Any]], run: Callable[[dict[str, Any]], SpeechResult]
    ) -> None:
        job.status = "running"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for index, item in enumerate(items, start=1):
                entry: dict[str, Any] = {"index": index, "voice": item.get("voice", "")}
                try:
                    result = run(item)
                    name = (
                        f"{index:03d}-{str(item.get('voice', 'voice')).replace(':', '_')}.{job.fmt}"
                    )
                    archive.writestr(name, audio_of(result, job.fmt))
                    entry.update(status="done", file=name, **result.public())
                    job.done += 1
                except Exception as err:  # one item's failure never stops the batch
                    entry.update(
                        status="failed",
                        error=str(err),
                        code=getattr(err, "code", type(err).__name__),
                    )
                    job.failed += 1
                job.items.append(entry)
            archive.writestr("results.json", json.dumps(job.items, indent=1, default=str))
        job.archive = buffer.getvalue()
        job.status = "done"

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
