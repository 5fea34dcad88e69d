"""``convoice bench --round``: one turn of the loop, people answering through Label Studio.

1. The corpus (the reporting half by default) is cut by episode: the first
   half is ingested, the second half is kept for after the round.
2. A real Label Studio is started for the store, ``review push`` sends it the
   review queue, and a simulated annotator answers every task through Label
   Studio's API as its page does (:mod:`convoice.bench.annotator`: the voice
   that really speaks, from the corpus truth); ``review pull`` brings the
   answers in.
3. The store is copied: the copy is "no round" (people's answers in, the
   encoder as it was). ``convoice loop`` runs on the store itself (pull,
   release, the encoder round that trains CAM++ on people's labels and judges
   on the held-out share, re-label, push).
4. The second half of the episodes is ingested into both; the machine's
   review share of speech and the accuracy of its accepted speaker labels on
   those new episodes are compared, with the encoder's EER on the judged
   people's labels before and after.

It only composes flows and tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from convoice.bench.quality import bench_corpus, corpus_truth, episodes_by_recording
from convoice.config import load_settings
from convoice.engines import loaders
from convoice.flows.ingest import run_ingest
from convoice.models import evaluation
from convoice.records import SPEAKER_REASONS, ClipStatus
from convoice.storage import Store
from convoice.synth import samples
from convoice.synth.serve import (
    BENCH_PORT,
    free_port,
    serve_preferring,
    served_note,
    write_sources_csv,
)

REVIEW_DROP = 0.30  # the bar: review share down by this share or more ...
# ... at equal or better accuracy of accepted speaker labels, and a lower EER.


@dataclass
class RoundFigures:
    """The machine's labels of the episodes ingested after the round."""

    clips: int = 0
    review_share_of_speech: float = 0.0
    accepted_speaker_accuracy: float = 0.0
    accepted_clips: int = 0
    bcubed_f1: float = 0.0
    speaker_review_share_of_speech: float = 0.0  # clips with a routing.SPEAKER_REASONS reason
    # clips with a reason that is not the speaker's: the review share no encoder can take away
    other_review_share_of_speech: float = 0.0

    def line(self) -> str:
        return (
            f"{self.clips} clips: review {self.review_share_of_speech:.3f} of speech "
            f"({self.speaker_review_share_of_speech:.3f} for the speaker, "
            f"{self.other_review_share_of_speech:.3f} for other reasons), accepted "
            f"speaker labels right {self.accepted_speaker_accuracy:.4f} ({self.accepted_clips} "
            f"clips), B-cubed F1 {self.bcubed_f1:.4f}"
        )


