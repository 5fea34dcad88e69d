"""Score labelled clips against a corpus whose truth is known (pure computation).

Inputs are plain records: clips as the store returns them (one dict per row)
and reference turns per recording. Outputs are the figures the benchmark
reports: cross-episode clustering (B-cubed F1, also for real people and
synthetic voices apart), speaker accuracy of auto-accepted clips, share of
speech auto-accepted and routed to review, WER, kept hours, calibration of
``speaker_confidence`` (expected calibration error and a reliability table)
and auto-accepted clips that hold two voices (:func:`main_voice_share`; the clips
under 90 % of their length in one voice, silence counted, are given apart).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convoice.models.clustering import b_cubed
from convoice.models.metrics import WerCount, one_to_one_mapping, standard_wer_count, wer_count
from convoice.records import SPEAKER_REASONS, ClipStatus

TWO_VOICE_PURITY = 0.9  # a clip whose main voice is less than this of its speech holds two voices
ECE_BINS = 10
FLOOR_DRAWS = 2000  # outcomes drawn per clip by :func:`ece_floor`


@dataclass(frozen=True)
class RefTurn:
    start: float
    end: float
    speaker: str
    text: str  # "" when unknown or not scored (a language WER is not computed for)


@dataclass(frozen=True)
class ReliabilityBin:
    """Clips whose confidence falls in [low, high): how sure, and how often right."""

    low: float
    high: float
    clips: int
    mean_confidence: float
    accuracy: float


def reliability(
    confidence: Sequence[float], right: Sequence[bool], bins: int = ECE_BINS
) -> list[ReliabilityBin]:
    """Equal-width confidence bins (the last one includes 1.0), empty bins left out."""
    if len(confidence) != len(right):
        raise ValueError("confidence and right must have the same length")
    out = []
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = [
            i for i, c in enumerate(confidence) if low <= c < high or (b == bins - 1 and c >= 1.0)
        ]
        if inside:
            mean = sum(confidence[i] for i in inside) / len(inside)
            acc = sum(bool(right[i]) for i in inside) / len(inside)
            out.append(ReliabilityBin(low, high, len(inside), mean, acc))
    return out


def expected_calibration_error(table: Sequence[ReliabilityBin]) -> float:
    """Clip-weighted mean gap between confidence and accuracy over the bins."""
    total = sum(b.clips for b in table)
    if not total:
        return 0.0
    return sum(b.clips * abs(b.accuracy - b.mean_confidence) for b in table) / total


def ece_floor(
    confidence: Sequence[float], bins: int = ECE_BINS, draws: int = FLOOR_DRAWS, seed: int = 0
) -> tuple[float, float, float]:
    """The ECE a perfectly calibrated score would show on these clips: its mean, 5th and
    95th percentile over ``draws`` sets of outcomes, each clip right with probability its
    ``confidence`` (a fixed ``seed``: the same clips give the same floor).

    The ECE of a few hundred clips is not zero even when every confidence is the true
    probability: each bin's share right scatters around its mean confidence. A measured ECE
    near the floor is as calibrated as these clips can show; the floor is a lower bound
    when errors come in groups (a recording speaker's clips are right or wrong together).
    """
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    if conf.size == 0:
        return 0.0, 0.0, 0.0
    edges = np.array([b / bins for b in range(bins)])  # the lows :func:`reliability` bins by
    index = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    outcomes = np.random.default_rng(seed).random((draws, conf.size)) < conf
    gaps = np.zeros(draws)
    for b in np.unique(index):
        inside = index == b
        gaps += np.abs(outcomes[:, inside].sum(axis=1) - conf[inside].sum())
    eces = gaps / conf.size  # sum over bins of clips * |accuracy - mean confidence|, / clips
    low, high = np.percentile(eces, [5, 95])
    return float(eces.mean()), float(low), float(high)


def b_cubed_by_group(
    truth: Sequence[str], predicted: Sequence[str], group: Sequence[str]
) -> dict[str, tuple[float, float, float]]:
    """B-cubed (P, R, F1) averaged over the items of each group, clusters taken whole.

    A real person merged with a synthetic voice lowers the real people's
    precision: the clusters are those of all items, only the average is per group.
    """
    if not len(truth) == len(predicted) == len(group):
        raise ValueError("truth, predicted and group must have the same length")
    size_p: dict[str, int] = defaultdict(int)
    size_t: dict[str, int] = defaultdict(int)
    both: dict[tuple[str, str], int] = defaultdict(int)
    for t, p in zip(truth, predicted, strict=True):
        size_p[p] += 1
        size_t[t] += 1
        both[(t, p)] += 1
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for t, p, g in zip(truth, predicted, group, strict=True):
        acc = sums[g]
        acc[0] += both[(t, p)] / size_p[p]
        acc[1] += both[(t, p)] / size_t[t]
        acc[2] += 1
    out = {}
    for g, (precision, recall, n) in sums.items():
        precision, recall = precision / n, recall / n
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[g] = (precision, recall, f1)
    return out


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Seconds that the stretches a0..a1 and b0..b1 share."""
    return max(0.0, min(a1, b1) - max(a0, b0))


def covering_clips(
    clips: Sequence[Mapping[str, Any]], start: float, end: float
) -> list[Mapping[str, Any]]:
    """The clips that cover the reference stretch start..end: each shares more than
    0.2 s of it and together they cover 80 % of it; empty when they do not."""
    mine = [c for c in clips if overlap(c["start"], c["end"], start, end) > 0.2]
    covered = sum(overlap(c["start"], c["end"], start, end) for c in mine)
    return mine if mine and covered >= 0.8 * (end - start) else []


ClipWords = tuple[float, Sequence[Mapping[str, Any]] | None]
"""A clip's start in its recording and its words (``word``, ``start``, ``end`` in the clip)."""


def words_heard(clips: Sequence[ClipWords], start: float, end: float, margin: float) -> list[str]:
    """The words of ``clips`` whose middle falls in start..end (give or take ``margin``),
    in time order."""
    words = []
    for clip_start, clip_words in clips:
        for w in clip_words or []:
            mid = clip_start + (w["start"] + w["end"]) / 2
            if start - margin <= mid <= end + margin:
                words.append((mid, w["word"]))
    return [w for _, w in sorted(words)]


def clip_truth(clip: Mapping[str, Any], turns: Sequence[RefTurn]) -> tuple[str, float]:
    """The reference speaker covering most of the clip, and its share of the clip's speech.

    The share is of the clip's length, or of all speakers' speech in it when they
    overlap (two people at once for the whole clip: 0.5).
    """
    cover: dict[str, float] = defaultdict(float)
    for t in turns:
        cover[t.speaker] += overlap(clip["start"], clip["end"], t.start, t.end)
    if not cover:
        return "", 0.0
    speaker = max(cover, key=lambda s: cover[s])
    return speaker, cover[speaker] / max(clip["end"] - clip["start"], sum(cover.values()), 1e-6)


def main_voice_share(clip: Mapping[str, Any], turns: Sequence[RefTurn]) -> float:
    """The main voice's share of the reference speech inside the clip (1.0: one voice).

    Unlike :func:`clip_truth`'s purity, silence inside the clip does not count: a
    1.2 s clip of one voice with 0.25 s of silence past its turn's end holds one
    voice (share 1.0, purity 0.8); two voices at once for the whole clip: 0.5.
    A clip no reference turn touches: 0.0.
    """
    cover: dict[str, float] = defaultdict(float)
    for t in turns:
        cover[t.speaker] += overlap(clip["start"], clip["end"], t.start, t.end)
    total = sum(cover.values())
    return max(cover.values()) / total if total > 0 else 0.0


def speaker_status(clip: Mapping[str, Any]) -> str:
    """The clip's speaker-label status; its ``status`` in rows written before per-kind ones."""
    return str(clip.get("speaker_status") or clip["status"])


def _turn_wer(turn: RefTurn, clips: Sequence[Mapping[str, Any]], standard: bool = True) -> WerCount:
    """The turn's WER on the words the clips heard inside it: scored as the field scores
    (``metrics.standard_wer_count``, English: the benchmark's reference texts are English),
    or with ``standard=False`` on the raw word forms (``metrics.wer_count``)."""
    heard = " ".join(
        words_heard([(c["start"], c["words"]) for c in clips], turn.start, turn.end, 0.25)
    )
    return standard_wer_count(turn.text, heard) if standard else wer_count(turn.text, heard)


def wer_by_status(
    clips: Sequence[Mapping[str, Any]],
    truth: Mapping[str, Sequence[RefTurn]],
    standard: bool = True,
) -> tuple[WerCount, WerCount]:
    """WER over reference turns covered only by accepted transcripts, and over all covered
    turns (rows written before per-kind statuses count by their ``status``); ``standard``
    as in :func:`_turn_wer`."""
    accepted, everything = WerCount(0, 0), WerCount(0, 0)
    by_rec: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in clips:
        by_rec[c["recording_id"]].append(c)
    for rid, turns in truth.items():
        for turn in turns:
            if not turn.text.strip():
                continue  # no reference text for this turn
            mine = covering_clips(by_rec[rid], turn.start, turn.end)
            if not mine:
                continue
            count = _turn_wer(turn, mine, standard)
            everything += count
            if all(
                (c.get("transcript_status") or c["status"]) == ClipStatus.ACCEPTED for c in mine
            ):
                accepted += count
    return accepted, everything


def judge(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[RefTurn]]
) -> tuple[list[Mapping[str, Any]], list[tuple[str, float]], list[bool]]:
    """The clips of ``truth``'s recordings, their (reference speaker, purity), and whether
    their speaker label is right: predicted ids map one to one onto reference speakers
    by the speech they share, across the whole corpus."""
    labelled = [c for c in clips if c["recording_id"] in truth]
    ref = [clip_truth(c, truth[c["recording_id"]]) for c in labelled]
    overlap: dict[tuple[str, str], float] = defaultdict(float)
    for c, (speaker, _) in zip(labelled, ref, strict=True):
        overlap[(c["speaker_id"], speaker)] += c["end"] - c["start"]
    mapping = one_to_one_mapping(overlap)
    right = [mapping.get(c["speaker_id"]) == r[0] for c, r in zip(labelled, ref, strict=True)]
    return labelled, ref, right


