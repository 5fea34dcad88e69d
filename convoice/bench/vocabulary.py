"""``convoice bench --vocabulary``: does round two fix the names people corrected?

One channel of episodes whose speakers keep naming the same uncommon people
and places (:mod:`convoice.bench.vocabulary_corpus`) is served on 127.0.0.1 and
ingested by the real flow. The clips of the first episodes that need review
are pushed to a real Label Studio, and an annotator corrects their
transcripts through its API; the review pull makes them people's labels. Then,
on the other episodes, against the reference transcripts:

- how each way of telling Whisper the learned words does on the same clips
  (none, ``hotwords``, ``initial_prompt``), in memory;
- round two itself (``convoice retranscribe``, ``[asr] vocabulary_mode``):
  WER on the recurring words and overall, the review share, before and after;
  people's transcripts byte-identical; the time round two took, per hour of
  the channel's audio; and what the release after it says changed.
"""

from __future__ import annotations

import csv
import dataclasses
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convoice.bench.vocabulary_corpus import RECURRING, ChannelEpisode, Turn, clip_reference
from convoice.config import environment
from convoice.models.evaluation import words_heard
from convoice.models.metrics import WerCount, wer_count
from convoice.models.vocabulary import TermErrors, term_errors
from convoice.records import ClipStatus, LabelSource, StoredClip, Transcript
from convoice.storage import Store
from convoice.storage.rows import clip_records
from convoice.synth.serve import BENCH_PORT, free_port, serve_preferring, served_note


@dataclass
class Figures:
    """Scores of the other episodes' clips at one moment."""

    terms: TermErrors = field(default_factory=TermErrors)
    wer: WerCount = field(default_factory=lambda: WerCount(0, 0))
    clips: int = 0
    review: int = 0

    @property
    def review_share(self) -> float:
        return self.review / self.clips if self.clips else 0.0

    def line(self, name: str) -> str:
        return (
            f"  {name:28} recurring-word WER {self.terms.rate:6.1%} ({self.terms.errors}/"
            f"{self.terms.words})  WER {self.wer.wer:6.1%}  review {self.review_share:6.1%}"
            f" ({self.review}/{self.clips} clips)"
        )


@dataclass
class VocabularyBench:
    split: str
    episodes: int
    corrected_episodes: int
    audio_s: float
    ingest_s: float = 0.0
    annotated: int = 0
    learned: list[str] = field(default_factory=list)
    modes: dict[str, tuple[TermErrors, WerCount, float]] = field(default_factory=dict)
    before: Figures = field(default_factory=Figures)
    after: Figures = field(default_factory=Figures)
    round_two: str = ""
    round_two_s: float = 0.0
    human_clips: int = 0
    human_identical: bool = False
    changes: dict[str, Any] = field(default_factory=dict)
    served_on: str = ""

    def render(self) -> str:
        yes = lambda ok: "yes" if ok else "NO"  # noqa: E731
        halved = yes(self.after.terms.rate <= self.before.terms.rate / 2)
        per_hour = self.round_two_s / (self.audio_s / 3600) if self.audio_s else 0.0
        lines = [
            f"channel: {self.episodes} episodes ({self.split} voices), {self.audio_s:.0f} s of"
            f" audio; ingest {self.ingest_s:.0f} s (machine shared: compare ratios only)",
            served_note(self.served_on),
            f"people corrected {self.annotated} clips of the first {self.corrected_episodes}"
            f" episodes through Label Studio; learned {len(self.learned)} words:"
            f" {', '.join(self.learned)}",
            "the same clips of the other episodes, each way of telling Whisper (in memory, every"
            " new transcript taken):",
        ]
        for mode, (terms, wer, seconds) in self.modes.items():
            lines.append(
                f"  {mode:16} recurring-word WER {terms.rate:6.1%} ({terms.errors}/{terms.words})"
                f"  WER {wer.wer:6.1%}  {seconds:6.1f} s"
            )
        lines += [
            "round two on the other episodes (convoice retranscribe):",
            self.before.line("before"),
            self.after.line("after"),
            f"  recurring-word WER halved or better: {halved};"
            f" overall WER not worse: {yes(self.after.wer.wer <= self.before.wer.wer)};"
            f" review share lower: {yes(self.after.review < self.before.review)}",
            f"  people's transcripts byte-identical: {yes(self.human_identical)}"
            f" ({self.human_clips} clips)",
            f"  round two took {self.round_two_s:.1f} s = {per_hour:.0f} s per hour of the"
            f" channel's audio; {self.round_two}",
            f"  the release after it: {self.changes}",
        ]
        return "\n".join(lines)


