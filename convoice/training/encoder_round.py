"""One encoder round's figures and the encoder kinds it trains: embed, train, judge.

What :func:`convoice.flows.retrain.retrain_encoder_flow` reports
(:class:`EncoderRound`, :class:`RelabelReport`); the dispatch between the two
encoder kinds (CAM++: :mod:`convoice.training.campplus`, resemblyzer:
:mod:`convoice.training.encoder`); and the judging of an encoder by a replay
of the ingest's labelling (:mod:`convoice.models.relabel`), which
:mod:`convoice.training.encoder_judge` scores on the judged clips
(:mod:`convoice.models.encoder_eval`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from prefect import get_run_logger

from convoice.config import RegistrySettings, Settings, SimilarityScale
from convoice.engines import loaders
from convoice.models.calibration import Calibration
from convoice.models.encoder_eval import EncoderMetrics
from convoice.models.ge2e import FloatArray
from convoice.models.relabel import ClipFacts, Replay, replay
from convoice.records import (
    ClipStatus,
    LabelSource,
    Recording,
    Speaker,
    StoredClip,
    StoredLabel,
    stored_pitch,
)
from convoice.storage.labels import now_iso
from convoice.training import campplus as campplus_tune
from convoice.training import encoder as enc


@dataclass
class RelabelReport:
    encoder: str
    clips: int = 0
    machine_labelled: int = 0  # clips without a person's speaker label
    speaker_changed: int = 0  # of those, clips whose speaker changed
    review_before: float = 0.0  # share of clips the machine sends to review, before and after
    review_after: float = 0.0
    review_speech_before: float = 0.0
    review_speech_after: float = 0.0
    queue_before: int = 0  # clips still waiting for a person (people's labels applied)
    queue_after: int = 0
    speakers_before: int = 0
    speakers_after: int = 0

    def line(self) -> str:
        return (
            f"re-labelled {self.clips} clips with encoder {self.encoder}: "
            f"{self.speaker_changed} of {self.machine_labelled} machine-labelled clips changed "
            f"speaker; machine review share {self.review_before:.3f} -> {self.review_after:.3f} "
            f"of clips ({self.review_speech_before:.3f} -> {self.review_speech_after:.3f} of "
            f"speech); clips waiting for people {self.queue_before} -> {self.queue_after}; "
            f"speakers {self.speakers_before} -> {self.speakers_after}"
        )


@dataclass
class EncoderRound:
    """What one retraining round did."""

    dataset: str
    run_id: str
    base_encoder: str
    kind: str = "campplus"  # which encoder: "campplus" or "resemblyzer"
    encoder_id: str = ""
    n_train_clips: int = 0
    n_people_train_clips: int = 0  # of them, clips people labelled (the rest: the machine's)
    n_train_speakers: int = 0
    steps: int = 0
    resumed_from: int = 0
    first_loss: float = float("nan")
    last_loss: float = float("nan")
    train_seconds: float = 0.0
    current: EncoderMetrics | None = None
    candidate: EncoderMetrics | None = None
    promoted: bool = False
    reason: str = ""
    relabel: RelabelReport | None = None
    release: str = ""
    skipped: str = ""  # why nothing was trained, when nothing was
    scale_fit: str = ""  # how the candidate's thresholds were fitted (encoder_judge)
    known: dict[str, FloatArray] = field(default_factory=dict, repr=False)  # candidate's vectors

    def summary(self) -> str:
        if self.skipped:
            return f"encoder retraining skipped: {self.skipped}"
        lines = [
            f"trained {self.kind} {self.encoder_id} from {self.base_encoder} on {self.dataset}: "
            f"{self.n_train_clips} clips ({self.n_people_train_clips} labelled by people) of "
            f"{self.n_train_speakers} speakers, {self.steps} steps"
            + (f" (resumed after step {self.resumed_from})" if self.resumed_from else "")
            + f", GE2E loss {self.first_loss:.3f} -> {self.last_loss:.3f}, "
            f"{self.train_seconds:.1f} s",
            f"  current   ({self.base_encoder}): {self.current.line() if self.current else '-'}",
            f"  candidate ({self.encoder_id}): {self.candidate.line() if self.candidate else '-'}",
            f"  candidate's scale: {self.scale_fit or '-'}",
            f"  {'promoted' if self.promoted else 'not promoted'}: {self.reason}",
        ]
        if self.relabel:
            lines.append(f"  {self.relabel.line()}")
        if self.release:
            lines.append(f"  released {self.release}")
        return "\n".join(lines)


def round_json(report: EncoderRound) -> str:
    """The round as JSON (for scripts and the loop's artifact)."""
    return json.dumps(asdict(report), indent=2, default=str)


def facts(
    rows: Sequence[StoredClip], latest: Mapping[tuple[str, str], StoredLabel] | None = None
) -> list[ClipFacts]:
    """The replay's view of clip rows and of people's labels.

    ``latest``: the latest label per (clip id, field) from the ``labels`` table;
    without it (a release), the materialised rows say what people labelled.
    """

    def human(r: StoredClip, name: str) -> str:
        if latest is not None:
            label = latest.get((r.clip_id, name))
            return (label.value or "") if label else ""
        if name == "speaker_id":
            return str(r.speaker_id) if r.speaker_label_source == LabelSource.HUMAN else ""
        decided = r.labelled_by and r.status in (ClipStatus.ACCEPTED, ClipStatus.REJECTED)
        return str(r.status) if decided else ""

    return [
        ClipFacts(
            clip_id=r.clip_id,
            recording_id=r.recording_id,
            recording_speaker=r.recording_speaker,
            duration=float(r.duration),
            machine_reasons=tuple(r.review_reasons),
            human_speaker=human(r, "speaker_id"),
            human_status=human(r, "status"),
        )
        for r in rows
    ]


def replay_labels(
    scale: RegistrySettings | SimilarityScale,
    settings: Settings,
    order: list[str],
    rows: Sequence[StoredClip],
    embeddings: FloatArray,
    merged: dict[str, str],
    previous: Mapping[str, Speaker] | None = None,
    latest: Mapping[tuple[str, str], StoredLabel] | None = None,
    calibration: Calibration | None = None,
    splits: Mapping[tuple[str, str], tuple[str, str]] | None = None,
    machine_merged: frozenset[str] = frozenset(),
) -> Replay:
    """The ingest's labelling again, with ``embeddings`` (routed through ``calibration``).

    ``merged``, ``splits``, ``machine_merged``: the identity changes to carry
    (:func:`convoice.models.relabel.replay`).
    """
    return replay(
        order, facts(rows, latest), embeddings, merged, scale, settings.routing,
        previous=previous, at=now_iso(), calibration=calibration, splits=splits,
        machine_merged=machine_merged, pitch=stored_pitch(rows),
        pitch_veto=settings.identity.pitch_veto_semitones,
    )  # fmt: skip


def scale_of(
    kind: str, settings: Settings, stored: Mapping[str, float] | None = None
) -> RegistrySettings | SimilarityScale:
    """The thresholds of an encoder kind (CAM++'s ``[identity]``, resemblyzer's ``[registry]``).

    ``stored``: a trained CAM++'s own thresholds (its card's ``scale``), over ``[identity]``'s.
    """
    if kind == "campplus":
        overrides: dict[str, Any] = dict(stored or {})  # thresholds only (floats)
        identity = replace(settings.identity, encoder="campplus", **overrides)
        return identity.scale(settings.diarization, settings.registry)
    return settings.registry


def embed(kind: str, weights: str, waves: list[FloatArray]) -> FloatArray:
    if kind == "campplus":
        return campplus_tune.embed_waves(weights, waves)
    return enc.embed_waves(loaders.new_voice_encoder(weights), waves)


def features_of(kind: str, base_weights: str, waves: list[FloatArray]) -> list[FloatArray]:
    """What training reads of each clip: CAM++'s frozen window statistics, else the wave.

    The statistics are computed once: every CAM++ a round compares (the base
    and the candidate) embeds from them (:func:`campplus_tune.embed_stats`).
    """
    return campplus_tune.window_stats(base_weights, waves) if kind == "campplus" else waves


def embed_features(kind: str, weights: str, features: list[FloatArray]) -> FloatArray:
    if kind == "campplus":
        return campplus_tune.embed_stats(weights, features)
    return embed(kind, weights, features)


def train(
    kind: str,
    base_weights: str,
    features: list[FloatArray],
    speakers: list[str],
    settings: Settings,
    run: Any,
    steps: int | None,
) -> enc.TrainResult:
    """Fine-tune the ``kind`` encoder from ``base_weights`` on clips (``_features``)."""
    logger = get_run_logger()

    def progress(step: int, total: int, loss: float) -> None:
        if step == 1 or step % 10 == 0 or step == total:
            logger.info("GE2E step %d/%d loss %.4f", step, total, loss)

    cfg = settings.encoder
    if kind == "campplus":
        return campplus_tune.train_campplus(
            base_weights, features, speakers, cfg, run, steps, progress
        )
    mels = enc.mel_spectrograms(features)
    return enc.train_ge2e(base_weights, mels, speakers, cfg, run, steps, progress)


def ingest_order(recordings: Sequence[Recording]) -> list[str]:
    """Recording ids in the order they were ingested (the order the replay follows)."""
    rows = sorted(recordings, key=lambda r: (r.ingested_at or "", r.recording_id))
    return [r.recording_id for r in rows]