def score(
    clips: Sequence[Mapping[str, Any]],
    truth: Mapping[str, Sequence[RefTurn]],
    raw_seconds: float,
    real: frozenset[str] = frozenset(),
) -> dict[str, float]:
    """The benchmark's quality figures for one labelled corpus.

    ``real`` names the reference speakers that are real people: B-cubed is then
    also given for them and for the synthetic voices apart.
    """
    labelled, ref, right = judge(clips, truth)
    accepted = [i for i, c in enumerate(labelled) if speaker_status(c) == ClipStatus.ACCEPTED]
    both = [i for i, c in enumerate(labelled) if c["status"] == ClipStatus.ACCEPTED]
    seconds = [c["end"] - c["start"] for c in labelled]
    kept = sum(seconds)
    review = sum(
        s for s, c in zip(seconds, labelled, strict=True) if c["status"] == ClipStatus.REVIEW
    )
    _, _, f1 = b_cubed([r[0] for r in ref], [c["speaker_id"] for c in labelled])
    two = [main_voice_share(c, truth[c["recording_id"]]) < TWO_VOICE_PURITY for c in labelled]
    wer_acc, wer_all = wer_by_status(labelled, truth)
    raw_acc, raw_all = wer_by_status(labelled, truth, standard=False)
    out = {
        "clips": float(len(labelled)),
        "bcubed_f1_cross_episode": f1,
        "accepted_speaker_accuracy": sum(right[i] for i in accepted) / len(accepted)
        if accepted
        else 0.0,
        "accepted_share_of_speech": sum(seconds[i] for i in both) / kept if kept else 0.0,
        "speaker_accepted_share_of_speech": sum(seconds[i] for i in accepted) / kept
        if kept
        else 0.0,
        "review_share_of_speech": review / kept if kept else 0.0,
        "wer_accepted": wer_acc.wer,  # scored as the field scores: the figure the bar judges
        "wer_accepted_errors": float(wer_acc.errors),
        "wer_accepted_words": float(wer_acc.words),
        "wer_accepted_raw": raw_acc.wer,  # the raw word forms ("7" is not "seven")
        "wer_all_clips": wer_all.wer,
        "wer_all_clips_raw": raw_all.wer,
        "kept_over_raw": kept / raw_seconds if raw_seconds else 0.0,
        "clip_purity": sum(r[1] for r in ref) / len(ref) if ref else 0.0,
        "accepted_two_voice_clips": float(sum(two[i] for i in accepted)),
        "two_voice_clips": float(sum(two)),
        "accepted_impure_clips": float(sum(ref[i][1] < TWO_VOICE_PURITY for i in accepted)),
        "predicted_speakers": float(len({c["speaker_id"] for c in labelled})),
        "true_speakers": float(len({r[0] for r in ref})),
    }
    groups = ["real" if r[0] in real else "synthetic" for r in ref]
    by_group = b_cubed_by_group([r[0] for r in ref], [c["speaker_id"] for c in labelled], groups)
    for g in ("synthetic", "real"):
        if g in by_group and real:
            out[f"bcubed_f1_{g}"] = by_group[g][2]
    confidence, right_of = speaker_judgements(clips, truth)
    out["speaker_confidence_ece"] = expected_calibration_error(reliability(confidence, right_of))
    out["speaker_confidence_ece_floor"] = ece_floor(confidence)[0]
    text_table = transcript_reliability_of(clips, truth)
    out["transcript_confidence_ece"] = expected_calibration_error(text_table)
    out["transcript_judged_clips"] = float(sum(b.clips for b in text_table))
    return out