@dataclass
class RoundResult:
    corpus: str
    first_episodes: int = 0
    later_episodes: int = 0
    pushed: int = 0
    annotator: str = ""
    pulled: str = ""
    loop: str = ""
    eer_before: float = float("nan")
    eer_after: float = float("nan")
    judged_clips: int = 0
    people_train_clips: int = 0
    promoted: bool = False
    decision: str = ""  # the round's promotion decision, as its card says it
    scale_fit: str = ""  # how the candidate's thresholds were fitted
    judged_review: tuple[float, float] = (float("nan"), float("nan"))  # current, candidate
    judged_right: tuple[float, float] = (float("nan"), float("nan"))  # accepted right, judged
    judged_speaker: tuple[float, float] = (float("nan"), float("nan"))  # speaker review share
    baseline: RoundFigures = field(default_factory=RoundFigures)
    after: RoundFigures = field(default_factory=RoundFigures)
    seconds: float = 0.0
    served_on: str = ""

    @property
    def review_drop(self) -> float:
        before = self.baseline.review_share_of_speech
        return 1.0 - self.after.review_share_of_speech / before if before else 0.0

    def bars(self) -> dict[str, bool]:
        return {
            f"review share down >= {REVIEW_DROP:.0%}": self.review_drop >= REVIEW_DROP,
            "accepted speaker labels right, equal or better": (
                self.after.accepted_speaker_accuracy >= self.baseline.accepted_speaker_accuracy
            ),
            "promoted encoder's EER on judged people's labels lower": (
                self.promoted and self.eer_after < self.eer_before
            ),
        }

    def render(self) -> str:
        lines = [
            f"One round on {self.corpus}: {self.first_episodes} episodes before the round, "
            f"{self.later_episodes} after ({self.seconds:.0f} s; machine shared)",
            f"  {served_note(self.served_on)}",
            f"  review push: {self.pushed} tasks; {self.annotator}",
            f"  review pull: {self.pulled}",
            "  convoice loop:",
            *(f"    {line}" for line in self.loop.splitlines()),
            f"  encoder EER on {self.judged_clips} judged people's labels: {self.eer_before:.4f}"
            f" -> {self.eer_after:.4f} ({'promoted' if self.promoted else 'not promoted'}; "
            f"{self.people_train_clips} people's labels trained on)",
            f"  on the round's clips (cross-fitted): review of speech {self.judged_review[0]:.3f}"
            f" -> {self.judged_review[1]:.3f}, for the speaker {self.judged_speaker[0]:.3f} -> "
            f"{self.judged_speaker[1]:.3f}; judged clips' accepted speaker labels right "
            f"{self.judged_right[0]:.3f} -> {self.judged_right[1]:.3f}; {self.decision}",
            f"  candidate's scale: {self.scale_fit}",
            f"  later episodes, no round:   {self.baseline.line()}",
            f"  later episodes, after round: {self.after.line()}",
            f"  review share {self.baseline.review_share_of_speech:.3f} -> "
            f"{self.after.review_share_of_speech:.3f} of speech ({self.review_drop:+.1%} drop); "
            f"for the speaker {self.baseline.speaker_review_share_of_speech:.3f} -> "
            f"{self.after.speaker_review_share_of_speech:.3f}; for other reasons "
            f"{self.baseline.other_review_share_of_speech:.3f} -> "
            f"{self.after.other_review_share_of_speech:.3f}",
        ]
        lines += [
            f"  bar: {name}: {'met' if ok else 'NOT met'}" for name, ok in self.bars().items()
        ]
        return "\n".join(lines)

    def to_json(self) -> str:
        data = asdict(self)
        data["review_drop"] = self.review_drop
        data["bars"] = self.bars()
        return json.dumps(data, indent=2, default=str)


def run_round(
    quick: bool = False, split: str = "report", workdir: str | None = None, encoder_steps: int = 0
) -> RoundResult:
    """One round on half the episodes, judged on the other half (see the module docs)."""
    started = time.perf_counter()
    root = Path(workdir) if workdir else loaders.cache_dir() / ("bench-quick" if quick else "bench")
    corpus, _ = bench_corpus(root, quick, split, None)
    half = (len(corpus.episodes) + 1) // 2
    first, later = corpus.episodes[:half], corpus.episodes[half:]
    result = RoundResult(
        corpus=f"{split if not quick else 'quick'} corpus", first_episodes=len(first),
        later_episodes=len(later),
    )  # fmt: skip
    home = Path(tempfile.mkdtemp(prefix="convoice-round-"))
    try:
        with serve_preferring(corpus.root, BENCH_PORT) as base_url:
            result.served_on = base_url
            _run_round_in(home, base_url, corpus, later, result, encoder_steps)
    finally:
        shutil.rmtree(home, ignore_errors=True)  # the round's stores: 100+ MB each run
    result.seconds = time.perf_counter() - started
    return result


def _run_round_in(
    home: Path,
    base_url: str,
    corpus: samples.Corpus,
    later: Sequence[samples.Episode],
    result: RoundResult,
    encoder_steps: int,
) -> None:
    """Ingest the first episodes, run the people's round on them, then ingest the later ones
    into a copy without the round (the baseline) and into the store after it."""
    sources = write_sources_csv(corpus, base_url, home / "all.csv")
    lines = sources.read_text().splitlines()
    names = [ep.media_path.name for ep in later]
    first_csv, later_csv = home / "first.csv", home / "later.csv"
    first_csv.write_text("\n".join(ln for ln in lines if not _names(ln, names)) + "\n")
    later_csv.write_text(
        "\n".join(ln for i, ln in enumerate(lines) if i == 0 or _names(ln, names)) + "\n"
    )
    store_home = home / "store"
    run_ingest(sources_file=str(first_csv), home=str(store_home))
    _people_round(result, store_home, corpus, encoder_steps)
    baseline_home = home / "baseline"
    for target, figures in ((baseline_home, "baseline"), (store_home, "after")):
        run_ingest(sources_file=str(later_csv), home=str(target))
        setattr(result, figures, _figures(Store(str(target)), corpus, later))


def _names(line: str, names: list[str]) -> bool:
    url = line.split(",", 1)[0]
    return any(url.endswith("/" + name) for name in names)


