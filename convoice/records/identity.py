"""Identity and review decisions: merges by the machine and by people, contributions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from convoice.records.stored import known_fields

CONSOLIDATE_BY = "convoice consolidate"
"""``decided_by`` of the identity changes consolidation makes."""

RELABEL_BY = "convoice relabel"
"""``decided_by`` of the row a re-labelling writes (:attr:`ChangeKind.RELABEL`)."""


@dataclass(frozen=True)
class MachineMerge:
    """One identity folded into another by consolidation: ``merged`` lives on as ``kept``."""

    merged: str
    kept: str
    similarity: float  # cosine of the two groups' centroids when they merged
    why: str


@dataclass(frozen=True)
class MachineSplit:
    """Part of one identity given a new one by consolidation: two voices had one id.

    The clips ``split`` holds in ``recordings`` read as ``piece`` from then on
    (a recording's clips move together); ``piece`` is a new id with its own
    centroid, and the two are never merged back.
    """

    split: str
    piece: str
    recordings: tuple[str, ...]
    similarity: float  # cosine of the two groups' centroids when split
    why: str


class ChangeKind(StrEnum):
    """What an identity change did (the ``kind`` column of ``speaker_changes``)."""

    MERGE = "merge"  # ``old_id`` lives on as ``new_id``
    SPLIT = "split"  # ``old_id``'s clips in ``recording_id`` now read as ``new_id``
    # The clip rows were re-labelled (a new encoder): the split rows before this row are
    # history, carried into the ids the re-label wrote (old_id, new_id: "", why: the encoder)
    RELABEL = "relabel"
    # The re-labelling its ``run_id`` names finished (clip rows, contributions, registry
    # written). A ``relabel`` row with a run id and no such row is a re-label killed half-way:
    # consolidation refuses until a re-label finishes it (rows written before: no run id).
    RELABEL_DONE = "relabel-done"


@dataclass(frozen=True)
class IdentityChange:
    """One row of ``speaker_changes``: an id that stopped existing, and the one it lives on as.

    Consolidation writes them (``decided_by`` :data:`CONSOLIDATE_BY`); a release
    also carries people's merges in this form.
    """

    old_id: str
    new_id: str
    kind: ChangeKind = ChangeKind.MERGE
    why: str = ""
    decided_by: str = ""
    at: str = ""
    similarity: float | None = None  # consolidation's cosine; None for people's merges
    run_id: str = ""
    recording_id: str | None = None  # a split's: the recording whose clips moved
    machine_id: str | None = None  # a split's: the machine's id on those clips' rows

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> IdentityChange:
        values = known_fields(cls, row)
        if values.get("kind") is not None:
            values["kind"] = ChangeKind(values["kind"])
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        return {**asdict(self), "kind": str(self.kind)}


@dataclass(frozen=True)
class Merge:
    """Two registry speakers are one person: ``merged`` lives on as ``kept``."""

    merged: str
    kept: str
    merged_by: str
    merged_at: str
    task_id: str


@dataclass(frozen=True)
class Contribution:
    """What one reviewed clip adds to (``plus``) and takes from (``minus``) the registry."""

    clip_id: str
    plus: str = ""
    minus: str = ""
    duration: float = 0.0


class ReviewVerdict(StrEnum):
    """What an annotator said about keeping a clip (the review page's "Keep this clip?")."""

    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True)
class ReviewDecision:
    """What one annotator decided about one clip."""

    task_id: int
    annotation_id: int
    clip_id: str
    annotator: str  # e-mail (or a user id when the server does not say)
    at: str  # ISO 8601, when the annotation was last changed
    decision: ReviewVerdict
    speaker: str  # a registry id, NEW_SPEAKER, UNKNOWN_SPEAKER or "" (not given)
    same_as: str = ""  # a registry id: "the speaker above and this one are one person"
    text: str | None = None  # the transcript as submitted; None when not given
    flags: tuple[str, ...] = ()


def canonical(speaker_id: str, merges: Mapping[str, str]) -> str:
    """The speaker ``speaker_id`` lives on as, following merges (A→B→C gives C)."""
    seen: set[str] = set()
    while speaker_id in merges and speaker_id not in seen:
        seen.add(speaker_id)
        speaker_id = merges[speaker_id]
    return speaker_id