def transcript_reliability_of(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[RefTurn]]
) -> list[ReliabilityBin]:
    """The reliability table of ``transcript_confidence`` over the clips of ``truth``'s
    recordings whose transcript can be judged (:func:`transcript_right`; clip records without
    an id, as some tests make, are left out)."""
    labelled = [c for c in clips if c["recording_id"] in truth and "clip_id" in c]
    right = transcript_right(labelled, truth)
    pairs = [
        (float(c["transcript_confidence"]), right[c["clip_id"]])
        for c in labelled
        if c["clip_id"] in right and c.get("transcript_confidence") is not None
    ]
    return reliability([p[0] for p in pairs], [p[1] for p in pairs])


def speaker_judgements(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[RefTurn]]
) -> tuple[list[float], list[bool]]:
    """``speaker_confidence`` of every clip of ``truth``'s recordings that has one, and
    whether its speaker label is right (:func:`judge`)."""
    labelled, _, right = judge(clips, truth)
    pairs = [
        (float(c["speaker_confidence"]), bool(r))
        for c, r in zip(labelled, right, strict=True)
        if c.get("speaker_confidence") is not None
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def recording_wer(clips: Sequence[Mapping[str, Any]], texts: Mapping[str, str]) -> WerCount:
    """WER of every clip's words in time order against a whole-recording transcript."""
    total = WerCount(0, 0)
    for rid, text in texts.items():
        mine = sorted((c for c in clips if c["recording_id"] == rid), key=lambda c: c["start"])
        words = [w["word"] for c in mine for w in (c["words"] or [])]
        total += standard_wer_count(text, " ".join(words))
    return total


TRANSCRIPT_RIGHT_WER = 0.10
"""A transcript is right when the reference turns its clip covers have WER at most this."""


def transcript_right(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[RefTurn]]
) -> dict[str, bool]:
    """Per clip id: whether its transcript is right (clips without scored turns are left out).

    A reference turn is scored on all the clips that cover it; each of them is
    right only when every turn it helps cover is (a clip's words have no times
    in the reference, so a turn is the smallest unit that can be judged).
    """
    by_rec: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for c in clips:
        by_rec[c["recording_id"]].append(c)
    out: dict[str, bool] = {}
    for rid, turns in truth.items():
        for turn in turns:
            if not turn.text.strip():
                continue
            mine = covering_clips(by_rec[rid], turn.start, turn.end)
            if not mine:
                continue
            ok = _turn_wer(turn, mine).wer <= TRANSCRIPT_RIGHT_WER
            for c in mine:
                out[c["clip_id"]] = out.get(c["clip_id"], True) and ok
    return out


