"""The whole loop as one run: ingest, people's decisions in, release, retrain, re-label, out again.

``convoice loop`` (and the ``loop`` deployment) runs, in order:

1. ``ingest``   label new items of the sources (done recordings are skipped);
2. ``pull``     apply the decisions people made in Label Studio since the last run;
3. ``calibrate`` refit the confidences on people's labels (judged on a held-out
   half of them; saved only when no worse there): later clips are labelled with it;
4. ``vocabulary`` learn the words Whisper got wrong from people's corrections, then
   transcribe the channels' clips again with them (round two, ``retranscribe``);
5. ``release``  publish a version when any table changed;
6. ``encoder``  retrain the encoder that identifies (CAM++) on the latest
   release's sure machine clips and people's labels, promote it when the
   judged share of people's labels says it is better, then re-label and
   release again (:mod:`convoice.flows.retrain`);
7. ``tts``      (opt-in) fine-tune the voice-cloning TTS on the latest release;
8. ``push``     send the clips that now need a person to Label Studio.

Every step skips, with its reason, when it has nothing to do (no sources, no
Label Studio, nothing changed, a release trained on already), and a step that
fails is reported without stopping the steps after it that do not need it, so
an operator can schedule the loop and walk away. It only composes flows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact


class Outcome(StrEnum):
    """What a step of the loop did."""

    RAN = "ran"
    SKIPPED = "skipped"
    FAILED = "failed"


RAN, SKIPPED, FAILED = Outcome.RAN, Outcome.SKIPPED, Outcome.FAILED


@dataclass
class Step:
    name: str
    outcome: str  # an Outcome: ran / skipped / failed
    detail: str


@dataclass
class LoopReport:
    steps: list[Step] = field(default_factory=list)

    def add(self, name: str, outcome: str, detail: str) -> None:
        self.steps.append(Step(name, outcome, detail.strip()))

    def outcome(self, name: str) -> str:
        return next((s.outcome for s in self.steps if s.name == name), "")

    def summary(self) -> str:
        return "\n".join(f"{s.name:10} {s.outcome:8} {s.detail}" for s in self.steps)

    def markdown(self) -> str:
        rows = "\n".join(
            f"| {s.name} | {s.outcome} | {s.detail.replace('|', '/').replace(chr(10), '<br>')} |"
            for s in self.steps
        )
        return f"# Loop run\n\n| step | outcome | what happened |\n|---|---|---|\n{rows}\n"


def _step(
    report: LoopReport, name: str, work: Callable[[LoopRun], tuple[str, str]], run: LoopRun
) -> None:
    """Run one step; an exception is the step's failure, not the loop's."""
    logger = get_run_logger()
    try:
        outcome, detail = work(run)
    except Exception as err:  # one failing step never loses the others' work
        outcome, detail = FAILED, f"{type(err).__name__}: {err}"
        logger.error("loop step %s failed: %s", name, detail)
    else:
        logger.info("loop step %s %s: %s", name, outcome, detail)
    report.add(name, outcome, detail)


@dataclass(frozen=True)
class LoopRun:
    """The loop's parameters, as its steps read them."""

    home: str | None
    sources_file: str | None
    config: str | None
    tts: bool
    encoder_steps: int | None
    retranscribe: bool


def ingest(run: LoopRun) -> tuple[str, str]:
    from convoice.flows.ingest import run_ingest

    if not run.sources_file:
        return SKIPPED, "no sources file given"
    result = run_ingest(sources_file=run.sources_file, home=run.home, config=run.config)
    if result.stopped:  # a full disk: the loop's later steps write too, so it stops here
        raise RuntimeError(result.stopped)
    return RAN, result.summary()


def reachable(run: LoopRun) -> str:
    """Why no Label Studio can be asked ("" when one is configured)."""
    from convoice.config import load_settings
    from convoice.review.client import ReviewServerError, connection
    from convoice.storage import Store

    settings = load_settings(run.config, home=run.home)
    try:
        connection(settings, Store.open(settings))
    except ReviewServerError as err:
        return str(err)
    return ""


def _review(run: LoopRun, direction: str) -> tuple[str, str]:
    """Pull people's answers from, or push the queue to, Label Studio: skipped when it is away."""
    from convoice.flows import review

    if why := reachable(run):
        return SKIPPED, why
    step = review.review_pull_flow if direction == "pull" else review.review_push_flow
    try:
        return RAN, step(home=run.home, config=run.config).summary()
    except review.ReviewIncomplete as err:
        return SKIPPED, f"Label Studio not reachable, nothing lost: {err}"


def pull(run: LoopRun) -> tuple[str, str]:
    return _review(run, "pull")


def calibrate(run: LoopRun) -> tuple[str, str]:
    from convoice.training.calibrate import refit_from_labels

    result = refit_from_labels(run.home, config=run.config)
    return (RAN if result.saved else SKIPPED), result.render()


def vocabulary(run: LoopRun) -> tuple[str, str]:
    if not run.retranscribe:
        return SKIPPED, "not asked for (retranscribe=False / --no-retranscribe)"
    from convoice.flows.retranscribe import retranscribe_flow

    result = retranscribe_flow(home=run.home, config=run.config)
    return (RAN if result.transcribed or result.learned_terms else SKIPPED), result.summary()


def release(run: LoopRun) -> tuple[str, str]:
    from convoice.flows.release import release_flow

    made = release_flow(home=run.home, note="loop")
    if made is None:
        return SKIPPED, "nothing changed since the latest release (or no clips yet)"
    return RAN, f"released {made.name}: {made.n_clips} clips, {made.n_speakers} speakers"


def encoder(run: LoopRun) -> tuple[str, str]:
    from convoice.flows.retrain import retrain_encoder_flow
    from convoice.models.ge2e import NotEnoughData

    try:
        result = retrain_encoder_flow(home=run.home, config=run.config, steps=run.encoder_steps)
    except NotEnoughData as err:
        return SKIPPED, str(err)
    return (SKIPPED if result.skipped else RAN), result.summary()


def retrain_tts(run: LoopRun) -> tuple[str, str]:
    if not run.tts:
        return SKIPPED, "not asked for (tts=True / --tts)"
    from convoice.flows.tts import retrain_tts_flow

    result: Any = retrain_tts_flow(home=run.home)
    return RAN, result.summary()


def push(run: LoopRun) -> tuple[str, str]:
    return _review(run, "push")


STEPS: tuple[tuple[str, Callable[[LoopRun], tuple[str, str]]], ...] = (
    ("ingest", ingest),
    ("pull", pull),
    ("calibrate", calibrate),
    ("vocabulary", vocabulary),
    ("release", release),
    ("encoder", encoder),
    ("tts", retrain_tts),
    ("push", push),
)
"""The loop's steps, in order (see the module docs)."""


@flow(name="convoice-loop", log_prints=True)
def loop_flow(
    home: str | None = None,
    sources_file: str | None = None,
    config: str | None = None,
    tts: bool = False,
    encoder_steps: int | None = None,
    retranscribe: bool = True,
) -> LoopReport:
    """One turn of the loop (see the module docs); ``tts`` adds the TTS fine-tune."""
    run = LoopRun(home, sources_file, config, tts, encoder_steps, retranscribe)
    report = LoopReport()
    for name, work in STEPS:
        _step(report, name, work, run)
    get_run_logger().info("loop done:\n%s", report.summary())
    create_markdown_artifact(report.markdown(), key="loop", description="Loop run summary")
    return report
