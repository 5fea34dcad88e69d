"""Annotations back in: one Label Studio annotation becomes a decision, then label rows.

:func:`parse_annotation` checks everything an annotation says against the
labeling interface of :mod:`convoice.review.layout` and the registry, and
raises :class:`AnnotationError` naming the task and the annotation for
anything malformed; :func:`parse_all` does it for every annotation a pull
reads, leaving out those applied before; :func:`decision_labels` gives the
``labels`` rows of a valid decision; :func:`server_progress` counts what a project holds
against what was pulled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from convoice.records import ClipStatus, ReviewDecision, ReviewVerdict, StoredLabel, stable_id
from convoice.review.layout import (
    CLIP,
    DECISION,
    NEW_SPEAKER,
    QUALITY,
    QUALITY_FLAGS,
    SAME_AS,
    SPEAKER,
    TRANSCRIPT,
    UNKNOWN_SPEAKER,
)


class AnnotationError(ValueError):
    """An annotation that cannot be applied; the message names the task and annotation."""

    def __init__(self, task_id: int, annotation_id: int, reason: str) -> None:
        super().__init__(f"task {task_id} (annotation {annotation_id}): {reason}")
        self.task_id = task_id
        self.annotation_id = annotation_id
        self.reason = reason


def _one_choice(values: list[Any], what: str, task_id: int, annotation_id: int) -> str:
    if len(values) != 1 or not isinstance(values[0], str):
        raise AnnotationError(
            task_id, annotation_id, f"{what} needs exactly one choice: {values!r}"
        )
    return values[0]


def _results(annotation: Mapping[str, Any], task_id: int, annotation_id: int) -> dict[str, Any]:
    """``from_name`` -> value of every task-level answer (the clip region is ignored)."""
    result = annotation.get("result")
    if not isinstance(result, list):
        raise AnnotationError(task_id, annotation_id, f"result is not a list: {result!r:.80}")
    found: dict[str, Any] = {}
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise AnnotationError(task_id, annotation_id, f"malformed result item {item!r:.120}")
        name = item.get("from_name")
        if name in (CLIP, None) or name not in (SPEAKER, SAME_AS, TRANSCRIPT, QUALITY, DECISION):
            continue  # the clip region, or a control this version does not know
        if name in found:
            raise AnnotationError(task_id, annotation_id, f"two answers for {name}")
        key = "text" if name == TRANSCRIPT else "choices"
        values = item["value"].get(key)
        if not isinstance(values, list):
            raise AnnotationError(task_id, annotation_id, f"{name} has no {key} list")
        found[name] = values
    return found


def annotator_of(annotation: Mapping[str, Any], users: Mapping[int, str]) -> str:
    """The annotator's e-mail from ``completed_by`` (an id or a user object)."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        return str(who.get("email") or f"labelstudio-user-{who.get('id')}")
    if isinstance(who, int):
        return users.get(who) or f"labelstudio-user-{who}"
    return ""


def parse_annotation(
    task: Mapping[str, Any],
    annotation: Mapping[str, Any],
    known_speakers: set[str] | frozenset[str],
    users: Mapping[int, str],
) -> ReviewDecision:
    """The decision in one annotation of one task; AnnotationError when it is malformed."""
    task_id = int(task.get("id") or 0)
    annotation_id = int(annotation.get("id") or 0)

    def fail(reason: str) -> AnnotationError:
        return AnnotationError(task_id, annotation_id, reason)

    clip_id = (task.get("data") or {}).get("clip_id")
    if not isinstance(clip_id, str) or not clip_id:
        raise fail("the task has no clip_id in its data")
    at = _annotation_time(annotation, fail)
    annotator = annotator_of(annotation, users)
    if not annotator:
        raise fail("the annotation does not say who made it")
    found = _results(annotation, task_id, annotation_id)
    if DECISION not in found:
        raise fail("no accept/reject decision")
    decision = _verdict(_one_choice(found[DECISION], "the decision", task_id, annotation_id), fail)
    speaker = (
        _one_choice(found[SPEAKER], "speaker", task_id, annotation_id) if SPEAKER in found else ""
    )
    _check_speaker(decision, speaker, known_speakers, fail)
    same_as = (
        _one_choice(found[SAME_AS], "same as", task_id, annotation_id) if SAME_AS in found else ""
    )
    _check_same_as(decision, speaker, same_as, known_speakers, fail)
    flags = tuple(found.get(QUALITY, ()))
    unknown_flags = [f for f in flags if f not in QUALITY_FLAGS]
    if unknown_flags:
        raise fail(f"unknown quality flags {unknown_flags}")
    return ReviewDecision(
        task_id,
        annotation_id,
        clip_id,
        annotator,
        str(at),
        decision,
        speaker,
        same_as if decision == ReviewVerdict.ACCEPT else "",
        _transcript(found, fail),
        tuple(sorted(set(flags))),
    )


