"""Close the loop on identities: retrain the speaker encoder, judge it, re-label, release.

One round (``convoice retrain encoder``) trains the encoder that identifies
(``[identity] encoder``: CAM++ by default; ``--encoder resemblyzer`` the
d-vector encoder):

1. train on the clips the machine accepted with a speaker confidence above
   ``[encoder] min_confidence`` and on the clips people labelled, except a
   stable share of those (``[encoder] judge_share``, by a hash of the clip id)
   kept to judge (GE2E fine-tuning, resumable, tracked in TensorBoard:
   CAM++'s embedding layer, :mod:`convoice.training.campplus`, or
   resemblyzer's whole LSTM, :mod:`convoice.training.encoder`);
2. score the current and the candidate encoder on the judged clips (EER,
   B-cubed F1 of a labelling replay, review share:
   :mod:`convoice.models.encoder_eval`);
3. register the candidate with its figures; promote it only when it is better;
4. after a promotion, re-embed every clip of the store, work the identities
   out again (people's labels stay), re-route, and release.

It only composes: arithmetic in :mod:`convoice.models`, audio and training in
:mod:`convoice.tasks`, writes in :mod:`convoice.storage`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from convoice.config import RegistrySettings, Settings, SimilarityScale, load_settings
from convoice.engines import loaders
from convoice.models.calibration import Calibration
from convoice.models.encoder_eval import (
    EncoderMetrics,
    evaluation_rows,
    is_better,
    score,
    training_rows,
)
from convoice.models.ge2e import FloatArray, NotEnoughData
from convoice.models.relabel import ClipFacts, Replay, replay, resolve_merges, review_share
from convoice.records import ClipStatus, Contribution, LabelSource
from convoice.review.decisions import desired_contributions, latest_values
from convoice.storage import Release, Store
from convoice.storage import calibration as stored_calibration
from convoice.storage.encoders import EncoderCard, EncoderRegistry
from convoice.storage.labels import now_iso
from convoice.storage.relabel import relabelled_rows, write_relabel
from convoice.storage.releases import read_release_table
from convoice.storage.review_state import contributions as review_contributions
from convoice.storage.review_state import merges
from convoice.training import campplus as campplus_tune
from convoice.training import encoder as enc
from convoice.training.tracking import open_run

RELEASE_COLUMNS = [
    "clip_id", "recording_id", "recording_speaker", "duration", "speaker_id", "status",
    "split", "labelled_by", "speaker_label_source", "speaker_confidence", "review_reasons",
    "audio_uri", "speaker_status",  # speaker_status: not in releases made before it
]  # fmt: skip


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
            f"  {'promoted' if self.promoted else 'not promoted'}: {self.reason}",
        ]
        if self.relabel:
            lines.append(f"  {self.relabel.line()}")
        if self.release:
            lines.append(f"  released {self.release}")
        return "\n".join(lines)


def _release(store: Store, dataset: str | None) -> Release:
    if dataset:
        return store.resolve(dataset)
    releases = store.releases()
    if not releases:
        raise NotEnoughData("the store has no release yet: run `convoice dataset release` first")
    return releases[-1]


def _facts(
    rows: list[dict[str, Any]], latest: dict[tuple[str, str], dict[str, str]] | None = None
) -> list[ClipFacts]:
    """The replay's view of clip rows and of people's labels.

    ``latest``: the latest label per (clip id, field) from the ``labels`` table;
    without it (a release), the materialised rows say what people labelled.
    """

    def human(r: dict[str, Any], name: str) -> str:
        if latest is not None:
            return latest.get((r["clip_id"], name), {}).get("value", "")
        if name == "speaker_id":
            return str(r["speaker_id"]) if r["speaker_label_source"] == LabelSource.HUMAN else ""
        decided = r["labelled_by"] and r["status"] in (ClipStatus.ACCEPTED, ClipStatus.REJECTED)
        return str(r["status"]) if decided else ""

    return [
        ClipFacts(
            clip_id=r["clip_id"],
            recording_id=r["recording_id"],
            recording_speaker=r["recording_speaker"],
            duration=float(r["duration"]),
            machine_reasons=tuple(r["review_reasons"] or ()),
            human_speaker=human(r, "speaker_id"),
            human_status=human(r, "status"),
        )
        for r in rows
    ]


def _replay(
    scale: RegistrySettings | SimilarityScale,
    settings: Settings,
    order: list[str],
    rows: list[dict[str, Any]],
    embeddings: FloatArray,
    merged: dict[str, str],
    previous: dict[str, Any] | None = None,
    latest: dict[tuple[str, str], dict[str, str]] | None = None,
    calibration: Calibration | None = None,
) -> Replay:
    """The ingest's labelling again, with ``embeddings`` (routed through ``calibration``)."""
    return replay(
        order, _facts(rows, latest), embeddings, merged, scale, settings.routing,
        previous=previous, at=now_iso(), calibration=calibration,
    )  # fmt: skip


