"""An encoder round's steps that read and write the store (:mod:`convoice.flows.retrain`).

Which release and encoder kind a round trains, whether it trained on the same
data before, the training and judging of a candidate (registered, promoted
when better), and the re-labelling of the whole store after a promotion.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from prefect import get_run_logger

from convoice.config import EncoderSettings, Settings
from convoice.engines import loaders
from convoice.models.calibration import Calibration
from convoice.models.encoder_eval import EncoderMetrics, evaluation_rows, is_better, training_rows
from convoice.models.ge2e import FloatArray, NotEnoughData
from convoice.models.relabel import Replay, review_share
from convoice.orchestration.store_lock import store_lock
from convoice.records import (
    ClipStatus,
    Contribution,
    LabelSource,
    ReleaseClip,
    ReleaseSplit,
    StoredClip,
)
from convoice.review.decisions import desired_contributions, latest_values
from convoice.storage import Release, Store
from convoice.storage import calibration as stored_calibration
from convoice.storage.encoders import EncoderCard, EncoderRegistry
from convoice.storage.identity import identity_map, machine_aliases
from convoice.storage.labels import now_iso
from convoice.storage.relabel import carried_splits, relabelled_rows, write_relabel
from convoice.storage.releases import read_release_table
from convoice.storage.review_state import contributions as review_contributions
from convoice.storage.review_state import merges
from convoice.storage.rows import (
    clip_records,
    label_records,
    recording_records,
    release_clip_records,
)
from convoice.training import encoder as enc
from convoice.training.encoder_judge import RoundClips, judge, scale_dict, with_scale
from convoice.training.encoder_round import (
    EncoderRound,
    RelabelReport,
    embed,
    embed_features,
    features_of,
    ingest_order,
    replay_labels,
    scale_of,
    train,
)
from convoice.training.tracking import open_run

RELEASE_COLUMNS = [
    "clip_id", "recording_id", "recording_speaker", "duration", "speaker_id", "status",
    "split", "labelled_by", "speaker_label_source", "speaker_confidence", "review_reasons",
    "audio_uri", "speaker_status",  # speaker_status: not in releases made before it
]  # fmt: skip
# What the count of a re-labelling reads of the materialised clips, before and after.
_COUNTED = ["clip_id", "speaker_id", "speaker_label_source", "status"]


def release_of(store: Store, dataset: str | None) -> Release:
    if dataset:
        return store.resolve(dataset)
    releases = store.releases()
    if not releases:
        raise NotEnoughData("the store has no release yet: run `convoice dataset release` first")
    return releases[-1]


def encoder_kind(settings: Settings, store: Store, encoder: str | None) -> str:
    """The encoder a round trains: ``encoder``, else the one the store identifies with."""
    kind = encoder or enc.pin_identity(settings, store).identity.encoder
    if kind not in ("campplus", "resemblyzer"):
        raise ValueError(f"encoder must be 'campplus' or 'resemblyzer', not {kind!r}")
    return kind


def trained_on(store: Store, registry: EncoderRegistry, release: Release, kind: str) -> str:
    """A release a ``kind`` encoder was trained on before with the same recordings and
    people's labels ("" if none).

    A re-labelling release changes only the machine's labels: training on it
    again would learn from the encoder's own output, so it does not count as new.
    """
    trained = {c.dataset for c in registry.cards() if c.kind == kind}
    wanted = {k: release.table_versions.get(k) for k in ("recordings", "labels")}
    for earlier in store.releases():
        if earlier.name in trained and all(
            earlier.table_versions.get(k) == v for k, v in wanted.items()
        ):
            return earlier.name
    return ""


def recording_order(store: Store, release: Release) -> list[str]:
    """The release's recordings in the order they were ingested."""
    table = read_release_table(store.location, release.version, "recordings")
    return ingest_order(recording_records(table))


