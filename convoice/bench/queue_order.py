"""How well each review queue puts the wrong labels first (``convoice bench``).

People's time goes to the head of the queue (``convoice review push`` sends at most
``[review] max_tasks_per_push`` tasks, least sure first). For each label kind, the
clips whose label of that kind is in review (and can be judged) are put in the order of
the clip queue (most wrong labels expected first) and in the order of that kind's own queue
(``--queue speaker`` / ``transcript``: its probability alone,
:func:`convoice.review.layout.review_queue`); the figure is how many of their wrong labels
the first quarter of each order holds. A random order holds about a quarter of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from convoice.models import evaluation
from convoice.models.evaluation import RefTurn
from convoice.records import StoredClip
from convoice.review.layout import QueueKind, review_queue


@dataclass(frozen=True)
class QueueOrder:
    """One label kind's clips in review, and the wrong labels each order puts first."""

    label: str  # "speaker" or "transcript"
    in_review: int  # clips with this label in review that the benchmark can judge
    wrong: int  # of them, wrong labels
    head: int  # the first quarter: this many clips
    wrong_in_head_clip_queue: int  # wrong labels among the head, in the clip queue's order
    wrong_in_head_own_queue: int  # ... in the order of this kind's own queue


def queue_order(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[RefTurn]]
) -> list[QueueOrder]:
    """The speaker and transcript rows for ``clips`` (rows of the clips table) judged
    against ``truth`` (speaker labels: :func:`~convoice.models.evaluation.judge`; transcripts:
    :func:`~convoice.models.evaluation.transcript_right`, where they can be judged)."""
    labelled, _, right = evaluation.judge(clips, truth)
    rightness = {
        QueueKind.SPEAKER: {c["clip_id"]: ok for c, ok in zip(labelled, right, strict=True)},
        QueueKind.TRANSCRIPT: evaluation.transcript_right(labelled, truth),
    }
    records = [StoredClip.from_row(c) for c in labelled]
    out = []
    for kind, ok in rightness.items():
        own = [r.clip_id for r in review_queue(records, kind=kind) if r.clip_id in ok]
        judged = set(own)
        by_clip = [r.clip_id for r in review_queue(records) if r.clip_id in judged]
        head = len(own) // 4
        out.append(
            QueueOrder(
                label=str(kind),
                in_review=len(own),
                wrong=sum(not ok[c] for c in own),
                head=head,
                wrong_in_head_clip_queue=sum(not ok[c] for c in by_clip[:head]),
                wrong_in_head_own_queue=sum(not ok[c] for c in own[:head]),
            )
        )
    return out


def render_queue_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The table ``convoice bench`` prints (rows as :class:`QueueOrder` dicts)."""
    if not rows:
        return []
    lines = [
        "review queues: wrong labels in the first quarter of the clips with that label in",
        "review, in the clip queue's order (most wrong labels expected) and in the label's own",
        "queue (`review push --queue speaker|transcript`; a random order: about a quarter):",
        "  label        in review  wrong  first quarter  clip queue  own queue",
    ]
    for r in rows:
        lines.append(
            f"  {r['label']:<11} {r['in_review']:10d} {r['wrong']:6d} {r['head']:14d} "
            f"{r['wrong_in_head_clip_queue']:11d} {r['wrong_in_head_own_queue']:10d}"
        )
    return lines