def _episode_of(store: Store, episodes: Sequence[ChannelEpisode]) -> dict[str, ChannelEpisode]:
    """Recording id -> the episode it was made from (by file name)."""
    by_name = {e.path.name: e for e in episodes}
    table = store.recordings().select(["recording_id", "url"])
    urls = zip(table["recording_id"].to_pylist(), table["url"].to_pylist(), strict=True)
    return {rid: by_name[url.rsplit("/", 1)[-1]] for rid, url in urls}


def score(clips: Sequence[StoredClip], recordings: Mapping[str, ChannelEpisode]) -> Figures:
    """Recurring-word errors and WER per reference turn (words heard in it), review share."""
    figures = Figures()
    for rid, episode in recordings.items():
        mine = [c for c in clips if c.recording_id == rid]
        figures.clips += len(mine)
        figures.review += sum(c.status == ClipStatus.REVIEW for c in mine)
        said = [(c.start, c.words) for c in mine]
        for turn in episode.turns:
            heard = " ".join(words_heard(said, turn.start, turn.end, 0.3))
            figures.terms += term_errors(turn.text, heard, RECURRING)
            figures.wer += wer_count(turn.text, heard)
    return figures


def corrections(
    clips: Sequence[StoredClip], recordings: Mapping[str, ChannelEpisode]
) -> dict[str, str]:
    """What the annotator types for each clip of ``recordings`` (clip id -> reference text)."""
    texts = {}
    for clip in clips:
        episode = recordings.get(clip.recording_id)
        turns: Sequence[Turn] = episode.turns if episode else ()
        text = clip_reference(clip, turns) if turns else None
        if text is not None:
            texts[clip.clip_id] = text
    return texts


def _people(store: Store) -> dict[str, str | None]:
    table = store.materialized_clips().select(["clip_id", "text", "transcript_label_source"])
    return {
        c.clip_id: c.text
        for c in clip_records(table)
        if c.transcript_label_source == LabelSource.HUMAN
    }


def _review_round(store: Store, home: str, texts: Mapping[str, str]) -> int:
    """Push, annotate through Label Studio's API, pull; how many clips were corrected."""
    from convoice.bench.vocabulary_corpus import annotate
    from convoice.config import load_settings
    from convoice.flows.review import review_pull_flow, review_push_flow
    from convoice.review import server as review_server
    from convoice.review.client import client_for, local_server

    settings = load_settings(home=home)
    server = local_server(settings, store)
    server.data_dir.mkdir(parents=True, exist_ok=True)
    proc, _ = review_server.start(server, review_server.ensure_venv(), timeout_s=600)
    try:
        review_push_flow(home=home)
        client = client_for(settings, store)
        project = client.find_project(settings.review.project_title)
        if project is None:
            raise RuntimeError("the review push made no Label Studio project")
        annotated = annotate(client, project, texts)
        review_pull_flow(home=home)
    finally:
        if proc is not None:
            review_server.stop_process(proc.pid)
    return annotated


def run_vocabulary_benchmark(quick: bool = False, split: str = "report") -> VocabularyBench:
    """The whole case (module docs); every figure from one run."""
    from convoice.bench.vocabulary_corpus import make_channel

    n, first, turns = (4, 2, 8) if quick else (6, 3, 10)
    with tempfile.TemporaryDirectory(prefix="convoice-bench-vocab-") as tmp:
        root = Path(tmp)
        episodes = make_channel(root / "channel", n, turns, split)
        bench = VocabularyBench(split, n, first, sum(e.duration for e in episodes))
        home = str(root / "home")
        with environment({"CONVOICE_REVIEW__PORT": str(free_port())}):
            with serve_preferring(root / "channel", BENCH_PORT) as base_url:
                bench.served_on = base_url
                sources = root / "sources.csv"
                with sources.open("w", newline="") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(["url", "license"])
                    writer.writerows([base_url + e.path.name, "CC-BY-4.0"] for e in episodes)
                _ingest(bench, home, str(sources))
            _second_round(bench, home, episodes, first)
    return bench


