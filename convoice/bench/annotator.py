"""A simulated annotator that answers Label Studio tasks through its API, as its page does.

For benchmarks only: the person "hears" the clip through the corpus truth (the
voice that speaks most of the clip) and picks, as the speaker, the identity
the machine gave most of that voice's sure clips (the one a person would
recognise by its reference clips), or the clip's own speaker when the machine
was sure of none of that voice's clips. The annotation is what the labeling
page POSTs: the task's prediction, the speaker choice edited, and an
``accept`` decision.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from convoice.records import ClipStatus


@dataclass
class AnnotatorReport:
    tasks: int = 0  # tasks of the project without an annotation yet
    answered: int = 0
    changed: int = 0  # speaker changed from the machine's
    skipped: dict[str, int] = field(default_factory=dict)  # why a task was left unanswered

    def line(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        return (
            f"annotator answered {self.answered} of {self.tasks} tasks through Label Studio's "
            f"API ({self.changed} with another speaker than the machine's); skipped: {skipped}"
        )


def speaker_answers(clips: list[Mapping[str, Any]], voices: Mapping[str, str]) -> dict[str, str]:
    """clip id -> the speaker id a person picks (``voices``: clip id -> true voice)."""
    sure: dict[str, Counter[str]] = {}
    for c in clips:
        voice = voices.get(c["clip_id"])
        if voice and c["status"] == ClipStatus.ACCEPTED:
            sure.setdefault(voice, Counter())[c["speaker_id"]] += 1
    out: dict[str, str] = {}
    for c in clips:
        voice = voices.get(c["clip_id"])
        if voice:
            known = sure.get(voice)
            out[c["clip_id"]] = known.most_common(1)[0][0] if known else c["speaker_id"]
    return out


def annotate_project(
    url: str, token: str, project_title: str, answers: Mapping[str, str]
) -> AnnotatorReport:
    """Answer every unannotated task of the project whose clip has an answer."""
    from label_studio_sdk import LabelStudio

    sdk = LabelStudio(base_url=url, api_key=token)
    projects: list[Any] = list(sdk.projects.list())
    project = next((p for p in projects if p.title == project_title), None)
    report = AnnotatorReport()
    if project is None:
        report.skipped["no project"] = 1
        return report
    tasks: list[Any] = list(sdk.tasks.list(project=project.id, fields="all", page_size=500))
    for item in tasks:
        task = item.dict()
        if task.get("annotations"):
            continue
        report.tasks += 1
        clip_id = (task.get("data") or {}).get("clip_id", "")
        speaker = answers.get(clip_id)
        if not speaker or not task.get("predictions"):
            why = "no voice in the truth" if not speaker else "no prediction"
            report.skipped[why] = report.skipped.get(why, 0) + 1
            continue
        result, changed = _result(task["predictions"][0], speaker)
        sdk.annotations.create(
            id=task["id"],
            result=result,
            lead_time=5.0,
            parent_prediction=task["predictions"][0]["id"],
            project=task["project"],
        )
        report.answered += 1
        report.changed += int(changed)
    return report


def _result(prediction: Mapping[str, Any], speaker: str) -> tuple[list[dict[str, Any]], bool]:
    """The prediction's result with the speaker set, plus an ``accept`` decision."""
    result: list[dict[str, Any]] = []
    changed = False
    for item in prediction["result"]:
        item = {**item, "origin": "prediction"}
        if item["from_name"] == "speaker":
            changed = item["value"].get("choices") != [speaker]
            item = {**item, "value": {"choices": [speaker]}, "origin": "prediction-changed"}
        result.append(item)
    if not any(item["from_name"] == "speaker" for item in result):
        speaker_item = {"id": "speaker-1", "from_name": "speaker", "to_name": "audio"}
        result.append({**speaker_item, "type": "choices", "value": {"choices": [speaker]}})
        changed = True
    decision = {"id": "decision-1", "from_name": "decision", "to_name": "audio", "type": "choices"}
    result.append({**decision, "value": {"choices": ["accept"]}, "origin": "manual"})
    return result, changed
