"""From speech activity to chunks, local speaker turns and clips (pure computation).

The engine does not slide the segmentation model over the whole file with a
1 s step (pyannote's default: every second of audio is processed ten times).
It plans chunks of at most 10 s whose boundaries fall in pauses that a voice
activity detector found, runs the model once per chunk, and so:

- processes each second of speech once and silence not at all;
- never splits a turn at a chunk boundary, so every clip boundary is a pause;
- keeps the model's local speaker labels consistent inside each chunk, which
  becomes a cannot-link constraint when local speakers are clustered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from convoice.records import FloatArray, Region, Samples

BoolArray = npt.NDArray[np.bool_]

ENVELOPE_HOP_S = 0.01  # the RMS envelope used to find quiet points has a 10 ms hop
CLIP_TIME_DECIMALS = 3  # clip regions are whole milliseconds (as clip rows and ids store them)


@dataclass(frozen=True)
class Chunk(Region):
    """A window of audio given to the segmentation model as one example."""

    index: int = 0


@dataclass(frozen=True)
class LocalTurn:
    """Speech of one local speaker of one chunk, with no other speaker active.

    ``pieces`` are the stretches of speech inside the turn; the gaps between
    them are pauses where nobody speaks, the only places a clip may be cut.
    """

    chunk: int
    local: int
    pieces: tuple[Region, ...]
    room_before: float = 0.0  # silence before the turn (until other speech or the chunk edge)
    room_after: float = 0.0

    @property
    def start(self) -> float:
        return self.pieces[0].start

    @property
    def end(self) -> float:
        return self.pieces[-1].end

    @property
    def speech(self) -> float:
        return sum(p.duration for p in self.pieces)

    @property
    def node(self) -> tuple[int, int]:
        return (self.chunk, self.local)


@dataclass(frozen=True)
class ChunkSegmentation:
    """The model's hard multilabel output for one chunk."""

    chunk: Chunk
    activity: BoolArray  # shape: (num_frames, num_local_speakers)
    frame_start: float  # time of frame 0's centre, relative to the chunk start
    frame_step: float
    together: FloatArray | None = None  # per frame and local speaker: it talks with another

    def frame_times(self) -> npt.NDArray[np.float64]:
        n = self.activity.shape[0]
        offsets = self.frame_step * np.arange(n, dtype=np.float64)
        return np.asarray(self.chunk.start + self.frame_start + offsets, dtype=np.float64)