@dataclass
class RoundData:
    """What one round trains and judges on: the release's clips and the training ones.

    ``clips`` are the release's rows (with its ``split``), from which
    :mod:`convoice.models.encoder_eval` selects.
    """

    release: Release
    clips: list[ReleaseClip]
    train: list[int]  # indices of the training clips in ``clips``
    heldout: list[int]  # indices of the judged clips

    def too_few(self) -> str:
        """Why GE2E and the EER cannot work on these clips ("" when they can)."""
        train_speakers = {self.clips[i].speaker_id for i in self.train}
        judged = Counter(self.clips[i].speaker_id for i in self.heldout)
        if len(train_speakers) < 2 or len(judged) < 2 or max(judged.values()) < 2:
            return (
                f"{self.release.name} has {len(self.train)} training clips of "
                f"{len(train_speakers)} speakers and {len(self.heldout)} judged clips of "
                f"{len(judged)}: GE2E needs 2 speakers or more, "
                "EER 2 judged speakers and one of them twice"
            )
        return ""


def round_data(store: Store, release: Release, settings: Settings) -> RoundData:
    """The release's clip rows, split into training and judged clips (``[encoder]`` settings)."""
    table = read_release_table(store.location, release.version, "clips")
    clips = release_clip_records(
        table.select([c for c in RELEASE_COLUMNS if c in table.column_names])
    )
    cfg = settings.encoder
    train = training_rows(clips, cfg.min_confidence, cfg.min_clips_per_speaker, cfg.judge_share)
    return RoundData(release, clips, train, evaluation_rows(clips, cfg.judge_share))


def count_training(report: EncoderRound, data: RoundData) -> None:
    """The round's report: how many clips and speakers it trains on."""
    report.n_train_clips = len(data.train)
    report.n_train_speakers = len({data.clips[i].speaker_id for i in data.train})
    report.n_people_train_clips = sum(
        1 for i in data.train if data.clips[i].split == ReleaseSplit.HELDOUT
    )


def train_and_judge(
    report: EncoderRound,
    settings: Settings,
    store: Store,
    data: RoundData,
    resume: str | None,
    steps: int | None,
) -> None:
    """Train a candidate, score it and the current encoder, register it, promote it if better."""
    logger = get_run_logger()
    cfg, kind, base = settings.encoder, report.kind, report.base_encoder
    release, rows, chosen, heldout = data.release, data.clips, data.train, data.heldout
    registry = EncoderRegistry(store.location)
    order = recording_order(store, release)
    merged = {m.merged: m.kept for m in merges(store)}
    run = open_run(settings, "encoder", resume)
    report.run_id = run.run_id
    base_weights = registry.weights(base, loaders.cache_dir() / "encoders")
    _log_round(report, data, run, cfg)
    waves = enc.read_waves(store, [r.audio_uri for r in rows])
    features = features_of(kind, base_weights, waves)
    current_emb = embed_features(kind, base_weights, features)
    cal = stored_calibration.current(store.location, base if kind == "campplus" else None)
    speakers = [rows[i].speaker_id for i in chosen]
    result = train(
        kind, base_weights, [features[i] for i in chosen], speakers, settings, run, steps
    )
    report.steps, report.resumed_from = result.steps, result.resumed_from
    report.first_loss, report.last_loss = result.first_loss, result.last_loss
    report.train_seconds = result.seconds
    candidate_emb = embed_features(kind, str(result.weights), features)
    people = frozenset(i for i in chosen if rows[i].split == ReleaseSplit.HELDOUT)
    clips = RoundClips(rows, chosen, heldout, order, merged, people)
    verdict = _judge(report, settings, registry, clips, (current_emb, candidate_emb), cal)
    better = verdict.promote  # on the figures, and on the candidate's own thresholds
    report.encoder_id = run.run_id
    run.log_metrics({f"current/{k}": v for k, v in verdict.current.as_dict().items()})
    run.log_metrics({f"candidate/{k}": v for k, v in verdict.candidate.as_dict().items()})
    card = _card(report, release, run.run_id, cfg, better, verdict.candidate, verdict.current)
    card.scale = verdict.scale
    card.calibration = cal.version
    registry.register(card, result.weights)
    run.close()
    if better:
        registry.promote(report.encoder_id)
        report.promoted = True
        report.known = dict(zip([r.clip_id for r in rows], candidate_emb, strict=True))
        logger.info("promoted encoder %s (%s)", report.encoder_id, report.reason)
    else:
        logger.info("kept encoder %s: %s", base, report.reason)