def _scale(kind: str, settings: Settings) -> RegistrySettings | SimilarityScale:
    """The thresholds of an encoder kind (CAM++'s ``[identity]``, resemblyzer's ``[registry]``)."""
    if kind == "campplus":
        identity = replace(settings.identity, encoder="campplus")
        return identity.scale(settings.diarization, settings.registry)
    return settings.registry


def _evaluate(
    kind: str,
    settings: Settings,
    rows: list[dict[str, Any]],
    order: list[str],
    embeddings: FloatArray,
    merged: dict[str, str],
    calibration: Calibration | None = None,
) -> EncoderMetrics:
    """Figures of one encoder (its embeddings of the release's clips) on the judged clips."""
    heldout = evaluation_rows(rows, settings.encoder.judge_share)
    scale = _scale(kind, settings)
    result = _replay(scale, settings, order, rows, embeddings, merged, calibration=calibration)
    truth = [resolve_merges(rows[i]["speaker_id"], merged) for i in heldout]
    predicted = [result.labels[rows[i]["clip_id"]].speaker_id for i in heldout]
    statuses = [result.labels[r["clip_id"]].status for r in rows]
    shares = review_share(statuses, [float(r["duration"]) for r in rows])
    return score(embeddings[heldout], truth, predicted, shares)


def _embed(kind: str, weights: str, waves: list[FloatArray]) -> FloatArray:
    if kind == "campplus":
        return campplus_tune.embed_waves(weights, waves)
    return enc.embed_waves(loaders.new_voice_encoder(weights), waves)


def _features(kind: str, base_weights: str, waves: list[FloatArray]) -> list[FloatArray]:
    """What training reads of each clip: CAM++'s frozen window statistics, else the wave.

    The statistics are computed once: every CAM++ a round compares (the base
    and the candidate) embeds from them (:func:`campplus_tune.embed_stats`).
    """
    return campplus_tune.window_stats(base_weights, waves) if kind == "campplus" else waves


def _embed_features(kind: str, weights: str, features: list[FloatArray]) -> FloatArray:
    if kind == "campplus":
        return campplus_tune.embed_stats(weights, features)
    return _embed(kind, weights, features)