def _people_round(result: RoundResult, home: Path, corpus: samples.Corpus, steps: int) -> None:
    """Push, annotate through Label Studio, pull, copy the baseline, run the loop."""
    from convoice.bench import annotator
    from convoice.flows.loop import loop_flow
    from convoice.flows.review import review_pull_flow, review_push_flow
    from convoice.review import server as review_server
    from convoice.review.client import connection, local_server

    os.environ["CONVOICE_REVIEW__PORT"] = str(free_port())
    settings = load_settings(home=str(home))
    store = Store.open(settings)
    program = review_server.ensure_venv()
    proc, _ = review_server.start(local_server(settings, store), program, timeout_s=600)
    try:
        result.pushed = review_push_flow(home=str(home)).pushed
        voices = _voices(store, corpus)
        answers = annotator.speaker_answers(store.materialized_clips().to_pylist(), voices)
        conn = connection(settings, store)
        report = annotator.annotate_project(
            conn.url, conn.token, settings.review.project_title, answers
        )
        result.annotator = report.line()
        result.pulled = review_pull_flow(home=str(home)).summary()
        shutil.copytree(
            home, home.parent / "baseline", ignore=shutil.ignore_patterns("labelstudio")
        )
        loop = loop_flow(home=str(home), encoder_steps=steps or None)
        result.loop = loop.summary()
    finally:
        if proc is not None:
            review_server.stop_process(proc.pid)
    _encoder_figures(result, store)


def _encoder_figures(result: RoundResult, store: Store) -> None:
    from convoice.storage.encoders import EncoderRegistry

    cards = [c for c in EncoderRegistry(store.location).cards() if c.kind == "campplus"]
    if cards:
        card = cards[-1]
        result.eer_before = card.baseline_metrics.get("eer", float("nan"))
        result.eer_after = card.metrics.get("eer", float("nan"))
        result.judged_clips = int(card.metrics.get("n_eval_clips", 0))
        result.people_train_clips = card.n_people_train_clips
        result.promoted = card.decision.startswith("promoted")
        result.decision, result.scale_fit = card.decision, card.scale_fit
        old, new, nan = card.baseline_metrics, card.metrics, float("nan")
        result.judged_review = (
            old.get("review_speech_share", nan),
            new.get("review_speech_share", nan),
        )
        result.judged_right = (old.get("accepted_right", nan), new.get("accepted_right", nan))
        key = "speaker_review_speech_share"
        result.judged_speaker = (old.get(key, nan), new.get(key, nan))


def _voices(store: Store, corpus: samples.Corpus) -> dict[str, str]:
    """clip id -> the voice that speaks most of it (the corpus truth)."""
    truth = corpus_truth(episodes_by_recording(store, corpus), corpus)
    out: dict[str, str] = {}
    for clip in store.clips().to_pylist():
        turns = truth.get(clip["recording_id"])
        if turns:
            out[clip["clip_id"]] = evaluation.clip_truth(clip, turns)[0]
    return out


def _figures(store: Store, corpus: samples.Corpus, episodes: Any) -> RoundFigures:
    """The machine's labels of ``episodes`` in ``store`` against the truth."""
    wanted = {ep.media_path.name for ep in episodes}
    by_rec = {
        rid: ep for rid, ep in episodes_by_recording(store, corpus).items()
        if ep.media_path.name in wanted
    }  # fmt: skip
    truth = corpus_truth(by_rec, corpus)
    clips = [c for c in store.clips().to_pylist() if c["recording_id"] in by_rec]
    raw = sum(ep.duration for ep in by_rec.values())
    out = evaluation.score(clips, truth, raw)
    seconds = [c["end"] - c["start"] for c in clips]
    reasons = [set(c["review_reasons"] or ()) for c in clips]

    def share(flags: list[bool]) -> float:
        return sum(s for s, f in zip(seconds, flags, strict=True) if f) / sum(seconds)

    return RoundFigures(
        speaker_review_share_of_speech=share([bool(r & SPEAKER_REASONS) for r in reasons])
        if clips
        else 0.0,
        other_review_share_of_speech=share([bool(r - SPEAKER_REASONS) for r in reasons])
        if clips
        else 0.0,
        clips=len(clips),
        review_share_of_speech=out["review_share_of_speech"],
        accepted_speaker_accuracy=out["accepted_speaker_accuracy"],
        accepted_clips=sum(1 for c in clips if c["status"] == ClipStatus.ACCEPTED),
        bcubed_f1=out["bcubed_f1_cross_episode"],
    )
