"""Close the loop on identities: retrain the speaker encoder, judge it, re-label, release.

One round (``convoice retrain encoder``):

1. train on a release's ``train`` split: clips the machine accepted with a
   speaker confidence above ``[encoder] min_confidence`` (GE2E fine-tuning of
   the current encoder, resumable, tracked in TensorBoard);
2. score the current and the candidate encoder on the release's ``heldout``
   split, the clips people labelled (EER, B-cubed F1 of a labelling replay,
   review share: :mod:`convoice.models.encoder_eval`);
3. register the candidate with its figures; promote it only when it is better;
4. after a promotion, re-embed every clip of the store, work the identities
   out again (people's labels stay), re-route, and release.

It only composes: arithmetic in :mod:`convoice.models`, audio and training in
:mod:`convoice.tasks.encoder`, writes in :mod:`convoice.storage`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from convoice.config import Settings, load_settings
from convoice.models.encoder_eval import (
    EncoderMetrics,
    evaluation_rows,
    is_better,
    score,
    training_rows,
)
from convoice.models.ge2e import FloatArray, NotEnoughData
from convoice.models.relabel import ClipFacts, Replay, replay, resolve_merges, review_share
from convoice.models.review_registry import Contribution, desired_contributions, latest_values
from convoice.storage import Release, Store
from convoice.storage.encoders import EncoderCard, EncoderRegistry
from convoice.storage.labels import now_iso
from convoice.storage.relabel import relabelled_rows, write_relabel
from convoice.storage.releases import read_release_table
from convoice.storage.review import contributions as review_contributions
from convoice.storage.review import merges
from convoice.tasks import encoder as enc
from convoice.tasks import loaders
from convoice.tasks.tracking import open_run

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
    encoder_id: str = ""
    n_train_clips: int = 0
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

    def summary(self) -> str:
        if self.skipped:
            return f"encoder retraining skipped: {self.skipped}"
        lines = [
            f"trained {self.encoder_id} from {self.base_encoder} on {self.dataset}: "
            f"{self.n_train_clips} clips of {self.n_train_speakers} speakers, {self.steps} steps"
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
            return str(r["speaker_id"]) if r["speaker_label_source"] == "human" else ""
        decided = r["labelled_by"] and r["status"] in ("accepted", "rejected")
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
    settings: Settings,
    order: list[str],
    rows: list[dict[str, Any]],
    embeddings: FloatArray,
    merged: dict[str, str],
    previous: dict[str, Any] | None = None,
    latest: dict[tuple[str, str], dict[str, str]] | None = None,
) -> Replay:
    return replay(
        order, _facts(rows, latest), embeddings, merged, settings.registry, settings.routing,
        previous=previous, at=now_iso(),
    )  # fmt: skip


def _evaluate(
    settings: Settings,
    rows: list[dict[str, Any]],
    order: list[str],
    embeddings: FloatArray,
    merged: dict[str, str],
) -> EncoderMetrics:
    """Figures of one encoder (its embeddings of the release's clips) on the held-out set."""
    heldout = evaluation_rows(rows)
    result = _replay(settings, order, rows, embeddings, merged)
    truth = [resolve_merges(rows[i]["speaker_id"], merged) for i in heldout]
    predicted = [result.labels[rows[i]["clip_id"]].speaker_id for i in heldout]
    statuses = [result.labels[r["clip_id"]].status for r in rows]
    shares = review_share(statuses, [float(r["duration"]) for r in rows])
    return score(embeddings[heldout], truth, predicted, shares)


def _embed(encoder_weights: str, waves: list[FloatArray]) -> FloatArray:
    return enc.embed_waves(loaders.new_voice_encoder(encoder_weights), waves)


@flow(name="convoice-retrain-encoder", log_prints=True)
def retrain_encoder_flow(
    dataset: str | None = None,
    home: str | None = None,
    config: str | None = None,
    steps: int | None = None,
    resume: str | None = None,
    relabel: bool = True,
    force: bool = False,
) -> EncoderRound:
    """One round: train on ``dataset`` (default: the latest release), judge, promote, re-label.

    ``resume`` is the run id of a killed training run to continue from its
    last checkpoint. With ``relabel=False`` a promotion does not re-label. A
    release trained on before is skipped unless ``force``.
    """
    logger = get_run_logger()
    settings = load_settings(config, home=home)
    cfg = settings.encoder
    store = Store.open(settings)
    registry = EncoderRegistry(store.location)
    release = _release(store, dataset)
    base = registry.current()
    report = EncoderRound(dataset=release.name, run_id=resume or "", base_encoder=base)
    seen = _trained_on(store, registry, release)
    if seen and not force and resume is None:
        report.skipped = (
            f"{release.name} has no recordings or people's labels that {seen} did not have, "
            "and an encoder was trained on that already; use force to train anyway"
        )
        logger.info(report.summary())
        return report
    rows = read_release_table(store.location, release.version, "clips")
    rows_list = rows.select([c for c in RELEASE_COLUMNS if c in rows.column_names]).to_pylist()
    order = _recording_order(store, release)
    merged = {m.merged: m.kept for m in merges(store)}
    train = training_rows(rows_list, cfg.min_confidence, cfg.min_clips_per_speaker)
    heldout = evaluation_rows(rows_list)
    train_speakers = sorted({rows_list[i]["speaker_id"] for i in train})
    report.n_train_clips, report.n_train_speakers = len(train), len(train_speakers)
    if len(train_speakers) < 2 or len({rows_list[i]["speaker_id"] for i in heldout}) < 2:
        report.skipped = (
            f"{release.name} has {len(train)} training clips of {len(train_speakers)} speakers "
            f"and {len(heldout)} held-out clips: GE2E and EER need 2 speakers or more on each side"
        )
        logger.info(report.summary())
        return report
    run = open_run(settings, "encoder", resume)
    report.run_id = run.run_id
    cache = loaders.cache_dir() / "encoders"
    base_weights = registry.weights(base, cache)
    logger.info(
        "encoder round on %s: %d training clips of %d speakers, %d held-out clips; base %s",
        release.name, len(train), len(train_speakers), len(heldout), base,
    )  # fmt: skip
    run.log_params(
        {
            "dataset": release.name,
            "dataset_tag": release.tag or "",
            "base_encoder": base,
            "n_train_clips": len(train),
            "n_train_speakers": len(train_speakers),
            "n_heldout_clips": len(heldout),
            "settings": asdict(cfg),
        }
    )
    waves = enc.read_waves(store, [r["audio_uri"] for r in rows_list])
    current_emb = _embed(base_weights, waves)
    report.current = _evaluate(settings, rows_list, order, current_emb, merged)
    logger.info("current encoder %s: %s", base, report.current.line())

    mels = enc.mel_spectrograms([waves[i] for i in train])

    def progress(step: int, total: int, loss: float) -> None:
        if step == 1 or step % 10 == 0 or step == total:
            logger.info("GE2E step %d/%d loss %.4f", step, total, loss)

    result = enc.train_ge2e(
        base_weights, mels, [rows_list[i]["speaker_id"] for i in train], cfg, run, steps, progress
    )
    report.steps, report.resumed_from = result.steps, result.resumed_from
    report.first_loss, report.last_loss = result.first_loss, result.last_loss
    report.train_seconds = result.seconds
    candidate_emb = _embed(str(result.weights), waves)
    report.candidate = _evaluate(settings, rows_list, order, candidate_emb, merged)
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
        n_train_speakers=len(train_speakers),
    )
    registry.register(card, result.weights)
    run.close()
    if better:
        registry.promote(report.encoder_id)
        report.promoted = True
        logger.info("promoted encoder %s (%s)", report.encoder_id, report.reason)
        if relabel:
            from prefect.concurrency.sync import concurrency

            from convoice.flows.release import STORE_LIMIT

            known = dict(zip([r["clip_id"] for r in rows_list], candidate_emb, strict=True))
            with concurrency(STORE_LIMIT, occupy=1):  # no ingest or pull writes meanwhile
                report.relabel = relabel_store(
                    store, settings, report.encoder_id, str(result.weights), known
                )
                released = store.release(note=f"re-labelled with encoder {report.encoder_id}")
            logger.info(report.relabel.line())
            report.release = released.name
    else:
        logger.info("kept encoder %s: %s", base, report.reason)
    logger.info(report.summary())
    create_markdown_artifact(
        f"# Encoder round on {release.name}\n\n```\n{report.summary()}\n```\n",
        key="encoder-round",
        description="Speaker encoder retraining",
    )
    return report


