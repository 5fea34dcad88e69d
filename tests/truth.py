"""Annotators simulated from the ground truth of a generated corpus (tests and demo rounds).

A person in Label Studio hears the clip and picks who speaks; here the corpus'
truth turns decide. The decision is written the way a review pull writes it:
rows of the ``labels`` table (speaker and status), by a named annotator.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from convoice.models.evaluation import RefTurn, clip_truth
from convoice.review.layout import review_queue
from convoice.storage import Store
from convoice.storage.rows import clip_records
from convoice.synth.samples import Corpus


def voice_of_clips(store: Store, corpus: Corpus) -> dict[str, str]:
    """clip id -> the voice that speaks most of it ("" when nobody)."""
    by_name = {Path(ep.media_path).name: ep for ep in corpus.episodes}
    urls = {r["recording_id"]: r["url"] for r in store.recordings().to_pylist()}
    out: dict[str, str] = {}
    for clip in store.materialized_clips().to_pylist():
        episode = by_name.get(Path(urls[clip["recording_id"]]).name)
        if episode is None:
            continue
        turns = [RefTurn(t.start, t.end, t.speaker, t.text) for t in episode.turns]
        out[clip["clip_id"]] = clip_truth(clip, turns)[0]
    return out


def annotate_review_queue(
    store: Store,
    corpus: Corpus,
    annotator: str = "annotator@test",
    limit: int | None = None,
    audit_share: float = 0.0,
) -> dict[str, int]:
    """Label the review queue (and audit sample) from the truth; returns counts by decision."""
    voices = voice_of_clips(store, corpus)
    clips = clip_records(store.materialized_clips())
    accepted: dict[str, Counter[str]] = {}
    for c in clips:
        if c.status == "accepted" and c.clip_id in voices:
            accepted.setdefault(voices[c.clip_id], Counter())[c.speaker_id] += 1
    rows: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    queue = [c for c in review_queue(clips, audit_share=audit_share) if c.clip_id in voices]
    for clip in queue[:limit]:
        voice = voices[clip.clip_id]
        known = accepted.get(voice)
        speaker = known.most_common(1)[0][0] if known else clip.speaker_id
        base = {"clip_id": clip.clip_id, "labelled_by": annotator}
        rows.append({**base, "field": "speaker_id", "value": speaker})
        rows.append({**base, "field": "status", "value": "accepted"})
        counts["changed" if speaker != clip.speaker_id else "confirmed"] += 1
    store.add_labels(rows)
    return dict(counts)