def rms_envelope(samples: Samples, sample_rate: int, block_s: float = 600.0) -> FloatArray:
    """RMS energy per 10 ms frame, smoothed over 50 ms.

    The samples are read ``block_s`` seconds at a time (whole frames): the same
    figures as all at once, in memory that does not grow with the recording.
    """
    hop = int(sample_rate * ENVELOPE_HOP_S)
    n = len(samples) // hop
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    step = max(1, int(block_s * sample_rate) // hop) * hop
    parts: list[FloatArray] = []
    for offset in range(0, n * hop, step):
        block = np.asarray(samples[offset : min(offset + step, n * hop)], dtype=np.float32)
        frames = block.reshape(-1, hop)  # a view
        parts.append(np.sqrt(np.einsum("ij,ij->i", frames, frames) / hop))  # no squared copy
    rms = np.concatenate(parts)
    kernel = np.ones(5, dtype=np.float32) / 5
    return np.convolve(rms, kernel, mode="same").astype(np.float32)


def _quietest(envelope: FloatArray, start: float, end: float) -> float:
    lo, hi = int(start / ENVELOPE_HOP_S), int(end / ENVELOPE_HOP_S)
    if hi <= lo or lo >= len(envelope):
        return (start + end) / 2
    window = envelope[lo : min(hi, len(envelope))]
    return (lo + int(np.argmin(window))) * ENVELOPE_HOP_S


def _split_long(region: Region, max_s: float, envelope: FloatArray) -> list[Region]:
    """Split speech longer than ``max_s`` at its quietest points."""
    pieces: list[Region] = []
    start = region.start
    while region.end - start > max_s:
        cut = _quietest(envelope, start + 0.6 * max_s, start + max_s - 0.05)
        pieces.append(Region(start, cut))
        start = cut
    pieces.append(Region(start, region.end))
    return pieces


def plan_chunks(
    speech: list[Region],
    duration: float,
    envelope: FloatArray,
    max_s: float = 10.0,
    max_gap_s: float = 3.0,
    margin_s: float = 0.25,
) -> list[Chunk]:
    """Group speech regions into chunks of at most ``max_s`` seconds, cut in pauses.

    Consecutive regions share a chunk while it stays under ``max_s`` and the
    silence between them is under ``max_gap_s``. Each chunk gets up to
    ``margin_s`` of context on both sides, never past the middle of the pause
    it shares with its neighbours.
    """
    pieces = [
        p
        for r in sorted(speech, key=lambda r: r.start)
        for p in _split_long(r, max_s - 2 * margin_s, envelope)
    ]
    groups: list[list[float]] = []
    for piece in pieces:
        if (
            groups
            and piece.end - groups[-1][0] <= max_s - 2 * margin_s
            and piece.start - groups[-1][1] <= max_gap_s
        ):
            groups[-1][1] = piece.end
        else:
            groups.append([piece.start, piece.end])
    chunks: list[Chunk] = []
    for i, (start, end) in enumerate(groups):
        left = groups[i - 1][1] if i > 0 else 0.0
        right = groups[i + 1][0] if i + 1 < len(groups) else duration
        lo = max(start - margin_s, (left + start) / 2, 0.0)
        hi = min(end + margin_s, (end + right) / 2, duration)
        chunks.append(Chunk(lo, hi, index=i))
    return chunks


def _runs(mask: BoolArray) -> list[tuple[int, int]]:
    """Half-open index ranges where ``mask`` is true."""
    if not mask.any():
        return []
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def local_turns(seg: ChunkSegmentation, min_piece_s: float = 0.1) -> list[LocalTurn]:
    """Turns of each local speaker: exclusive speech, split where someone else talks."""
    act = seg.activity
    times = seg.frame_times()
    half = seg.frame_step / 2
    active = act.sum(axis=1)
    turns: list[LocalTurn] = []
    for k in range(act.shape[1]):
        exclusive = act[:, k] & (active == 1)
        others: BoolArray = np.asarray(np.delete(act, k, axis=1).any(axis=1), dtype=bool)
        groups: list[list[tuple[int, int]]] = []
        for a, b in _runs(exclusive):
            if (b - a) * seg.frame_step < min_piece_s:
                continue
            if groups and not others[groups[-1][-1][1] : a].any():
                groups[-1].append((a, b))  # only silence since the last piece: same turn
            else:
                groups.append([(a, b)])
        for runs in groups:
            first, last = runs[0][0], runs[-1][1]
            prev = np.flatnonzero(others[:first])
            nxt = np.flatnonzero(others[last:])
            before = times[prev[-1]] + half if len(prev) else seg.chunk.start
            after = times[last + nxt[0]] - half if len(nxt) else seg.chunk.end
            pieces = tuple(
                Region(float(times[a] - half), float(times[b - 1] + half)) for a, b in runs
            )
            turns.append(
                LocalTurn(
                    seg.chunk.index,
                    k,
                    pieces,
                    room_before=max(0.0, pieces[0].start - float(before)),
                    room_after=max(0.0, float(after) - pieces[-1].end),
                )
            )
    return sorted(turns, key=lambda t: t.start)


def talking_together(probs: FloatArray) -> FloatArray:
    """From multi-label probabilities (..., frames, speakers): per frame and local speaker,
    its probability times the likeliest other's (0 with a single local speaker)."""
    p = np.asarray(probs, dtype=np.float32)
    if p.shape[-1] < 2:
        return np.zeros_like(p)
    others = [np.delete(p, k, axis=-1).max(axis=-1) for k in range(p.shape[-1])]
    return p * np.stack(others, axis=-1)


def other_voice_together(seg: ChunkSegmentation, local: int, region: Region) -> float:
    """The model's mean probability, over ``region``'s frames, that another local speaker
    talks at the same time as ``local`` (``seg.together``; 0 without it): a second voice the
    hard decision left out, and not the model's doubt over which local label one voice is.

    The model often gives one voice's chunk a second local label at a steady 0.15-0.45
    (pyannote's powerset puts that on the classes of one speaker: "0 or 1 talks"); a second
    voice under this one lands on the classes of two ("0 and 1 talk"). Tuning half, seeds
    11-13 (session 26): single-voice clips over the bar 39 -> 15 (the plain mean of the other
    label's probability, at 0.09, read the doubt as a voice); see ``[clips]
    two_voice_probability``.
    """
    times = seg.frame_times()
    inside = (times >= region.start) & (times <= region.end)
    if not inside.any():
        return 0.0
    if seg.together is None:
        return 0.0
    return float(seg.together[inside, local].mean())


def overlap_regions(seg: ChunkSegmentation) -> list[Region]:
    """Stretches where two or more local speakers talk at once."""
    times = seg.frame_times()
    half = seg.frame_step / 2
    multi = seg.activity.sum(axis=1) >= 2
    return [Region(float(times[a] - half), float(times[b - 1] + half)) for a, b in _runs(multi)]


def speaker_regions(seg: ChunkSegmentation, local: int) -> list[Region]:
    """All speech of one local speaker, overlap included (for diarization output)."""
    times = seg.frame_times()
    half = seg.frame_step / 2
    runs = _runs(seg.activity[:, local])
    return [Region(float(times[a] - half), float(times[b - 1] + half)) for a, b in runs]


def clear_of_overlaps(
    clip: Region, overlaps: Sequence[Region], margin_s: float, min_s: float
) -> Region | None:
    """``clip`` trimmed clear of the detected overlaps at its ends, or None when it cannot be.

    A clip's ends are where a detected overlap ends or starts (its speech alone is between
    them), but the other voice often outlasts the detection by a few frames: an overlap that
    ends less than ``margin_s`` before the clip's start moves the start to ``margin_s`` past
    its end, one that starts less than ``margin_s`` after the clip's end moves the end to
    ``margin_s`` before its start. None when less than ``min_s`` would be left (the clip is
    then kept whole and its speaker label held: see :func:`convoice.models.diarize.assemble`).
    ``overlaps``: disjoint and sorted. ``margin_s`` 0: ``clip`` as it is.
    """
    if margin_s <= 0:
        return clip
    start, end = clip.start, clip.end
    for o in overlaps:
        if o.start >= end + margin_s:
            break
        if o.start < clip.start and o.end > clip.start - margin_s:
            start = max(start, o.end + margin_s)
        if o.end > clip.end and o.start < clip.end + margin_s:
            end = min(end, o.start - margin_s)
    if (start, end) == (clip.start, clip.end):
        return clip
    if end - start < min_s:
        return None
    return Region(round(start, CLIP_TIME_DECIMALS), round(end, CLIP_TIME_DECIMALS))


def cut_clips(
    turn: LocalTurn,
    min_s: float,
    max_s: float,
    min_pause_s: float,
    pad_s: float,
) -> list[Region]:
    """Cut a turn into clips of ``min_s``..``max_s`` seconds, only at pauses.

    Pieces separated by a pause of at least ``min_pause_s`` may be cut apart;
    shorter gaps are kept inside a clip. A stretch longer than ``max_s`` with
    no pause at all is dropped rather than cut through a word. Each clip is
    padded by up to ``pad_s`` of the silence around it.
    """
    # Merge pieces whose gap is too short to cut in.
    spans: list[Region] = []
    for piece in turn.pieces:
        if spans and piece.start - spans[-1].end < min_pause_s:
            spans[-1] = Region(spans[-1].start, piece.end)
        else:
            spans.append(piece)
    clips: list[Region] = []
    current: Region | None = None
    for span in spans:
        if current is not None and span.end - current.start <= max_s:
            current = Region(current.start, span.end)
            continue
        if current is not None and current.duration >= min_s:
            clips.append(current)
        current = span if span.duration <= max_s else None
    if current is not None and current.duration >= min_s:
        clips.append(current)
    return [pad_clip(c, turn, pad_s) for c in clips]


def pad_clip(clip: Region, turn: LocalTurn, pad_s: float) -> Region:
    """``clip`` with up to ``pad_s`` of the silence around it (half of a pause at most).

    Its ends are rounded to 1 ms, as a clip's row, id and released audio give them:
    the region embedded is then exactly the audio released.
    """
    before = [p.end for p in turn.pieces if p.end <= clip.start]
    after = [p.start for p in turn.pieces if p.start >= clip.end]
    lo_room = (clip.start - before[-1]) / 2 if before else turn.room_before / 2
    hi_room = (after[0] - clip.end) / 2 if after else turn.room_after / 2
    start = max(0.0, clip.start - min(pad_s, lo_room))
    end = clip.end + min(pad_s, hi_room)
    return Region(round(start, CLIP_TIME_DECIMALS), round(end, CLIP_TIME_DECIMALS))
