"""Score labelled clips against a corpus whose truth is known (pure computation).

Inputs are plain records: clips as the store returns them (one dict per row)
and reference turns per recording. Outputs are the figures the benchmark
reports: cross-episode clustering (B-cubed F1), speaker accuracy of
auto-accepted clips, share of speech routed to review, WER, kept hours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from convoice.models.clustering import b_cubed
from convoice.models.metrics import WerCount, one_to_one_mapping, wer_count

PURE = 0.9
"""A clip whose main voice covers less than this share of it holds two voices."""


@dataclass(frozen=True)
class RefTurn:
    start: float
    end: float
    speaker: str
    text: str


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def clip_truth(clip: Mapping[str, Any], turns: Sequence[RefTurn]) -> tuple[str, float]:
    """The reference speaker covering most of the clip, and the share it covers."""
    cover: dict[str, float] = defaultdict(float)
    for t in turns:
        cover[t.speaker] += _overlap(clip["start"], clip["end"], t.start, t.end)
    if not cover:
        return "", 0.0
    speaker = max(cover, key=lambda s: cover[s])
    return speaker, cover[speaker] / max(clip["end"] - clip["start"], 1e-6)


def _turn_wer(turn: RefTurn, clips: Sequence[Mapping[str, Any]]) -> WerCount:
    words = []
    for c in clips:
        for w in c["words"] or []:
            mid = c["start"] + (w["start"] + w["end"]) / 2
            if turn.start - 0.25 <= mid <= turn.end + 0.25:
                words.append((mid, w["word"]))
    return wer_count(turn.text, " ".join(w for _, w in sorted(words)))


def wer_by_status(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[RefTurn]]
) -> tuple[WerCount, WerCount]:
    """WER over reference turns covered only by accepted clips, and over all covered turns."""
    accepted, everything = WerCount(0, 0), WerCount(0, 0)
    by_rec: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in clips:
        by_rec[c["recording_id"]].append(c)
    for rid, turns in truth.items():
        for turn in turns:
            mine = [
                c for c in by_rec[rid] if _overlap(c["start"], c["end"], turn.start, turn.end) > 0.2
            ]
            covered = sum(_overlap(c["start"], c["end"], turn.start, turn.end) for c in mine)
            if not mine or covered < 0.8 * (turn.end - turn.start):
                continue
            count = _turn_wer(turn, mine)
            everything += count
            if all(c["status"] == "accepted" for c in mine):
                accepted += count
    return accepted, everything


def score(
    clips: Sequence[Mapping[str, Any]],
    truth: Mapping[str, Sequence[RefTurn]],
    raw_seconds: float,
) -> dict[str, float]:
    """The benchmark's quality figures for one labelled corpus."""
    labelled = [c for c in clips if c["recording_id"] in truth]
    ref = [clip_truth(c, truth[c["recording_id"]]) for c in labelled]
    overlap: dict[tuple[str, str], float] = defaultdict(float)
    for c, (speaker, _) in zip(labelled, ref, strict=True):
        overlap[(c["speaker_id"], speaker)] += c["end"] - c["start"]
    mapping = one_to_one_mapping(overlap)
    accepted = [(c, r) for c, r in zip(labelled, ref, strict=True) if c["status"] == "accepted"]
    correct = sum(mapping.get(c["speaker_id"]) == r[0] for c, r in accepted)
    kept = sum(c["end"] - c["start"] for c in labelled)
    review = sum(c["end"] - c["start"] for c in labelled if c["status"] == "review")
    _, _, f1 = b_cubed([r[0] for r in ref], [c["speaker_id"] for c in labelled])
    wer_acc, wer_all = wer_by_status(labelled, truth)
    return {
        "clips": float(len(labelled)),
        "bcubed_f1_cross_episode": f1,
        "accepted_speaker_accuracy": correct / len(accepted) if accepted else 0.0,
        "review_share_of_speech": review / kept if kept else 0.0,
        "wer_accepted": wer_acc.wer,
        "wer_all_clips": wer_all.wer,
        "kept_over_raw": kept / raw_seconds if raw_seconds else 0.0,
        "clip_purity": sum(r[1] for r in ref) / len(ref) if ref else 0.0,
        "accepted_impure_clips": float(sum(r[1] < PURE for _, r in accepted)),
        "predicted_speakers": float(len({c["speaker_id"] for c in labelled})),
        "true_speakers": float(len({r[0] for r in ref})),
    }