def _annotation_time(annotation: Mapping[str, Any], fail: Callable[[str], AnnotationError]) -> str:
    """When the annotation was last changed, as UTC milliseconds."""
    at = _stamp(annotation)
    if not isinstance(at, str) or not at:
        raise fail("the annotation has no time")
    try:
        return utc_iso(at)
    except ValueError as err:
        raise fail(f"the annotation time {at!r} is not ISO 8601") from err


def _verdict(choice: str, fail: Callable[[str], AnnotationError]) -> ReviewVerdict:
    """The decision an annotation chose; AnnotationError when it is neither."""
    try:
        return ReviewVerdict(choice)
    except ValueError:
        accept, reject = ReviewVerdict.ACCEPT, ReviewVerdict.REJECT
        raise fail(f"decision {choice!r} is neither {accept} nor {reject}") from None


def _check_speaker(
    decision: ReviewVerdict,
    speaker: str,
    known_speakers: set[str] | frozenset[str],
    fail: Callable[[str], AnnotationError],
) -> None:
    """An accepted clip names a registry speaker, a new person or "cannot tell"."""
    if decision != ReviewVerdict.ACCEPT:
        return
    if not speaker:
        raise fail("accepted without a speaker")
    if speaker not in known_speakers | {NEW_SPEAKER, UNKNOWN_SPEAKER}:
        raise fail(f"speaker {speaker!r} is not in the registry")


def _check_same_as(
    decision: ReviewVerdict,
    speaker: str,
    same_as: str,
    known_speakers: set[str] | frozenset[str],
    fail: Callable[[str], AnnotationError],
) -> None:
    """ "Same person as" on an accepted clip merges two different registry speakers."""
    if same_as and decision == ReviewVerdict.ACCEPT:
        if same_as not in known_speakers:
            raise fail(f"same-as speaker {same_as!r} is not in the registry")
        if speaker in (NEW_SPEAKER, UNKNOWN_SPEAKER):
            raise fail("'same person as' needs a registry speaker chosen, not a new or unknown one")
        if same_as == speaker:
            raise fail(f"speaker {speaker!r} cannot be merged with itself")


def _transcript(found: Mapping[str, Any], fail: Callable[[str], AnnotationError]) -> str | None:
    """The transcript as submitted, its lines joined; None when not given."""
    if TRANSCRIPT not in found:
        return None
    lines = found[TRANSCRIPT]
    if not all(isinstance(line, str) for line in lines):
        raise fail("the transcript is not text")
    return " ".join(line.strip() for line in lines if line.strip())


def _stamp(annotation: Mapping[str, Any]) -> Any:
    """The annotation's time as Label Studio gives it: when it last changed, else made."""
    return annotation.get("updated_at") or annotation.get("created_at")


def annotation_key(annotation: Mapping[str, Any]) -> tuple[int, str]:
    """(annotation id, time): how the store's review log marks an annotation as applied
    (:func:`~convoice.storage.review_state.applied_annotations`)."""
    return int(annotation.get("id") or 0), annotation_time(annotation)


def annotation_time(annotation: Mapping[str, Any]) -> str:
    """When the annotation last changed, as stored (UTC milliseconds); "" when unknown."""
    raw = str(_stamp(annotation) or "")
    try:
        return utc_iso(raw)
    except ValueError:
        return ""