@dataclass(frozen=True)
class _Verdict:
    promote: bool
    current: EncoderMetrics
    candidate: EncoderMetrics
    scale: dict[str, float]  # the candidate's thresholds ({}: not CAM++)


def _judge(
    report: EncoderRound,
    settings: Settings,
    registry: EncoderRegistry,
    clips: RoundClips,
    embeddings: tuple[FloatArray, FloatArray],
    cal: Calibration,
) -> _Verdict:
    """Both encoders' figures (the candidate on its fitted scale), and whether to promote."""
    campplus = report.kind == "campplus"
    scale = scale_of(
        report.kind, settings, registry.scale(report.base_encoder) if campplus else None
    )
    found = judge(settings, clips, scale, embeddings, cal, campplus)
    report.current, report.candidate, report.scale_fit = (
        found.current,
        found.candidate,
        found.line(),
    )
    get_run_logger().info("current encoder %s: %s", report.base_encoder, report.current.line())
    better, report.reason = is_better(
        report.candidate, report.current, settings.encoder.min_gain,
        settings.routing.target_precision,
    )  # fmt: skip
    scale_out = scale_dict(found.scale) if campplus else {}
    return _Verdict(better, found.current, found.candidate, scale_out)


def _log_round(report: EncoderRound, data: RoundData, run: Any, cfg: EncoderSettings) -> None:
    """Say what the round trains on, in the log and in the training run's parameters."""
    release, n_judged = data.release, len(data.heldout)
    get_run_logger().info(
        "%s encoder round on %s: %d training clips (%d labelled by people) of %d speakers, "
        "%d judged clips; base %s",
        report.kind, release.name, len(data.train), report.n_people_train_clips,
        report.n_train_speakers, n_judged, report.base_encoder,
    )  # fmt: skip
    run.log_params(
        {
            "dataset": release.name,
            "dataset_tag": release.tag or "",
            "kind": report.kind,
            "base_encoder": report.base_encoder,
            "n_train_clips": len(data.train),
            "n_people_train_clips": report.n_people_train_clips,
            "n_train_speakers": report.n_train_speakers,
            "n_heldout_clips": n_judged,
            "settings": asdict(cfg),
        }
    )


def _card(
    report: EncoderRound,
    release: Release,
    run_id: str,
    cfg: EncoderSettings,
    better: bool,
    candidate: EncoderMetrics,
    current: EncoderMetrics,
) -> EncoderCard:
    """The candidate's card in the encoder registry: its figures and the decision."""
    return EncoderCard(
        encoder_id=report.encoder_id,
        parent=report.base_encoder,
        dataset=release.name,
        run_id=run_id,
        created_at=now_iso(),
        settings=asdict(cfg),
        metrics=candidate.as_dict(),
        baseline_metrics=current.as_dict(),
        decision=("promoted: " if better else "kept the current: ") + report.reason,
        n_train_clips=report.n_train_clips,
        n_train_speakers=report.n_train_speakers,
        kind=report.kind,
        n_people_train_clips=report.n_people_train_clips,
        scale_fit=report.scale_fit,
    )


def relabel_after_promotion(report: EncoderRound, settings: Settings, store: Store) -> None:
    """Re-label the store with the promoted encoder, then release."""
    registry = EncoderRegistry(store.location)
    weights = registry.weights(report.encoder_id, loaders.cache_dir() / "encoders")
    with store_lock(store_root=store.root):  # no ingest or pull writes meanwhile
        report.relabel = relabel_store(
            store, settings, report.encoder_id, weights, report.known, report.kind
        )
        released = store.release(note=f"re-labelled with encoder {report.encoder_id}")
    get_run_logger().info(report.relabel.line())
    report.release = released.name


