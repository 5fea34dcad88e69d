"""Cut clips where the language changes, so that no clip holds two languages.

A clip is cut from one single-speaker turn at pauses and grows up to
``[clips] max_s``, so it may hold two sentences in two languages: a speaker
who switches language, or an interviewer and a guest that diarization took
for one speaker. Transcribed in one language, the other sentence comes out
as wrong words. Here every clip with a sentence pause inside it (at least
:data:`SENTENCE_PAUSE_S` of silence) has each stretch between such pauses
encoded at its own length (Whisper's cheap ``short`` pass,
:mod:`convoice.models.language`), and the clip is cut at every pause where
two languages explain the stretches on either side at least
:data:`CHANGE_NATS` better (log-likelihood ratio) than one language does,
when both parts keep at least ``[clips] min_s``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import TYPE_CHECKING

from convoice.models.diarize import ClipRegion, Segmentation
from convoice.models.language import FLOOR, DetectOptions, Distribution, _detect
from convoice.models.segmentation import pad_clip
from convoice.records import Region, Samples

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SENTENCE_PAUSE_S = 0.3  # a pause this long may end a sentence: a language may change there
CHANGE_NATS = 2.0  # cut where two languages are this much likelier than one (e^2: 7.4 times)


def stretches(
    seg: Segmentation, clip: ClipRegion, pause_s: float = SENTENCE_PAUSE_S
) -> list[Region]:
    """The clip's speech between pauses of at least ``pause_s`` (its turn's pieces, merged)."""
    out: list[Region] = []
    for piece in seg.turns[clip.turn].pieces:
        start, end = max(piece.start, clip.region.start), min(piece.end, clip.region.end)
        if end <= start:
            continue
        if out and start - out[-1].end < pause_s:
            out[-1] = Region(out[-1].start, end)
        else:
            out.append(Region(start, end))
    return out


def change_nats(before: Distribution, after: Distribution) -> float:
    """How much likelier two languages are than one for two stretches (natural log ratio).

    ``log p(a | before) + log p(b | after)`` at their own best languages against
    ``log p(k | before) + log p(k | after)`` at the best single language ``k``.
    """

    def log(p: float) -> float:
        return math.log(max(p, FLOOR))

    two = log(max(before.values())) + log(max(after.values()))
    one = max(log(p) + log(after.get(k, 0.0)) for k, p in before.items())
    return two - one


def parts(cuts: list[bool], spans: list[Region], min_s: float) -> list[list[int]]:
    """Stretches grouped at the pauses where ``cuts[i]`` (between stretch i and i + 1) says.

    A part shorter than ``min_s`` (its first stretch's start to its last one's end)
    joins the part before it (the first part: the one after it).
    """
    runs: list[list[int]] = [[0]]
    for i in range(1, len(spans)):
        if cuts[i - 1]:
            runs.append([i])
        else:
            runs[-1].append(i)

    def length(run: list[int]) -> float:
        return spans[run[-1]].end - spans[run[0]].start

    merged: list[list[int]] = []
    for run in runs:
        if merged and (length(run) < min_s or length(merged[-1]) < min_s):
            merged[-1] += run
        else:
            merged.append(run)
    return merged


def cut_at_language_changes(
    model: WhisperModel,
    samples: Samples,
    seg: Segmentation,
    min_s: float,
    pad_s: float,
    options: DetectOptions,
    change_at: float = CHANGE_NATS,
) -> Segmentation:
    """``seg`` with every clip that holds two languages cut in two (or more) at the change."""
    todo = {k: s for k, c in enumerate(seg.clips) if len(s := stretches(seg, c)) > 1}
    if not todo:
        return seg
    flat = [(k, r) for k, spans in todo.items() for r in spans]
    dists = _detect(model, samples, [r for _, r in flat], options, padded=False)
    mine: dict[int, list[Distribution]] = {k: [] for k in todo}
    for (k, _), dist in zip(flat, dists, strict=True):
        mine[k].append(dist)
    clips: list[ClipRegion] = []
    for k, clip in enumerate(seg.clips):
        if k not in todo:
            clips.append(clip)
            continue
        spans = todo[k]
        cuts = [change_nats(a, b) >= change_at for a, b in itertools.pairwise(mine[k])]
        groups = parts(cuts, spans, min_s)
        if len(groups) == 1:
            clips.append(clip)
            continue
        turn = seg.turns[clip.turn]
        for group in groups:
            region = pad_clip(Region(spans[group[0]].start, spans[group[-1]].end), turn, pad_s)
            clips.append(dataclasses.replace(clip, region=region))
    return dataclasses.replace(seg, clips=clips)