def _train(
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


def _kind(settings: Settings, store: Store, encoder: str | None) -> str:
    """The encoder a round trains: ``encoder``, else the one the store identifies with."""
    kind = encoder or enc.pin_identity(settings, store).identity.encoder
    if kind not in ("campplus", "resemblyzer"):
        raise ValueError(f"encoder must be 'campplus' or 'resemblyzer', not {kind!r}")
    return kind


@flow(name="convoice-retrain-encoder", log_prints=True)
def retrain_encoder_flow(
    dataset: str | None = None,
    home: str | None = None,
    config: str | None = None,
    steps: int | None = None,
    resume: str | None = None,
    relabel: bool = True,
    force: bool = False,
    encoder: str | None = None,
) -> EncoderRound:
    """One round: train on ``dataset`` (default: the latest release), judge, promote, re-label.

    ``encoder``: "campplus" or "resemblyzer" (default: the one the store
    identifies with). ``resume`` is the run id of a killed training run to
    continue from its last checkpoint. With ``relabel=False`` a promotion does
    not re-label. A release trained on before is skipped unless ``force``.
    """
    logger = get_run_logger()
    settings = load_settings(config, home=home)
    store = Store.open(settings)
    kind = _kind(settings, store, encoder)
    registry = EncoderRegistry(store.location)
    release = _release(store, dataset)
    base = registry.current(kind)
    report = EncoderRound(dataset=release.name, run_id=resume or "", base_encoder=base, kind=kind)
    seen = _trained_on(store, registry, release, kind)
    if seen and not force and resume is None:
        report.skipped = (
            f"{release.name} has no recordings or people's labels that {seen} did not have, "
            f"and a {kind} encoder was trained on that already; use force to train anyway"
        )
        logger.info(report.summary())
        return report
    rows = read_release_table(store.location, release.version, "clips")
    rows_list = rows.select([c for c in RELEASE_COLUMNS if c in rows.column_names]).to_pylist()
    cfg = settings.encoder
    train = training_rows(rows_list, cfg.min_confidence, cfg.min_clips_per_speaker, cfg.judge_share)
    heldout = evaluation_rows(rows_list, cfg.judge_share)
    train_speakers = sorted({rows_list[i]["speaker_id"] for i in train})
    report.n_train_clips, report.n_train_speakers = len(train), len(train_speakers)
    report.n_people_train_clips = sum(1 for i in train if rows_list[i]["split"] == "heldout")
    judged = Counter(rows_list[i]["speaker_id"] for i in heldout)
    if len(train_speakers) < 2 or len(judged) < 2 or max(judged.values()) < 2:
        report.skipped = (
            f"{release.name} has {len(train)} training clips of {len(train_speakers)} speakers "
            f"and {len(heldout)} judged clips of {len(judged)}: GE2E needs 2 speakers or more, "
            "EER 2 judged speakers and one of them twice"
        )
        logger.info(report.summary())
        return report
    _train_and_judge(report, settings, store, release, rows_list, train, resume, steps)
    if report.promoted and relabel:
        _relabel_after_promotion(report, settings, store)
    report.known = {}  # the candidate's vectors are not part of the round's record
    logger.info(report.summary())
    create_markdown_artifact(
        f"# Encoder round on {release.name}\n\n```\n{report.summary()}\n```\n",
        key="encoder-round",
        description="Speaker encoder retraining",
    )
    return report


def _train_and_judge(
    report: EncoderRound,
    settings: Settings,
    store: Store,
    release: Release,
    rows: list[dict[str, Any]],
    train: list[int],
    resume: str | None,
    steps: int | None,
) -> None:
    """Train a candidate, score it and the current encoder, register it, promote it if better."""
    logger = get_run_logger()
    cfg, kind, base = settings.encoder, report.kind, report.base_encoder
    registry = EncoderRegistry(store.location)
    order = _recording_order(store, release)
    merged = {m.merged: m.kept for m in merges(store)}
    run = open_run(settings, "encoder", resume)
    report.run_id = run.run_id
    base_weights = registry.weights(base, loaders.cache_dir() / "encoders")
    n_judged = len(evaluation_rows(rows, cfg.judge_share))
    logger.info(
        "%s encoder round on %s: %d training clips (%d labelled by people) of %d speakers, "
        "%d judged clips; base %s",
        kind, release.name, len(train), report.n_people_train_clips, report.n_train_speakers,
        n_judged, base,
    )  # fmt: skip
    run.log_params(
        {
            "dataset": release.name,
            "dataset_tag": release.tag or "",
            "kind": kind,
            "base_encoder": base,
            "n_train_clips": len(train),
            "n_people_train_clips": report.n_people_train_clips,
            "n_train_speakers": report.n_train_speakers,
            "n_heldout_clips": n_judged,
            "settings": asdict(cfg),
        }
    )
    features = _features(kind, base_weights, enc.read_waves(store, [r["audio_uri"] for r in rows]))
    current_emb = _embed_features(kind, base_weights, features)
    cal = stored_calibration.current(store.location)  # as the ingest routes
    report.current = _evaluate(kind, settings, rows, order, current_emb, merged, cal)
    logger.info("current encoder %s: %s", base, report.current.line())
    speakers = [rows[i]["speaker_id"] for i in train]
    result = _train(
        kind, base_weights, [features[i] for i in train], speakers, settings, run, steps
    )
    report.steps, report.resumed_from = result.steps, result.resumed_from
    report.first_loss, report.last_loss = result.first_loss, result.last_loss
    report.train_seconds = result.seconds
    candidate_emb = _embed_features(kind, str(result.weights), features)
    report.candidate = _evaluate(kind, settings, rows, order, candidate_emb, merged, cal)
    better, report.reason = is_better(report.candidate, report.current, cfg.min_gain)
    report.encoder_id = run.run_id
    run.log_metrics({f"current/{k}": v for k, v in report.current.as_dict().items()})
    run.log_metrics({f"candidate/{k}": v for k, v in report.candidate.as_dict().items()})
    card = EncoderCard(
        encoder_id=report.encoder_id,
        parent=base,
        dataset=release.name,
        run_id=run.run_id,
        created_at=now_iso(),
        settings=asdict(cfg),
        metrics=report.candidate.as_dict(),
        baseline_metrics=report.current.as_dict(),
        decision=("promoted: " if better else "kept the current: ") + report.reason,
        n_train_clips=len(train),
        n_train_speakers=report.n_train_speakers,
        kind=kind,
        n_people_train_clips=report.n_people_train_clips,
    )
    registry.register(card, result.weights)
    run.close()
    if better:
        registry.promote(report.encoder_id)
        report.promoted = True
        report.known = dict(zip([r["clip_id"] for r in rows], candidate_emb, strict=True))
        logger.info("promoted encoder %s (%s)", report.encoder_id, report.reason)
    else:
        logger.info("kept encoder %s: %s", base, report.reason)


def _relabel_after_promotion(report: EncoderRound, settings: Settings, store: Store) -> None:
    """Re-label the store with the promoted encoder, then release."""
    from prefect.concurrency.sync import concurrency

    from convoice.flows.release import STORE_LIMIT

    registry = EncoderRegistry(store.location)
    weights = registry.weights(report.encoder_id, loaders.cache_dir() / "encoders")
    with concurrency(STORE_LIMIT, occupy=1):  # no ingest or pull writes meanwhile
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
    machine = store.clips()
    if machine.num_rows == 0:
        return report
    rows = machine.to_pylist()  # the machine's rows; people's labels come from `latest`
    latest = latest_values(store.labels().to_pylist())
    order = ingest_order(store.recordings().select(["recording_id", "ingested_at"]).to_pylist())
    known = dict(known or {})
    missing = [r for r in rows if r["clip_id"] not in known]
    if missing:
        fresh = _embed(kind, weights, enc.read_waves(store, [r["audio_uri"] for r in missing]))
        known.update(zip([r["clip_id"] for r in missing], fresh, strict=True))
    embeddings = np.stack([known[r["clip_id"]] for r in rows]).astype(np.float32)
    merged = {m.merged: m.kept for m in merges(store)}
    old_speakers = {s.speaker_id: s for s in store.speakers()}
    before = store.materialized_clips().to_pylist()
    scale = _scale(kind, settings)
    cal = stored_calibration.current(store.location)  # as the ingest routes
    result = _replay(scale, settings, order, rows, embeddings, merged, old_speakers, latest, cal)
    if kind == "campplus":
        name = enc.campplus_name(encoder_name)
        rows_out = relabelled_rows(machine, result.labels, known, name, "speaker_embedding")
    else:
        rows_out = relabelled_rows(machine, result.labels, known, enc.encoder_name(encoder_name))
    # What people's decisions add to the machine's registry, against the new machine rows.
    desired = desired_contributions({r["clip_id"]: r for r in rows_out.to_pylist()}, latest, merged)
    stale = set(review_contributions(store)) - set(desired)
    contributions = [*desired.values(), *(Contribution(c) for c in sorted(stale))]
    write_relabel(store, rows_out, result.speakers, contributions)
    after = store.materialized_clips().to_pylist()
    report.clips = len(rows)
    old_by_id = {r["clip_id"]: r for r in before}
    machine_rows = [r for r in after if r["speaker_label_source"] != LabelSource.HUMAN]
    report.machine_labelled = len(machine_rows)
    report.speaker_changed = sum(
        1 for r in machine_rows if r["speaker_id"] != old_by_id[r["clip_id"]]["speaker_id"]
    )
    # The machine's review rate (its own statuses), and the queue people still face.
    report.review_before, report.review_speech_before = review_share(
        machine["status"].to_pylist(), machine["duration"].to_pylist()
    )
    report.review_after, report.review_speech_after = review_share(
        [result.labels[c].status for c in machine["clip_id"].to_pylist()],
        machine["duration"].to_pylist(),
    )
    report.queue_before = sum(1 for r in before if r["status"] == ClipStatus.REVIEW)
    report.queue_after = sum(1 for r in after if r["status"] == ClipStatus.REVIEW)
    report.speakers_before, report.speakers_after = len(old_speakers), len(result.speakers)
    return report


def _trained_on(store: Store, registry: EncoderRegistry, release: Release, kind: str) -> str:
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


def ingest_order(recordings: list[dict[str, Any]]) -> list[str]:
    """Recording ids in the order they were ingested (the order the replay follows)."""
    rows = sorted(recordings, key=lambda r: (r["ingested_at"] or "", r["recording_id"]))
    return [r["recording_id"] for r in rows]


def _recording_order(store: Store, release: Release) -> list[str]:
    """The release's recordings in the order they were ingested."""
    table = read_release_table(
        store.location, release.version, "recordings", ["recording_id", "ingested_at"]
    )
    return ingest_order(table.to_pylist())


def round_json(report: EncoderRound) -> str:
    """The round as JSON (for scripts and the loop's artifact)."""
    return json.dumps(asdict(report), indent=2, default=str)
