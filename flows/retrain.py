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
   B-cubed F1 of a labelling replay, review share, precision of what it
   accepts: :mod:`convoice.models.encoder_eval`), the candidate on its own
   thresholds, its parent's moved onto its cosines and cross-fitted on the
   judged clips (:mod:`convoice.training.encoder_judge`);
3. register the candidate with its figures, thresholds and calibration;
   promote it only when it routes no worse and is better;
4. after a promotion, re-embed every clip of the store, work the identities
   out again (people's labels stay), re-route, and release.

It only composes: the steps in :mod:`convoice.training.round_store`, the
encoders and the round's figures in :mod:`convoice.training.encoder_round`,
arithmetic in :mod:`convoice.models`, writes in :mod:`convoice.storage`.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from convoice.config import load_settings
from convoice.storage import Store
from convoice.storage.encoders import EncoderRegistry
from convoice.training.encoder_round import EncoderRound
from convoice.training.round_store import (
    count_training,
    encoder_kind,
    relabel_after_promotion,
    release_of,
    round_data,
    train_and_judge,
    trained_on,
)


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
    kind = encoder_kind(settings, store, encoder)
    registry = EncoderRegistry(store.location)
    release = release_of(store, dataset)
    base = registry.current(kind)
    report = EncoderRound(dataset=release.name, run_id=resume or "", base_encoder=base, kind=kind)
    seen = trained_on(store, registry, release, kind)
    if seen and not force and resume is None:
        report.skipped = (
            f"{release.name} has no recordings or people's labels that {seen} did not have, "
            f"and a {kind} encoder was trained on that already; use force to train anyway"
        )
        logger.info(report.summary())
        return report
    data = round_data(store, release, settings)
    count_training(report, data)
    report.skipped = data.too_few()
    if report.skipped:
        logger.info(report.summary())
        return report
    train_and_judge(report, settings, store, data, resume, steps)
    if report.promoted and relabel:
        relabel_after_promotion(report, settings, store)
    report.known = {}  # the candidate's vectors are not part of the round's record
    logger.info(report.summary())
    create_markdown_artifact(
        f"# Encoder round on {release.name}\n\n```\n{report.summary()}\n```\n",
        key="encoder-round",
        description="Speaker encoder retraining",
    )
    return report
