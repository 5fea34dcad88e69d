"""What review decisions do to the labels and the speaker registry: pure computation.

:func:`plan_pull` turns the annotations read from Label Studio and the store's
current state into everything a pull writes: label rows (never one already
written), speaker merges, the relabelling of a merged speaker's clips, and the
registry updates of confirmed clips.

A confirmed clip strengthens its speaker: its embedding is added to that
speaker's sum unless ingest counted it there already (ingest leaves unsure
clips out), so a speaker's sum stays the sum of its clips; a clip the machine
had counted for another speaker (or that a person rejected) is taken out.
What each clip contributes is kept per clip (a :class:`Contribution`), so
pulling again applies only differences and a second pull changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from convoice.models.pitch import pitch_range
from convoice.records import (
    ClipStatus,
    Contribution,
    FloatArray,
    LabelSource,
    Merge,
    ReviewDecision,
    ReviewReason,
    Speaker,
    StoredClip,
    StoredLabel,
    canonical,
)
from convoice.review.annotations import (
    decision_labels,
    new_speaker_id,
    parse_all,
    utc_iso,
)
from convoice.review.layout import NEW_SPEAKER

LabelKey = tuple[str, str, str, str, str]  # clip_id, field, value, task_id, labelled_at


@dataclass
class Delta:
    vector: FloatArray
    n: int = 0
    duration: float = 0.0


@dataclass
class PullPlan:
    """Everything one pull writes, in the order it writes it."""

    decisions: list[ReviewDecision] = field(default_factory=list)
    skipped: list[tuple[int, int, str]] = field(default_factory=list)
    already_applied: int = 0
    labels: list[StoredLabel] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    removed_speakers: list[str] = field(default_factory=list)
    speakers: list[Speaker] = field(default_factory=list)  # to upsert (new ones included)
    new_speakers: list[str] = field(default_factory=list)
    contributions: list[Contribution] = field(default_factory=list)  # changed ones only


def choose_kept(a: Speaker, b: Speaker) -> tuple[Speaker, Speaker]:
    """(kept, merged): the named one, else the one with more clips, the older, the smaller id."""
    first, second = sorted(
        (a, b), key=lambda s: (0 if s.name else 1, -s.n_clips, s.first_seen, s.speaker_id)
    )
    return first, second


def merge_into(kept: Speaker, merged: Speaker, at: str) -> Speaker:
    """``kept`` with ``merged``'s sums added (the registry keeps sums, so this is exact)."""
    # the pitch range of both (a person's merge may join voices the veto keeps apart)
    low, high = pitch_range([*kept.pitch, *merged.pitch])
    return replace(
        kept,
        vector_sum=(kept.vector_sum + merged.vector_sum).astype(np.float32),
        n_clips=kept.n_clips + merged.n_clips,
        total_duration=kept.total_duration + merged.total_duration,
        n_recordings=kept.n_recordings + merged.n_recordings,
        first_seen=min(kept.first_seen, merged.first_seen),
        updated_at=at,
        label_source=LabelSource.HUMAN,
        name=kept.name or merged.name,
        f0_low_hz=low,
        f0_high_hz=high,
    )


def machine_absorbed(clip: StoredClip) -> bool:
    """Whether the machine counted the clip in its speaker's sum.

    Ingest and re-labelling record it in ``extra["absorbed"]``
    (:func:`convoice.models.labelling.absorbed_clips`); rows written before
    that (or read without the ``extra`` column) fall back to the reasons (sure
    clips only).
    """
    if not clip.speaker_id:
        return False
    extra = clip.extra_values
    if "absorbed" in extra:
        return bool(extra["absorbed"])
    unsure = {ReviewReason.UNCERTAIN_SPEAKER, ReviewReason.UNCERTAIN_IDENTITY}
    return not unsure & set(clip.review_reasons)


def latest_values(labels: Iterable[StoredLabel]) -> dict[tuple[str, str], StoredLabel]:
    """The latest label per (clip_id, field): by labelled_at, then by order written."""
    latest: dict[tuple[str, str], StoredLabel] = {}
    for label in labels:
        key = (label.clip_id, label.field)
        if key not in latest or label.labelled_at >= latest[key].labelled_at:
            latest[key] = label
    return latest


def desired_contributions(
    machine: Mapping[str, StoredClip],
    latest: Mapping[tuple[str, str], StoredLabel],
    merges: Mapping[str, str],
) -> dict[str, Contribution]:
    """What every clip a person accepted or rejected should contribute to the registry."""
    out: dict[str, Contribution] = {}
    for (clip_id, name), label in latest.items():
        clip = machine.get(clip_id)
        if name != "status" or clip is None:
            continue
        absorbed = canonical(clip.speaker_id, merges) if machine_absorbed(clip) else ""
        if label.value == ClipStatus.REJECTED:
            plus = ""
        elif label.value == ClipStatus.ACCEPTED:
            human = latest.get((clip_id, "speaker_id"))
            plus = canonical((human.value or "") if human else clip.speaker_id, merges)
        else:
            continue
        if absorbed == plus:  # the machine counted it already: the sum stays a sum of clips
            continue
        minus = absorbed
        if plus or minus:
            out[clip_id] = Contribution(clip_id, plus, minus, float(clip.duration))
    return out


