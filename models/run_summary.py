"""What a flow run did, in figures: per recording, per stage, per skip reason."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from convoice import cpu_clock
from convoice.models.registry import MatchDecision, SpeakerMatch
from convoice.records import Clip, ClipStatus, MediaItem, SkippedItem, SkipReason

STAGE_ORDER = (
    "expand", "download", "decode", "segment", "embed", "identify", "transcribe", "route", "commit",
)  # fmt: skip
"""The order stages are reported in (others follow, in the order they were first timed)."""

CRASH_CODES = frozenset({SkipReason.LABELLING_FAILED})
"""Skip reasons that are not an expected verdict on the item but a crash of the engine."""


class StageClock:
    """Time per named stage, summed over recordings.

    Stages that ran on workers in parallel are added with :meth:`add`, so with
    several workers the sum of the stages can exceed the run's wall time.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        """Count ``seconds`` spent in stage ``name`` elsewhere (on a worker, say)."""
        if seconds < 0:
            raise ValueError(f"a stage cannot take negative time: {name} {seconds}")
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def ordered(self) -> dict[str, float]:
        """The stages in :data:`STAGE_ORDER`, then any others."""
        known = [k for k in STAGE_ORDER if k in self.seconds]
        rest = [k for k in self.seconds if k not in STAGE_ORDER]
        return {k: self.seconds[k] for k in known + rest}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (its CPU too: :mod:`convoice.cpu_clock`)."""
        start = time.perf_counter()
        with cpu_clock.measure(name):
            try:
                yield
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass(frozen=True)
class RecordingOutcome:
    recording_id: str
    title: str
    duration: float
    clips: int
    kept_seconds: float
    review_clips: int
    review_seconds: float
    speakers: int
    new_speakers: int
    uncertain_speakers: int

    @classmethod
    def of(
        cls, item: MediaItem, duration: float, clips: list[Clip], matches: list[SpeakerMatch]
    ) -> RecordingOutcome:
        review = [c for c in clips if c.status == ClipStatus.REVIEW]
        used = {c.speaker_id for c in clips}
        used_matches = [m for m in matches if m.speaker_id in used]
        return cls(
            recording_id=item.recording_id,
            title=item.title,
            duration=duration,
            clips=len(clips),
            kept_seconds=sum(c.duration for c in clips),
            review_clips=len(review),
            review_seconds=sum(c.duration for c in review),
            speakers=len(used_matches),
            new_speakers=sum(m.decision == MatchDecision.NEW for m in used_matches),
            uncertain_speakers=sum(m.decision == MatchDecision.UNCERTAIN for m in used_matches),
        )

    def summary(self) -> str:
        return (
            f"{self.title}: {self.duration:.0f} s, {self.clips} clips ({self.kept_seconds:.0f} s), "
            f"{self.speakers} speakers ({self.new_speakers} new), {self.review_clips} to review"
        )


@dataclass
class IngestReport:
    run_id: str
    home: str
    recordings: list[RecordingOutcome] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    already_done: int = 0
    elsewhere: int = 0  # being labelled by another ingest into the store: left to it
    stopped: str = ""  # why the run stopped before its last item (a full disk), else ""
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    workers: list[str] = field(default_factory=list)  # processes that prepared recordings
    # (recording id, worker stage, start, end): when each ran, seconds since the epoch
    timeline: list[tuple[str, str, float, float]] = field(default_factory=list)

    def add(self, outcome: RecordingOutcome) -> None:
        self.recordings.append(outcome)

    def worked_on(self, worker: str) -> None:
        """Note that the process ``worker`` (host:pid) prepared a recording."""
        if worker not in self.workers:
            self.workers.append(worker)

    def ran(self, recording_id: str, spans: Sequence[tuple[str, float, float]]) -> None:
        """Note when ``recording_id``'s worker stages ran (``(stage, start, end)``)."""
        self.timeline.extend((recording_id, name, a, b) for name, a, b in spans)

    def skip(self, item: SkippedItem) -> None:
        self.skipped.append(item)

    def finish(self, wall: float, clock: StageClock) -> None:
        self.wall_seconds = wall
        self.stage_seconds = {k: round(v, 3) for k, v in clock.ordered().items()}

    @property
    def audio_seconds(self) -> float:
        return sum(r.duration for r in self.recordings)

    @property
    def kept_seconds(self) -> float:
        return sum(r.kept_seconds for r in self.recordings)

    @property
    def review_seconds(self) -> float:
        return sum(r.review_seconds for r in self.recordings)

    @property
    def clips(self) -> int:
        return sum(r.clips for r in self.recordings)

    @property
    def review_clips(self) -> int:
        return sum(r.review_clips for r in self.recordings)

    @property
    def skip_reasons(self) -> dict[str, int]:
        return dict(Counter(str(s.reason_code) for s in self.skipped))  # plain keys: printed

    @property
    def crashed(self) -> list[SkippedItem]:
        """Items the engine crashed on (a bug or a broken machine, not the item's fault)."""
        return [s for s in self.skipped if s.reason_code in CRASH_CODES]

    @property
    def exit_code(self) -> int:
        """0: every item labelled, already done or skipped for a reason; 1: something
        crashed; 3: the run stopped before its last item (out of disk space)."""
        if self.stopped:
            return 3
        return 1 if self.crashed else 0

    def failure(self) -> str:
        """Why the run is Failed (exit code 1 or 3), in one line; "" when it is not."""
        if self.stopped:
            return self.stopped
        if self.crashed:
            urls = ", ".join(s.url or s.source_url or "?" for s in self.crashed[:3])
            more = f" and {len(self.crashed) - 3} more" if len(self.crashed) > 3 else ""
            return f"the engine crashed on {len(self.crashed)} item(s): {urls}{more}"
        return ""

    def skipped_by_reason(self) -> dict[str, list[SkippedItem]]:
        """The skipped items grouped by reason code, the largest group first."""
        groups: dict[str, list[SkippedItem]] = {}
        for item in self.skipped:
            groups.setdefault(item.reason_code, []).append(item)
        return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))

    def summary(self) -> str:
        rtf = self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items())
        return (
            f"{len(self.recordings)} recordings labelled ({self.audio_seconds / 3600:.3f} h), "
            f"{self.already_done} already done, "
            + (f"{self.elsewhere} being labelled by another run, " if self.elsewhere else "")
            + f"{len(self.skipped)} skipped {self.skip_reasons}; "
            f"{self.clips} clips ({self.kept_seconds / 3600:.3f} h kept), "
            f"{self.review_clips} to review; wall {self.wall_seconds:.1f} s (RTF {rtf:.3f}); "
            f"{stages}" + (f"; {self.stopped}" if self.stopped else "")
        )

    def markdown(self) -> str:
        """The run as a Prefect artifact: what went in, what came out, what it cost."""
        rows = "\n".join(
            f"| {r.title[:50]} | {r.duration:.0f} | {r.clips} | {r.kept_seconds:.0f} | "
            f"{r.speakers} | {r.new_speakers} | {r.review_clips} |"
            for r in self.recordings
        )
        skips = "\n".join(
            f"| {s.url or s.source_url} | {s.reason_code} | {s.reason[:120]} |"
            for s in self.skipped
        )
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items())
        return (
            f"# Ingest run {self.run_id}\n\n{self.summary()}\n\n"
            "| recording | audio s | clips | kept s | speakers | new | to review |\n"
            f"|---|---|---|---|---|---|---|\n{rows}\n\n"
            f"## Skipped\n\n| item | reason | detail |\n|---|---|---|\n{skips}\n\n"
            f"## Time per stage\n\n{stages}\n\n"
            f"Prepared by {len(self.workers)} worker process(es): {', '.join(self.workers)}\n"
        )