def relabel_store(
    store: Store,
    settings: Settings,
    encoder_name: str,
    weights: str,
    known: dict[str, FloatArray] | None = None,
) -> RelabelReport:
    """Re-embed every clip with ``weights``, re-identify, re-route, write (people's labels stay).

    ``known`` holds embeddings already computed with the same weights, by clip id.
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
        fresh = _embed(weights, enc.read_waves(store, [r["audio_uri"] for r in missing]))
        known.update(zip([r["clip_id"] for r in missing], fresh, strict=True))
    embeddings = np.stack([known[r["clip_id"]] for r in rows]).astype(np.float32)
    merged = {m.merged: m.kept for m in merges(store)}
    old_speakers = {s.speaker_id: s for s in store.speakers()}
    before = store.materialized_clips().to_pylist()
    result = _replay(settings, order, rows, embeddings, merged, old_speakers, latest)
    rows_out = relabelled_rows(machine, result.labels, known, enc.encoder_name(encoder_name))
    # What people's decisions add to the machine's registry, against the new machine rows.
    desired = desired_contributions({r["clip_id"]: r for r in rows_out.to_pylist()}, latest, merged)
    stale = set(review_contributions(store)) - set(desired)
    contributions = [*desired.values(), *(Contribution(c) for c in sorted(stale))]
    write_relabel(store, rows_out, result.speakers, contributions)
    after = store.materialized_clips().to_pylist()
    report.clips = len(rows)
    old_by_id = {r["clip_id"]: r for r in before}
    machine_rows = [r for r in after if r["speaker_label_source"] != "human"]
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
    report.queue_before = sum(1 for r in before if r["status"] == "review")
    report.queue_after = sum(1 for r in after if r["status"] == "review")
    report.speakers_before, report.speakers_after = len(old_speakers), len(result.speakers)
    return report


def _trained_on(store: Store, registry: EncoderRegistry, release: Release) -> str:
    """A release trained on before with the same recordings and people's labels ("" if none).

    A re-labelling release changes only the machine's labels: training on it
    again would learn from the encoder's own output, so it does not count as new.
    """
    trained = {c.dataset for c in registry.cards()}
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