@dataclass(frozen=True)
class ReviewRow:
    """One line of the review table: what went to review, and how right the machine was."""

    what: str  # "speaker", "transcript", "clip" or "reason:<name>"
    review_share: float  # of the speech of the judged clips
    accepted_share: float  # of that speech auto-accepted (for a label kind; else 0)
    accepted_right: float | None  # labels right among those accepted (None: none judged)
    review_right: float | None  # labels right among those sent to review


def review_table(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[RefTurn]]
) -> list[ReviewRow]:
    """Review share next to precision, per label kind and per reason (speech-weighted shares;
    a reason's rightness is its kind's: speaker labels for speaker reasons, else transcripts)."""

    labelled, _, right = judge(clips, truth)
    text_ok = transcript_right(labelled, truth)
    seconds = [float(c["end"]) - float(c["start"]) for c in labelled]
    total = sum(seconds) or 1.0
    spk_ok = {c["clip_id"]: ok for c, ok in zip(labelled, right, strict=True)}

    def row(
        what: str, review: list[bool], ok: Mapping[str, bool], accepted: list[bool]
    ) -> ReviewRow:
        def rate(mask: list[bool]) -> float | None:
            judged = [
                ok[c["clip_id"]]
                for c, m in zip(labelled, mask, strict=True)
                if m and c["clip_id"] in ok
            ]
            return sum(judged) / len(judged) if judged else None

        share = sum(s for s, m in zip(seconds, review, strict=True) if m) / total
        acc = sum(s for s, m in zip(seconds, accepted, strict=True) if m) / total
        return ReviewRow(what, share, acc, rate(accepted), rate(review))

    out = []
    for kind, ok in (("speaker", spk_ok), ("transcript", text_ok)):
        status = [str(c.get(f"{kind}_status") or c["status"]) for c in labelled]
        out.append(
            row(
                kind,
                [s == ClipStatus.REVIEW for s in status],
                ok,
                [s == ClipStatus.ACCEPTED for s in status],
            )
        )
    both = [c["status"] == ClipStatus.REVIEW for c in labelled]
    out.append(row("clip", both, spk_ok, [c["status"] == ClipStatus.ACCEPTED for c in labelled]))
    reasons = sorted({r for c in labelled for r in c.get("review_reasons") or []})
    for reason in reasons:
        flagged = [reason in (c.get("review_reasons") or []) for c in labelled]
        ok = spk_ok if reason in SPEAKER_REASONS else text_ok
        out.append(row(f"reason:{reason}", flagged, ok, [False] * len(labelled)))
    return out