def registry_deltas(
    applied: Mapping[str, Contribution],
    desired: Mapping[str, Contribution],
    embeddings: Mapping[str, FloatArray],
    merges: Mapping[str, str],
) -> tuple[dict[str, Delta], list[Contribution]]:
    """Per-speaker changes that take the registry from ``applied`` to ``desired``.

    Also returns the contributions that changed (an empty one where a clip no
    longer contributes), which is what the store must record.
    """
    deltas: dict[str, Delta] = {}
    changed: list[Contribution] = []

    def add(speaker: str, sign: int, emb: FloatArray, duration: float) -> None:
        delta = deltas.setdefault(speaker, Delta(np.zeros_like(emb)))
        delta.vector = (delta.vector + sign * emb).astype(np.float32)
        delta.n += sign
        delta.duration += sign * duration

    for clip_id in sorted(set(applied) | set(desired)):
        old = applied.get(clip_id)
        if old is not None:
            old = replace(old, plus=canonical(old.plus, merges), minus=canonical(old.minus, merges))
        new = desired.get(clip_id)
        if old == new or clip_id not in embeddings:
            continue
        emb = np.asarray(embeddings[clip_id], dtype=np.float32)
        for sign, c in ((-1, old), (1, new)):
            if c is None:
                continue
            if c.plus:
                add(c.plus, sign, emb, c.duration)
            if c.minus:
                add(c.minus, -sign, emb, c.duration)
        changed.append(new or Contribution(clip_id))
    kept = {s: d for s, d in deltas.items() if d.n or float(np.abs(d.vector).max()) > 1e-6}
    return kept, changed


def apply_deltas(
    speakers: Mapping[str, Speaker], deltas: Mapping[str, Delta], at: str
) -> tuple[list[Speaker], list[str]]:
    """The speakers ``deltas`` change (created when new), and the ids of the new ones."""
    touched, created = [], []
    for speaker_id, delta in sorted(deltas.items()):
        speaker = speakers.get(speaker_id)
        if speaker is None:
            speaker = Speaker(
                speaker_id,
                np.zeros_like(delta.vector),
                0,
                0.0,
                1,
                at,
                at,
                label_source=LabelSource.HUMAN,
            )
            created.append(speaker_id)
        touched.append(
            replace(
                speaker,
                vector_sum=(speaker.vector_sum + delta.vector).astype(np.float32),
                n_clips=max(0, speaker.n_clips + delta.n),
                total_duration=max(0.0, speaker.total_duration + delta.duration),
                updated_at=at,
            )
        )
    return touched, created


def widen_by_people(
    touched: Sequence[Speaker],
    contributions: Sequence[Contribution],
    machine: Mapping[str, StoredClip],
    merges: Mapping[str, str],
) -> None:
    """Widen each touched speaker's pitch range by the clips people's labels now add to it
    (``f0_hz`` of the clip rows): a clip a person puts under a speaker is that speaker's,
    so the pitch veto never keeps its voice from it. A range never narrows (a wider range
    vetoes less)."""
    by_id = {s.speaker_id: s for s in touched}
    for c in contributions:
        row = machine.get(c.clip_id)
        speaker = by_id.get(canonical(c.plus, merges)) if c.plus else None
        if speaker is not None and row is not None and row.f0_hz is not None:
            speaker.widen_pitch([row.f0_hz])


@dataclass
class _Registry:
    """The registry as a pull changes it: speakers, merges so far, who was touched."""

    speakers: dict[str, Speaker]
    merged_to: dict[str, str]  # merged id -> kept id (consolidation aliases included)
    meta: dict[str, Merge]  # merged id -> the merge that removed it
    at: str
    changed: set[str] = field(default_factory=set)

    def merge(self, kept: Speaker, gone: Speaker, merge: Merge | None = None) -> None:
        """``gone`` lives on as ``kept`` (``merge``: a new one, recorded in the map)."""
        self.speakers.pop(gone.speaker_id)
        self.speakers[kept.speaker_id] = merge_into(kept, gone, self.at)
        if merge is not None:
            self.merged_to[gone.speaker_id], self.meta[gone.speaker_id] = kept.speaker_id, merge
        self.changed.discard(gone.speaker_id)
        self.changed.add(kept.speaker_id)


