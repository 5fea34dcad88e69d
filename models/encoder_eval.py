"""Is a speaker encoder better than another? Scores on the people-labelled held-out clips.

Three figures, all computed the same way for the current and the candidate
encoder in one run:

- equal error rate of speaker verification over every pair of held-out clips;
- B-cubed F1 of the identities the engine would give the held-out clips
  (a replay of the labelling with that encoder, :mod:`convoice.models.relabel`)
  against the identities people gave them;
- the share of the clips (and of their speech) the replay would send to review, and
  the share of the judged clips whose speaker label it accepts that are right
  (its precision at ``[routing] target_precision``).

Which clips judge: a stable share of the clips people labelled
(:func:`judged`, ``[encoder] judge_share``, 30 % by default); the rest of
people's labels are trained on, with the clips the machine is sure of.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from convoice.models.clustering import b_cubed
from convoice.models.ge2e import FloatArray, all_pairs, equal_error_rate
from convoice.records import ClipStatus, ReleaseClip, ReleaseSplit

TIE = 1e-9


@dataclass(frozen=True)
class EncoderMetrics:
    eer: float
    bcubed_f1: float
    review_share: float  # of all clips
    review_speech_share: float  # of all clip seconds
    n_eval_clips: int
    n_eval_speakers: int
    n_target_trials: int
    n_nontarget_trials: int
    accepted_right: float = 1.0  # judged clips whose speaker label is accepted: share right
    accepted_judged: int = 0  # how many judged clips had their speaker label accepted
    speaker_review_speech_share: float = 0.0  # of the seconds: clips with a speaker reason

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    def line(self) -> str:
        return (
            f"EER {self.eer:.4f}, B-cubed F1 {self.bcubed_f1:.4f}, review {self.review_share:.3f} "
            f"of clips ({self.review_speech_share:.3f} of speech; for the speaker "
            f"{self.speaker_review_speech_share:.3f}), accepted speaker labels right "
            f"{self.accepted_right:.3f} ({self.accepted_judged} clips); on {self.n_eval_clips} "
            f"held-out clips of {self.n_eval_speakers} speakers"
        )


def score(
    eval_embeddings: FloatArray,
    eval_truth: Sequence[str],
    eval_predicted: Sequence[str],
    review: tuple[float, float],
    accepted: Sequence[bool] = (),
    speaker_review: float = 0.0,
) -> EncoderMetrics:
    """Metrics of one encoder: held-out embeddings and labels, and its replay's review shares.

    ``accepted``: per judged clip, whether the replay accepted its speaker label.
    """
    trials = all_pairs(eval_embeddings, eval_truth)
    _, _, f1 = b_cubed(list(eval_truth), list(eval_predicted))
    right = [t == p for t, p, a in zip(eval_truth, eval_predicted, accepted, strict=False) if a]
    return EncoderMetrics(
        eer=equal_error_rate(trials),
        bcubed_f1=f1,
        review_share=review[0],
        review_speech_share=review[1],
        n_eval_clips=len(eval_truth),
        n_eval_speakers=len(set(eval_truth)),
        n_target_trials=trials.n_target,
        n_nontarget_trials=trials.n_nontarget,
        accepted_right=sum(right) / len(right) if right else 1.0,
        accepted_judged=len(right),
        speaker_review_speech_share=speaker_review,
    )


def is_better(
    candidate: EncoderMetrics,
    current: EncoderMetrics,
    min_gain: float = 0.0,
    target_precision: float = 0.995,
) -> tuple[bool, str]:
    """Promote the candidate? Never when it routes worse; then lower EER, higher F1, less review.

    Routing first: a candidate that sends a larger share of speech to review
    for its speaker label (the label kind an encoder routes; transcripts route
    on their own), or whose accepted speaker labels are right less often than the current's
    (or than ``target_precision``, whichever is lower), is not promoted,
    whatever its EER. Then a candidate whose EER is lower by more than
    ``min_gain`` wins unless its B-cubed F1 drops by more than 0.01; on equal
    EER, the next figure decides.
    """
    if worse := routes_worse(candidate, current, target_precision):
        return False, worse
    d_eer = current.eer - candidate.eer
    d_f1 = candidate.bcubed_f1 - current.bcubed_f1
    d_review = current.review_share - candidate.review_share
    if d_eer > min_gain + TIE:
        if d_f1 < -0.01:
            return False, f"EER better by {d_eer:.4f} but B-cubed F1 worse by {-d_f1:.4f}"
        return True, f"EER better by {d_eer:.4f}"
    if abs(d_eer) <= max(min_gain, TIE):
        if d_f1 > TIE:
            return True, f"same EER, B-cubed F1 better by {d_f1:.4f}"
        if abs(d_f1) <= TIE and d_review > TIE:
            return True, f"same EER and F1, review share lower by {d_review:.4f}"
        return False, "no figure better than the current encoder's"
    return False, f"EER worse by {-d_eer:.4f}"


def routes_worse(
    candidate: EncoderMetrics, current: EncoderMetrics, target_precision: float
) -> str:
    """Why the candidate routes worse than the current encoder ("" when it does not)."""
    d_review = candidate.speaker_review_speech_share - current.speaker_review_speech_share
    if d_review > TIE:
        return f"share of speech whose speaker label goes to review higher by {d_review:.4f}"
    floor = min(current.accepted_right, target_precision)
    if candidate.accepted_right < floor - TIE:
        return (
            f"accepted speaker labels right {candidate.accepted_right:.3f} of "
            f"{candidate.accepted_judged} judged clips, below {floor:.3f}"
        )
    return ""


def judged(clip_id: str, share: float) -> bool:
    """Whether a clip people labelled is kept to judge encoders (never trained on).

    Stable: the same clip id is judged in every round and on every machine (the
    first 8 bytes of its SHA-1, as a fraction of 2**64, below ``share``).
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"judge_share must be between 0 and 1, got {share}")
    digest = hashlib.sha1(clip_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def _people_labelled(clip: ReleaseClip) -> bool:
    """A clip a person labelled with a usable speaker (released ``split`` ``heldout``)."""
    return bool(
        clip.split == ReleaseSplit.HELDOUT
        and clip.status != ClipStatus.REJECTED
        and clip.speaker_id
    )


def _machine_sure(clip: ReleaseClip, min_confidence: float) -> bool:
    """A clip of the ``train`` split whose speaker the machine accepted, confident enough."""
    return bool(
        clip.split == ReleaseSplit.TRAIN
        and (clip.speaker_status or clip.status) == ClipStatus.ACCEPTED
        and clip.speaker_id
        and float(clip.speaker_confidence or 0.0) >= min_confidence
    )


def training_rows(
    clips: Sequence[ReleaseClip],
    min_confidence: float,
    min_clips: int,
    judge_share: float = 1.0,
) -> list[int]:
    """Indices of the release's clips to train on.

    The machine's sure clips (``train`` split, accepted, speaker confidence at
    least ``min_confidence``) and the clips people labelled that are not judged
    (:func:`judged` with ``judge_share``; 1.0: none, as before people's labels
    were split). Speakers with fewer than ``min_clips`` such clips are left out.
    """
    chosen = [
        i
        for i, c in enumerate(clips)
        if _machine_sure(c, min_confidence)
        or (_people_labelled(c) and not judged(c.clip_id, judge_share))
    ]
    counts = Counter(clips[i].speaker_id for i in chosen)
    return [i for i in chosen if counts[clips[i].speaker_id] >= min_clips]


def evaluation_rows(clips: Sequence[ReleaseClip], judge_share: float = 1.0) -> list[int]:
    """Indices of the clips that judge encoders: people's labels (not rejected), judged share."""
    return [
        i for i, c in enumerate(clips) if _people_labelled(c) and judged(c.clip_id, judge_share)
    ]