def parse_all(
    tasks: Sequence[Mapping[str, Any]],
    known: set[str],
    users: Mapping[int, str],
    applied: set[tuple[int, str]],
) -> tuple[list[ReviewDecision], list[tuple[int, int, str]], int, int]:
    """Decisions not applied before (oldest first), skipped ones, how many were applied before."""
    decisions, skipped, already, read = [], [], 0, 0
    for task in tasks:
        for annotation in task.get("annotations") or []:
            read += 1
            key = annotation_key(annotation)
            if key in applied:
                already += 1
                continue
            if annotation.get("was_cancelled"):
                skipped.append((int(task["id"]), key[0], "skipped by the annotator"))
                continue
            try:
                decisions.append(parse_annotation(task, annotation, known, users))
            except AnnotationError as err:
                skipped.append((err.task_id, err.annotation_id, err.reason))
    decisions.sort(key=lambda d: (d.at, d.task_id, d.annotation_id))
    return decisions, skipped, already, read


def utc_iso(value: str) -> str:
    """An ISO 8601 time as UTC milliseconds, the form every ``labelled_at`` is stored in."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def new_speaker_id(clip_id: str) -> str:
    """The id of the new person an annotator met in ``clip_id`` (same clip, same id)."""
    return stable_id("spk", "human", clip_id, length=12)


def decision_labels(d: ReviewDecision) -> list[StoredLabel]:
    """The ``labels`` rows of a decision (speaker_id, text, status).

    A rejection only rejects. An accepted clip gets its speaker (a new person
    gets a new id) and its transcript as confirmed or corrected; when the
    annotator could not tell the speaker, the transcript is kept but the clip
    stays in review: its identity is still unconfirmed.
    """

    def label(name: str, value: str) -> StoredLabel:
        return StoredLabel(d.clip_id, name, value, d.annotator, d.at, str(d.task_id))

    if d.decision == ReviewVerdict.REJECT:
        return [label("status", ClipStatus.REJECTED.value)]
    rows = []
    if d.speaker not in (UNKNOWN_SPEAKER, ""):
        speaker = new_speaker_id(d.clip_id) if d.speaker == NEW_SPEAKER else d.speaker
        rows.append(label("speaker_id", speaker))
    if d.text is not None:
        rows.append(label("text", d.text))
    if d.speaker != UNKNOWN_SPEAKER:
        rows.append(label("status", ClipStatus.ACCEPTED.value))
    return rows


@dataclass(frozen=True)
class ServerProgress:
    """What a review project in Label Studio holds against what the store has pulled."""

    url: str
    project: str
    project_id: int | None  # None: no project of that title yet (nothing pushed)
    tasks: int = 0
    annotated_tasks: int = 0
    annotations: int = 0
    pulled: int = 0  # applied to the store by an earlier `review pull`
    cancelled: int = 0  # skipped by the annotator, not yet pulled: nothing to apply

    @property
    def awaiting_pull(self) -> int:
        """Annotations a `review pull` would read and apply (or report as malformed)."""
        return self.annotations - self.pulled - self.cancelled

    def summary(self) -> str:
        """One line for ``convoice review status``."""
        where = f"Label Studio {self.url}, project {self.project!r}"
        if self.project_id is None:
            return f"{where}: not there yet (`convoice review push` makes it)"
        line = (
            f"{where} (id {self.project_id}): {self.tasks} tasks, {self.annotated_tasks} "
            f"annotated ({self.annotations} annotations, {self.pulled} pulled"
        )
        line += f", {self.cancelled} skipped by the annotator)" if self.cancelled else ")"
        if self.awaiting_pull:
            return f"{line}; {self.awaiting_pull} not pulled yet: run `convoice review pull`"
        return f"{line}; nothing waits to be pulled"


def server_progress(
    url: str,
    project: str,
    project_id: int,
    tasks: int,
    annotated: Sequence[Mapping[str, Any]],
    applied: set[tuple[int, str]],
) -> ServerProgress:
    """Count ``annotated`` tasks' annotations (as :func:`parse_all` reads them) by whether
    ``applied`` (the store's pulled annotations) holds them."""
    annotations = pulled = cancelled = 0
    for task in annotated:
        for annotation in task.get("annotations") or []:
            annotations += 1
            if annotation_key(annotation) in applied:
                pulled += 1
            elif annotation.get("was_cancelled"):
                cancelled += 1
    return ServerProgress(
        url, project, project_id, tasks, len(annotated), annotations, pulled, cancelled
    )