@dataclass(frozen=True)
class ConditionRow:
    """The speaker labels of one recording condition (a channel: studio, telephone, noise)."""

    condition: str
    clips: int
    speech_share: float  # of the speech of all judged clips
    right: float  # speaker labels right among this condition's clips
    accepted_share: float  # of this condition's speech, speaker label auto-accepted
    accepted_right: float | None  # right among those accepted (None: none accepted)
    review_confidence: float | None  # mean speaker_confidence of the rest (None: no rest)
    review_right: float | None  # right among the rest: beside the line above, calibration


def condition_table(
    clips: Sequence[Mapping[str, Any]],
    truth: Mapping[str, Sequence[RefTurn]],
    condition_of: Mapping[str, str],
) -> list[ConditionRow]:
    """Speaker labels per recording condition (``condition_of``: recording id -> condition),
    judged as :func:`judge` judges them across the whole corpus; a recording without a
    condition is left out. Where the engine's labels and its confidence fail by channel."""
    labelled, _, right = judge(clips, truth)
    seconds = [float(c["end"]) - float(c["start"]) for c in labelled]
    total = sum(seconds) or 1.0
    groups: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(labelled):
        if c["recording_id"] in condition_of:
            groups[condition_of[c["recording_id"]]].append(i)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    out = []
    for condition in sorted(groups):
        mine = groups[condition]
        speech = sum(seconds[i] for i in mine)
        sure = [speaker_status(labelled[i]) == ClipStatus.ACCEPTED for i in mine]
        accepted = [i for i, ok in zip(mine, sure, strict=True) if ok]
        rest = [i for i, ok in zip(mine, sure, strict=True) if not ok]
        out.append(
            ConditionRow(
                condition,
                len(mine),
                speech / total,
                sum(right[i] for i in mine) / len(mine),
                sum(seconds[i] for i in accepted) / speech if speech else 0.0,
                mean([float(right[i]) for i in accepted]),
                mean([float(labelled[i].get("speaker_confidence") or 0.0) for i in rest]),
                mean([float(right[i]) for i in rest]),
            )
        )
    return out
