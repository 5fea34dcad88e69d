"""Review tasks out, as pure computation: the queue, the interface, one task per clip.

Which clips need a person (:func:`review_queue`, most uncertain first), the
labeling interface (:func:`label_config`) and one task per clip with the
machine's prediction (:func:`task_payload`), the speakers offered and the clip
each is heard by (:func:`reference_clips`), and what a push and a pull report.
Annotations coming back are parsed in :mod:`convoice.review.annotations`; what
decisions do to the speaker registry lives in :mod:`convoice.review.decisions`.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from convoice.records import ClipStatus, LabelStatus, ReviewVerdict, StoredClip

NEW_SPEAKER = "__new__"
UNKNOWN_SPEAKER = "__unknown__"
QUALITY_FLAGS = ("overlap", "bad_audio", "music")
MAX_SPEAKER_CHOICES = 24  # a larger registry offers the closest speakers to the clip
MAX_REFERENCES = 8  # reference clips to hear per task: the closest candidates
REFERENCE_MIN_S, REFERENCE_MAX_S = 2.0, 6.0  # a reference clip's length (longer ones are cut)

# Names of the controls in the labeling interface (results carry them as from_name).
REFERENCE = "reference"  # the Audio of each candidate's clip: reference_0, reference_1, ...
AUDIO, CLIP, SPEAKER, SAME_AS, TRANSCRIPT, QUALITY, DECISION = (
    "audio",
    "clip",
    "speaker",
    "same_as",
    "transcript",
    "quality",
    "decision",
)


@dataclass(frozen=True)
class SpeakerOption:
    """A speaker an annotator can pick for a clip."""

    speaker_id: str
    name: str = ""
    similarity: float = float("nan")  # cosine of the clip to the speaker's centroid
    n_clips: int = 0
    reference: str = ""  # URL of a short clean clip of the speaker ("" when it has none yet)


@dataclass(frozen=True)
class Reference:
    """The clip a speaker is heard by in review tasks, and the part of it to play."""

    speaker_id: str
    clip_id: str
    recording_id: str
    audio_uri: str  # the clip's own audio (a store key)
    duration: float  # what is played: the clip, cut to REFERENCE_MAX_S
    confidence: float


def reference_clips(rows: Sequence[StoredClip]) -> dict[str, Reference]:
    """Per speaker, the clip to hear it by: its most confident accepted clip of 2-6 s.

    ``rows`` are clip rows as read (people's labels applied). A clip a person
    accepted counts as sure (confidence 1); ties go to the clip closest to
    4 s, then to the smaller clip id. A speaker whose accepted clips are all
    longer is heard by the first 6 s of its best one; one with none has none.
    """
    best: dict[str, tuple[tuple[float, float, float, str], Reference]] = {}
    for row in rows:
        speaker = str(row.speaker_id or "")
        duration = float(row.duration or 0.0)
        if not speaker or row.status != ClipStatus.ACCEPTED:
            continue
        if duration < REFERENCE_MIN_S or not row.audio_uri:
            continue
        confidence = float(row.speaker_confidence or 0.0)
        fits = 0.0 if duration <= REFERENCE_MAX_S else 1.0
        key = (fits, -confidence, abs(duration - 4.0), str(row.clip_id))
        if speaker not in best or key < best[speaker][0]:
            played = min(duration, REFERENCE_MAX_S)
            ref = Reference(
                speaker, str(row.clip_id), str(row.recording_id), str(row.audio_uri),
                played, confidence,
            )  # fmt: skip
            best[speaker] = (key, ref)
    return {speaker: ref for speaker, (_, ref) in best.items()}


@dataclass
class PushReport:
    """What one push did."""

    url: str
    project_id: int | None = None
    queue: str = "clip"  # which queue was pushed (:class:`QueueKind`)
    # clips in the review queue (human labels applied): those whose status is review, then
    # the audit sample of accepted clips (:func:`review_queue`), ``audit`` of them
    needing_review: int = 0
    audit: int = 0
    already_in_project: int = 0
    pushed: int = 0
    remaining: int = 0  # still to push (limit reached or the server failed)
    task_ids: list[int] = field(default_factory=list)
    error: str = ""

    def summary(self) -> str:
        text = (
            f"{self.pushed} tasks pushed to project {self.project_id or '?'} at {self.url}; "
            f"{self.already_in_project} already there, {self.remaining} still to push "
            f"({self.needing_review} clips need review"
            + ("" if self.queue == QueueKind.CLIP else f" of their {self.queue} label")
            + (f", {self.audit} of them accepted ones in the audit sample" if self.audit else "")
            + ")"
        )
        return text + (f"; ERROR: {self.error}" if self.error else "")


@dataclass
class PullReport:
    """What one pull did."""

    url: str
    project_id: int | None = None
    tasks_read: int = 0
    annotations_read: int = 0
    annotations_applied: int = 0
    already_applied: int = 0
    labels_applied: int = 0
    skipped: list[tuple[int, int, str]] = field(default_factory=list)  # task, annotation, why
    merges: list[tuple[str, str]] = field(default_factory=list)  # (merged, kept)
    new_speakers: list[str] = field(default_factory=list)
    speakers_updated: int = 0
    error: str = ""

    def summary(self) -> str:
        text = (
            f"{self.tasks_read} annotated tasks read ({self.annotations_read} annotations): "
            f"{self.annotations_applied} applied, {self.already_applied} applied before, "
            f"{len(self.skipped)} skipped; {self.labels_applied} labels written, "
            f"{len(self.merges)} speaker merges, {len(self.new_speakers)} new speakers, "
            f"{self.speakers_updated} registry speakers updated"
        )
        return text + (f"; ERROR: {self.error}" if self.error else "")


# -- push --------------------------------------------------------------------


def uncertainty_score(
    speaker_confidence: float | None, transcript_confidence: float | None
) -> float:
    """0..1, how sure the machine is of the whole clip: the product of its two confidences
    (a task's prediction score in Label Studio)."""
    return _unit(speaker_confidence) * _unit(transcript_confidence)


def _unit(probability: float | None) -> float:
    """A stored probability held to 0..1 (None: 0)."""
    return float(np.clip(float(probability or 0.0), 0.0, 1.0))


def model_version(pipeline_version: str | None, models_json: str | None) -> str:
    """``convoice-0.1.0+1a2b3c4d``: the pipeline version and a hash of the models used."""
    models = json.loads(models_json) if models_json else {}
    digest = hashlib.sha1(json.dumps(models, sort_keys=True).encode()).hexdigest()[:8]
    return f"{pipeline_version or 'unknown'}+{digest}"


def in_audit_sample(clip_id: str, share: float) -> bool:
    """Whether an accepted clip belongs to the audit sample (a stable ``share`` of clip ids)."""
    if share <= 0:
        return False
    bucket = int(hashlib.sha1(f"audit\x1f{clip_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < share


class QueueKind(StrEnum):
    """Which labels a review queue holds, and by which probability it puts them in order
    (``[review] queue``, ``convoice review push --queue``)."""

    CLIP = "clip"  # every clip with a label in review, most wrong labels expected first
    SPEAKER = "speaker"  # clips whose speaker label is in review, least sure speaker first
    TRANSCRIPT = "transcript"  # clips whose transcript is in review, least sure transcript first

    @classmethod
    def parse(cls, value: str) -> QueueKind:
        """The kind named ``value``; a ValueError that lists the kinds otherwise."""
        try:
            return cls(value)
        except ValueError:
            kinds = ", ".join(k.value for k in cls)
            raise ValueError(f"review queue {value!r}: must be one of {kinds}") from None


def _label_status(row: StoredClip, kind: QueueKind) -> str:
    """Where the label ``kind`` of a clip stands (rows written before per-kind statuses: as
    the clip's own status)."""
    own = row.speaker_status if kind == QueueKind.SPEAKER else row.transcript_status
    if kind == QueueKind.CLIP or own is None:
        return str(row.status)
    return str(own)


def _label_probability(row: StoredClip, kind: QueueKind) -> float:
    """How sure the machine is of a clip's speaker label (SPEAKER) or transcript (else)."""
    return _unit(row.speaker_confidence if kind == QueueKind.SPEAKER else row.transcript_confidence)


def expected_wrong_labels(row: StoredClip) -> float:
    """How many wrong labels a person is expected to find in a clip: the chances that its
    labels in review are wrong, added (each label's probability of being right, 0..1)."""
    return sum(
        (
            1.0 - _label_probability(row, kind)
            for kind in (QueueKind.SPEAKER, QueueKind.TRANSCRIPT)
            if _label_status(row, kind) == LabelStatus.REVIEW
        ),
        0.0,
    )


def _sort_key(row: StoredClip, kind: QueueKind) -> float:
    """A clip's place in the queue ``kind`` (lower: sooner)."""
    if kind == QueueKind.CLIP:
        return -expected_wrong_labels(row)
    return _label_probability(row, kind)


def audit_count(queue: Sequence[StoredClip], kind: QueueKind = QueueKind.CLIP) -> int:
    """How many clips of a :func:`review_queue` of ``kind`` are its audit sample (their label
    of that kind, or both for CLIP, accepted by the machine)."""
    return sum(_label_status(r, kind) == LabelStatus.ACCEPTED for r in queue)


def review_queue(
    rows: Sequence[StoredClip],
    exclude: set[str] | frozenset[str] = frozenset(),
    audit_share: float = 0.0,
    kind: QueueKind = QueueKind.CLIP,
) -> list[StoredClip]:
    """Clip rows that need a person and are not in ``exclude``, most uncertain first.

    ``kind`` CLIP: every clip with a label in review, the clip in which a person is expected
    to find the most wrong labels first (:func:`expected_wrong_labels`). SPEAKER
    (TRANSCRIPT): the clips whose speaker label (transcript) is in review, ordered by that
    label's probability alone, for a team that reviews one kind of label. (Until session 49
    the clip queue went by the product of both probabilities, which puts a clip with a
    doubtful transcript and a fair speaker label before one with a doubtful speaker: on the
    tuning half's nine stores, the first quarter of the speaker labels in review held 105
    of their 373 wrong ones in that order, 132 by expected wrong labels and 157 in the
    speaker queue; their transcripts 258, 256 and 258 of 794.)
    Ties go to the clip with more reasons, then to the clip id (a stable order).
    After them come the audit sample: a stable random ``audit_share`` of the
    clips whose label (of the kind; CLIP: both) the machine accepted and no person has
    looked at. People's verdicts on those measure how right the accepted labels are,
    without the bias of the review queue (which holds only the hard clips), and join the
    held-out evaluation set.
    """
    wanted = [
        r
        for r in rows
        if r.status == ClipStatus.REVIEW
        and _label_status(r, kind) == LabelStatus.REVIEW
        and r.clip_id not in exclude
    ]
    audit = [
        r
        for r in rows
        if _label_status(r, kind) == LabelStatus.ACCEPTED
        and r.status != ClipStatus.REJECTED
        and not r.labelled_by
        and r.clip_id not in exclude
        and in_audit_sample(r.clip_id, audit_share)
    ]
    return sorted(
        wanted, key=lambda r: (_sort_key(r, kind), -len(r.review_reasons or ()), r.clip_id)
    ) + sorted(audit, key=lambda r: r.clip_id)


@dataclass(frozen=True)
class QueueSize:
    """What one review queue holds (``convoice review status``)."""

    queue: str  # a QueueKind
    clips: int  # clips with the queue's label (CLIP: any label) in review
    speech_s: float  # their speech
    expected_wrong: float  # labels a person is expected to find wrong in them
    audit: int  # machine-accepted clips the audit sample adds


def queue_sizes(rows: Sequence[StoredClip], audit_share: float = 0.0) -> list[QueueSize]:
    """Each queue of :class:`QueueKind` as a push would send it now, in numbers."""

    def wrong(r: StoredClip, kind: QueueKind) -> float:
        if kind == QueueKind.CLIP:
            return expected_wrong_labels(r)
        return 1.0 - _label_probability(r, kind)

    out = []
    for kind in QueueKind:
        queue = review_queue(rows, audit_share=audit_share, kind=kind)
        audit = audit_count(queue, kind)
        wanted = queue[: len(queue) - audit]
        out.append(
            QueueSize(
                queue=str(kind),
                clips=len(wanted),
                speech_s=sum(float(r.end) - float(r.start) for r in wanted),
                expected_wrong=sum(wrong(r, kind) for r in wanted),
                audit=audit,
            )
        )
    return out


def context_window(
    start: float, end: float, duration: float, context_s: float
) -> tuple[float, float]:
    """The clip ± ``context_s`` seconds, inside the recording."""
    if end <= start:
        raise ValueError(f"clip end {end} is not after its start {start}")
    return max(0.0, start - context_s), min(max(duration, end), end + context_s)


def speaker_options(
    embedding: npt.NDArray[np.float32] | None,
    predicted: str,
    ids: Sequence[str],
    centroids: npt.NDArray[np.float32],
    names: Mapping[str, str],
    n_clips: Mapping[str, int],
    limit: int = MAX_SPEAKER_CHOICES,
) -> list[SpeakerOption]:
    """Registry speakers to offer for a clip, closest first; the predicted one always."""
    sims = (
        centroids @ np.asarray(embedding, dtype=np.float32)
        if embedding is not None and len(ids)
        else np.full(len(ids), np.nan)
    )
    order = sorted(range(len(ids)), key=lambda i: (-np.nan_to_num(sims[i], nan=-2.0), ids[i]))
    chosen = [i for i in order[:limit]]
    if predicted in ids and ids.index(predicted) not in chosen:
        chosen[-1:] = [ids.index(predicted)]
    options = [
        SpeakerOption(ids[i], names.get(ids[i], ""), float(sims[i]), n_clips.get(ids[i], 0))
        for i in chosen
    ]
    if predicted and predicted not in ids:  # e.g. a speaker merged away since ingest
        options.insert(0, SpeakerOption(predicted, "", float("nan"), 0))
    return options


def _option_label(option: SpeakerOption, predicted: str) -> str:
    return html.escape(_option_text(option, predicted))


def _option_text(option: SpeakerOption, predicted: str) -> str:
    parts = [option.speaker_id]
    if option.name:
        parts.append(f"“{option.name}”")
    if not np.isnan(option.similarity):
        parts.append(f"similarity {option.similarity:.2f}")
    if option.n_clips:
        parts.append(f"{option.n_clips} clips")
    if option.speaker_id == predicted:
        parts.append("(machine's guess)")
    parts.append("hear a clip above" if option.reference else "no clip to hear yet")
    return " · ".join(parts)


def reference_data(options: Sequence[SpeakerOption], predicted: str) -> list[dict[str, str]]:
    """The task's ``references``: one short clip per candidate that has one, closest first."""
    return [
        {"speaker_id": o.speaker_id, "audio": o.reference, "label": _option_text(o, predicted)}
        for o in options
        if o.reference
    ][:MAX_REFERENCES]


def label_config() -> str:
    """The Label Studio labeling interface for one clip (with context) per task."""
    flags = "".join(f'<Choice value="{f}"/>' for f in QUALITY_FLAGS)
    return f"""<View>
  <Header value="$summary" size="5"/>
  <Audio name="{AUDIO}" value="$audio" hotkey="ctrl+space" height="80"/>
  <Labels name="{CLIP}" toName="{AUDIO}"><Label value="clip" background="#f4a261"/></Labels>
  <Header value="The candidates, by ear (a clean clip of each, closest first):" size="6"/>
  <Repeater on="$references" indexFlag="{{{{idx}}}}">
    <Header value="$references[{{{{idx}}}}].label" size="6"/>
    <Audio name="{REFERENCE}_{{{{idx}}}}" value="$references[{{{{idx}}}}].audio" height="40"/>
  </Repeater>
  <Header value="Who speaks in the highlighted clip?" size="6"/>
  <Choices name="{SPEAKER}" toName="{AUDIO}" value="$speaker_choices" choice="single"/>
  <Header value="Same person as (merges two registry speakers into one):" size="6"/>
  <Choices name="{SAME_AS}" toName="{AUDIO}" value="$merge_choices" choice="single"/>
  <Header value="Transcript of the highlighted clip (edit to correct):" size="6"/>
  <TextArea name="{TRANSCRIPT}" toName="{AUDIO}" editable="true" maxSubmissions="1" rows="3"/>
  <Header value="Problems with the clip:" size="6"/>
  <Choices name="{QUALITY}" toName="{AUDIO}" choice="multiple" showInline="true">{flags}</Choices>
  <Header value="Keep this clip?" size="6"/>
  <Choices name="{DECISION}" toName="{AUDIO}" choice="single" showInline="true" required="true">
    <Choice value="{ReviewVerdict.ACCEPT}"/><Choice value="{ReviewVerdict.REJECT}"/>
  </Choices>
</View>"""


def task_payload(
    row: StoredClip,
    options: Sequence[SpeakerOption],
    audio_url: str,
    context_start: float,
    recording_title: str = "",
) -> dict[str, Any]:
    """One Label Studio task for a clip row: its data and the machine's prediction."""
    predicted = str(row.speaker_id or "")
    score = uncertainty_score(row.speaker_confidence, row.transcript_confidence)
    reasons = list(row.review_reasons or [])
    version = model_version(row.pipeline_version, row.models)
    choices = [{"value": o.speaker_id, "html": _option_label(o, predicted)} for o in options]
    specials = [
        {"value": NEW_SPEAKER, "html": "a new person (not in the list)"},
        {"value": UNKNOWN_SPEAKER, "html": "cannot tell"},
    ]
    data = {
        "audio": audio_url,
        "summary": _summary(row, predicted, reasons, recording_title),
        "clip_id": row.clip_id,
        "recording_id": row.recording_id,
        "clip_start": float(row.start),
        "clip_end": float(row.end),
        "context_start": round(context_start, 3),
        "predicted_speaker": predicted,
        "speaker_confidence": float(row.speaker_confidence or 0.0),
        "machine_transcript": str(row.text or ""),
        "transcript_confidence": float(row.transcript_confidence or 0.0),
        "review_reasons": reasons,
        "uncertainty": round(1.0 - score, 4),
        "model_version": version,
        "speaker_choices": choices + specials,
        "merge_choices": choices,
        "references": reference_data(options, predicted),
    }
    result = _prediction(row, predicted, float(row.start) - context_start)
    return {
        "data": data,
        "predictions": [{"model_version": version, "score": score, "result": result}],
    }


def _summary(row: StoredClip, predicted: str, reasons: Sequence[str], recording_title: str) -> str:
    """The task's header: where the clip is, what the machine said, why it asks."""
    title = f"“{recording_title}” " if recording_title else ""
    return (
        f"{title}{row.start:.2f}–{row.end:.2f} s (highlighted). Machine: "
        f"{predicted or 'no speaker'} (confidence {float(row.speaker_confidence or 0):.2f}),"
        f" transcript confidence {float(row.transcript_confidence or 0):.2f}."
        f" Sent to review: {', '.join(r.replace('_', ' ') for r in reasons) or 'no reason given'}."
    )


def _prediction(row: StoredClip, predicted: str, offset: float) -> list[dict[str, Any]]:
    """The machine's answers, pre-filled: the clip's region, its speaker and its transcript."""
    result: list[dict[str, Any]] = [
        {
            "id": "clip",
            "from_name": CLIP,
            "to_name": AUDIO,
            "type": "labels",
            "value": {
                "start": round(offset, 3),
                "end": round(offset + float(row.end) - float(row.start), 3),
                "channel": 0,
                "labels": ["clip"],
            },
        }
    ]
    if predicted:
        result.append(
            {
                "id": "speaker",
                "from_name": SPEAKER,
                "to_name": AUDIO,
                "type": "choices",
                "value": {"choices": [predicted]},
            }
        )
    if row.text:
        result.append(
            {
                "id": "transcript",
                "from_name": TRANSCRIPT,
                "to_name": AUDIO,
                "type": "textarea",
                "value": {"text": [str(row.text)]},
            }
        )
    return result