def plan_pull(
    tasks: Sequence[Mapping[str, Any]],
    users: Mapping[int, str],
    machine: Mapping[str, StoredClip],
    labels: Sequence[StoredLabel],
    speakers: Mapping[str, Speaker],
    merges: Sequence[Merge],
    applied_annotations: set[tuple[int, str]],
    applied_contributions: Mapping[str, Contribution],
    at: str,
    aliases: Mapping[str, str] | None = None,
) -> PullPlan:
    """Everything a pull must write, from what Label Studio returned and the store holds.

    ``machine`` maps clip ids to the machine's clip records (speaker_id,
    review_reasons, duration, the embeddings are read); ``labels`` are every
    ``labels`` row written so far.
    ``aliases``: ids consolidation folded into others (old -> new). A task
    pushed before may offer one; the choice counts for the surviving id, and
    no label row is written for them (readers follow the map).
    """
    plan = PullPlan()
    aliases = dict(aliases or {})
    merged_to = {**aliases, **{m.merged: m.kept for m in merges}}
    registry = _Registry(dict(speakers), merged_to, {m.merged: m for m in merges}, at)
    known = set(speakers) | set(merged_to)
    plan.decisions, plan.skipped, plan.already_applied, _ = parse_all(
        tasks, known, users, applied_annotations
    )
    for m in merges:  # recorded by a pull killed before its registry commit: finish it
        kept_id = canonical(m.kept, merged_to)
        if m.merged in registry.speakers and kept_id in registry.speakers:
            registry.merge(registry.speakers[kept_id], registry.speakers[m.merged])
            plan.removed_speakers.append(m.merged)
    new_rows = _decide(plan, registry)
    new_rows += _follow_merges(machine, latest_values([*labels, *new_rows]), aliases, registry)
    plan.labels = unwritten(new_rows, labels)
    latest = latest_values([*labels, *plan.labels])
    desired = desired_contributions(machine, latest, merged_to)
    _update_registry(plan, registry, machine, desired, applied_contributions)
    return plan


def _decide(plan: PullPlan, registry: _Registry) -> list[StoredLabel]:
    """The label rows of ``plan``'s decisions; the merges they ask for, made in ``registry``."""
    merged_to, rows = registry.merged_to, []
    for d in plan.decisions:
        chosen = new_speaker_id(d.clip_id) if d.speaker == NEW_SPEAKER else d.speaker
        speaker = canonical(chosen, merged_to)
        rows += decision_labels(replace(d, speaker=speaker))
        other = canonical(d.same_as, merged_to) if d.same_as else ""
        here = registry.speakers
        if not other or other == speaker or speaker not in here or other not in here:
            continue
        kept, gone = choose_kept(here[speaker], here[other])
        merge = Merge(gone.speaker_id, kept.speaker_id, d.annotator, d.at, str(d.task_id))
        registry.merge(kept, gone, merge)
        plan.merges.append(merge)
        plan.removed_speakers.append(gone.speaker_id)
    return rows


def _follow_merges(
    machine: Mapping[str, StoredClip],
    latest: Mapping[tuple[str, str], StoredLabel],
    aliases: Mapping[str, str],
    registry: _Registry,
) -> list[StoredLabel]:
    """Label rows that move every clip of a merged speaker to the kept one."""
    rows = []
    for clip_id, clip in machine.items():
        label = latest.get((clip_id, "speaker_id"))
        current = canonical((label.value if label else clip.speaker_id) or "", aliases)
        target = canonical(current, registry.merged_to)
        if target != current and current in registry.meta:
            merge = registry.meta[current]
            when = max(merge.merged_at, label.labelled_at) if label else merge.merged_at
            rows.append(
                StoredLabel(
                    clip_id=clip_id,
                    field="speaker_id",
                    value=target,
                    labelled_by=merge.merged_by,
                    labelled_at=when,
                    task_id=merge.task_id,
                )
            )
    return rows


def _update_registry(
    plan: PullPlan,
    registry: _Registry,
    machine: Mapping[str, StoredClip],
    desired: Mapping[str, Contribution],
    applied_contributions: Mapping[str, Contribution],
) -> None:
    """The registry speakers, contributions and new speakers ``plan`` writes."""
    first = next(iter(registry.speakers.values()), None)
    dim = None if first is None else len(first.vector_sum)  # the registry's embedding space
    embeddings = {
        c: np.asarray(machine[c].identity_vector(dim), dtype=np.float32)
        for c in set(desired) | set(applied_contributions)
        if c in machine
    }
    deltas, plan.contributions = registry_deltas(
        applied_contributions, desired, embeddings, registry.merged_to
    )
    touched, plan.new_speakers = apply_deltas(registry.speakers, deltas, registry.at)
    widen_by_people(touched, plan.contributions, machine, registry.merged_to)
    registry.speakers.update({s.speaker_id: s for s in touched})
    registry.changed |= {s.speaker_id for s in touched}
    here = registry.speakers
    plan.speakers = [here[s] for s in sorted(registry.changed) if s in here]


def label_key(label: StoredLabel) -> LabelKey:
    return (
        label.clip_id,
        label.field,
        label.value or "",
        str(label.task_id or ""),
        utc_iso(label.labelled_at),
    )


def unwritten(labels: Sequence[StoredLabel], written: Sequence[StoredLabel]) -> list[StoredLabel]:
    """``labels`` minus those already written (same clip, field, value, task and time)."""
    seen = {label_key(r) for r in written}
    out = []
    for label in labels:
        key = label_key(label)
        if key not in seen:
            seen.add(key)
            out.append(label)
    return out