def relabel_store(
    store: Store,
    settings: Settings,
    encoder_name: str,
    weights: str,
    known: dict[str, FloatArray] | None = None,
    kind: str = "resemblyzer",
) -> RelabelReport:
    """Re-embed every clip with ``weights``, re-identify, re-route, write (people's labels stay).

    ``known`` holds embeddings already computed with the same weights, by clip id.
    ``kind`` "campplus" writes CAM++'s ``speaker_embedding`` and identifies on
    ``[identity]``'s scale; "resemblyzer" writes ``embedding`` and identifies on
    ``[registry]``'s (a store re-labelled so identifies on resemblyzer from then on).
    """
    report = RelabelReport(encoder=encoder_name)
    if kind == "campplus":  # its own thresholds and calibration (encoder_judge)
        settings = with_scale(settings, EncoderRegistry(store.location).scale(encoder_name))
    machine = store.clips()
    if machine.num_rows == 0:
        return report
    rows = clip_records(machine)  # the machine's rows; people's labels come from `latest`
    latest = latest_values(label_records(store.labels()))
    order = ingest_order(recording_records(store.recordings()))
    known = _embeddings(store, rows, kind, weights, dict(known or {}))
    embeddings = np.stack([known[r.clip_id] for r in rows]).astype(np.float32)
    merged = identity_map(store)  # people's merges and consolidation's
    old_speakers = {s.speaker_id: s for s in store.speakers()}
    before = clip_records(store.materialized_clips().select(_COUNTED))
    scale = scale_of(kind, settings)
    cal = stored_calibration.current(store.location, encoder_name if kind == "campplus" else None)
    result = replay_labels(
        scale, settings, order, rows, embeddings, merged, old_speakers, latest, cal,
        carried_splits(store), frozenset(machine_aliases(store)),
    )  # fmt: skip
    if kind == "campplus":
        name = enc.campplus_name(encoder_name)
        rows_out = relabelled_rows(machine, result.labels, known, name, "speaker_embedding")
    else:
        rows_out = relabelled_rows(machine, result.labels, known, enc.encoder_name(encoder_name))
    # What people's decisions add to the machine's registry, against the new machine rows.
    relabelled = {c.clip_id: c for c in clip_records(rows_out)}
    desired = desired_contributions(relabelled, latest, merged)
    stale = set(review_contributions(store)) - set(desired)
    contributions = [*desired.values(), *(Contribution(c) for c in sorted(stale))]
    write_relabel(store, rows_out, result.speakers, contributions, encoder_name, now_iso())
    after = clip_records(store.materialized_clips().select(_COUNTED))
    _count_relabel(report, rows, before, after, result)
    report.speakers_before, report.speakers_after = len(old_speakers), len(result.speakers)
    return report


def _embeddings(
    store: Store, rows: list[StoredClip], kind: str, weights: str, known: dict[str, FloatArray]
) -> dict[str, FloatArray]:
    """``known`` with every clip of ``rows`` it lacks embedded with ``weights``."""
    missing = [r for r in rows if r.clip_id not in known]
    if missing:
        fresh = embed(kind, weights, enc.read_waves(store, [r.audio_uri for r in missing]))
        known.update(zip([r.clip_id for r in missing], fresh, strict=True))
    return known


def _count_relabel(
    report: RelabelReport,
    machine: list[StoredClip],
    before: list[StoredClip],
    after: list[StoredClip],
    result: Replay,
) -> None:
    """What the re-labelling changed: speakers, the review share, the queue people face."""
    report.clips = len(machine)
    old_by_id = {r.clip_id: r for r in before}
    machine_rows = [r for r in after if r.speaker_label_source != LabelSource.HUMAN]
    report.machine_labelled = len(machine_rows)
    report.speaker_changed = sum(
        1 for r in machine_rows if r.speaker_id != old_by_id[r.clip_id].speaker_id
    )
    # The machine's review rate (its own statuses), and the queue people still face.
    durations = [c.duration for c in machine]
    report.review_before, report.review_speech_before = review_share(
        [c.status for c in machine], durations
    )
    report.review_after, report.review_speech_after = review_share(
        [result.labels[c.clip_id].status for c in machine], durations
    )
    report.queue_before = sum(1 for r in before if r.status == ClipStatus.REVIEW)
    report.queue_after = sum(1 for r in after if r.status == ClipStatus.REVIEW)