def _ingest(bench: VocabularyBench, home: str, sources: str) -> None:
    from convoice.flows.ingest import run_ingest

    started = time.perf_counter()
    run_ingest(sources_file=sources, home=home)
    bench.ingest_s = time.perf_counter() - started


def _second_round(
    bench: VocabularyBench, home: str, episodes: Sequence[ChannelEpisode], first: int
) -> None:
    from convoice.flows.release import release_flow
    from convoice.flows.retranscribe import retranscribe_flow

    store = Store(home)
    where = _episode_of(store, episodes)
    ordered = sorted(where, key=lambda rid: where[rid].episode_id)
    early = {rid: where[rid] for rid in ordered[:first]}
    later = {rid: where[rid] for rid in ordered[first:]}
    clips = clip_records(store.materialized_clips())
    bench.annotated = _review_round(store, home, corrections(clips, early))
    release_flow(home=home, note="before round two")
    people = _people(store)
    bench.before = score(clip_records(store.materialized_clips()), later)
    _compare_modes(bench, store, later)
    report = retranscribe_flow(home=home)
    bench.round_two, bench.round_two_s = report.summary(), report.wall_s
    bench.after = score(clip_records(store.materialized_clips()), later)
    after = _people(store)
    bench.human_clips = len(people)
    bench.human_identical = all(after.get(c) == t for c, t in people.items()) and len(after) == len(
        people
    )
    made = release_flow(home=home, note="after round two")
    bench.changes = (
        {} if made is None else {k: v for k, v in made.changes.items() if k != "text_changed_clips"}
    )


def _compare_modes(
    bench: VocabularyBench, store: Store, later: Mapping[str, ChannelEpisode]
) -> None:
    """The round-two clips of ``later``, transcribed with no words, hotwords, initial prompt."""
    from convoice.config import load_settings
    from convoice.engines.round_two import rare_word, whisper
    from convoice.models import asr
    from convoice.models.from_settings import asr_options, with_vocabulary
    from convoice.models.language import LanguageGuess
    from convoice.models.round_two import wants_round_two
    from convoice.models.vocabulary import active_for
    from convoice.storage.round_two import clip_samples
    from convoice.storage.vocabulary import channels, learn_from_store

    settings = load_settings(home=store.root)
    learned = learn_from_store(store, rare_word(settings.asr.model)).terms
    channel = channels(store)[next(iter(later))]
    words = active_for(learned, channel, settings.asr.vocabulary_size)
    bench.learned = words
    cfg = settings.routing
    clips = [
        c
        for c in clip_records(store.materialized_clips())
        if c.recording_id in later and wants_round_two(c, cfg, True)
    ]
    refs = corrections(clips, later)
    clips = [c for c in clips if c.clip_id in refs]
    name, model = whisper(settings, "")
    samples, regions = clip_samples(store, clips)
    guesses = [LanguageGuess(c.language or "en", 1.0, "kept") for c in clips]
    ways = [("none", [], 0), ("hotwords", words, 0), ("initial_prompt", words, 0)]
    ways.append(("hotwords, beam 5", words, 5))  # round two's default ([asr] round_two_beam_size)
    for mode, chosen, beam in ways:
        options = with_vocabulary(
            asr_options(settings),
            chosen,
            "initial_prompt" if "prompt" in mode else "hotwords",
        )
        if beam:
            options = dataclasses.replace(options, beam_size=beam)
        started = time.perf_counter()
        found = asr.transcribe_clips(
            model, samples, regions, options, lambda _: (name, model), languages=guesses
        )
        seconds = time.perf_counter() - started
        bench.modes[mode] = (*_score_mode(clips, found, refs), seconds)


def _score_mode(
    clips: Sequence[StoredClip], found: Sequence[Transcript | None], refs: Mapping[str, str]
) -> tuple[TermErrors, WerCount]:
    """The recurring terms' errors and the WER of the transcripts ``found`` for ``clips``."""
    terms, wer = TermErrors(), WerCount(0, 0)
    for clip, t in zip(clips, found, strict=True):
        text = t.text if t else ""
        terms += term_errors(refs[clip.clip_id], text, RECURRING)
        wer += wer_count(refs[clip.clip_id], text)
    return terms, wer
