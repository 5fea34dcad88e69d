"""``convoice bench``: quality and speed of the engine against baselines, in one run.

Speed is reported as ratios against baselines timed in the same run on the
same audio (these machines are noisy): faster-whisper alone at its fastest
setting (batched, greedy, no word timestamps), and the standard pieces run
one after another on whole files (pyannote's pipeline at its defaults, then
faster-whisper, then resemblyzer per turn). Quality is measured on a corpus
generated for one half of the voice split (:mod:`convoice.synth.inventory`; the
reporting half by default, ``--split tune`` the other: see
:mod:`convoice.bench.corpus`), or on an operator's own annotated corpus
(``--corpus DIR``), and on the real two-speaker recording that ships with
pyannote.audio. ``--quick`` keeps the small seven-voice corpus of the tests.

The baselines are timed by :mod:`convoice.bench.baselines`, the figures are
printed by :mod:`convoice.bench.result`; ``--scale`` is :mod:`convoice.bench.scale`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from convoice import cpu_clock
from convoice.bench import baselines, encoder_passes, machine, whisper_plain
from convoice.bench.naive import DEFAULT_EMBEDDING
from convoice.bench.queue_order import queue_order
from convoice.bench.result import BenchmarkResult, Draw, ProfileRun
from convoice.bench.splits import Split, generated_half
from convoice.config import Settings, load_settings
from convoice.engines import encoder_tally, loaders
from convoice.flows.ingest import run_ingest
from convoice.media.audio import decode
from convoice.media.errors import IngestError
from convoice.models import evaluation, identity_errors, labelling
from convoice.models.metrics import DiarizationErrors, diarization_errors, parse_rttm
from convoice.records import SkipReason
from convoice.storage import Store
from convoice.storage.schema import CLIP_SCHEMA
from convoice.synth import samples
from convoice.synth.recordings import pyannote_sample
from convoice.synth.serve import serve_directory, write_sources_csv
from convoice.tasks import stages

SPLITS = tuple(Split)
"""The values of :class:`~convoice.bench.splits.Split`, in order."""


def bench_corpus(
    root: Path, quick: bool, split: str, corpus_dir: str | None
) -> tuple[samples.Corpus, list[str]]:
    """The corpus to run on, and notes (skipped files of an operator's corpus)."""
    from convoice.bench import corpus as half_corpus

    if corpus_dir:
        return half_corpus.load_annotated(corpus_dir)
    if quick:
        return samples.make_corpus(root / "corpus", n_episodes=4, turns_per_episode=10, seed=3), []
    if split == Split.SEVEN:
        return samples.make_corpus(root / "corpus", n_episodes=8, turns_per_episode=24, seed=1), []
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return half_corpus.make_half_corpus(root / f"corpus-{split}", half=split), []


def _describe(corpus: samples.Corpus) -> str:
    desc = f"{len(corpus.episodes)} episodes, {len(corpus.speakers)} speakers"
    ids = corpus.metadata.get("identities", {})
    if ids:
        real = sum(1 for v in ids.values() if v["real"])
        meta = corpus.metadata
        desc += f" ({real} real people), {meta['half']} half, rule {meta['split_rule']}"
    elif corpus.metadata.get("half") == "own":
        desc += f", {corpus.root}"
    return desc


def run_benchmark(
    quick: bool = False,
    naive: bool = True,
    workdir: str | None = None,
    split: str = "report",
    corpus_dir: str | None = None,
    profile: bool = False,
    repeat: int = 1,
    draws: int = 1,
    progress: Callable[[str], None] | None = None,
    naive_embedding: str = DEFAULT_EMBEDDING,
    keep_stores: Path | None = None,
) -> BenchmarkResult:
    """Generate (or reuse) the corpus, time the baselines and the flow, score the labels.

    ``profile`` also times Whisper with word timestamps and ``convoice ingest`` as a
    process of its own (into a second store) on the same audio. ``repeat`` (with
    ``profile``) times the four ``repeat`` times, alternating (Whisper, with words,
    the process, the flow; again ...): every run is kept, the figures of the result
    are the medians, and the labels scored are the last flow's. ``draws`` (a generated
    half only) deals the same voices into ``draws - 1`` more corpora (the next seeds),
    ingests each into a store of its own and scores it (:func:`score_draw`); ``progress``
    is told as each one starts. ``naive_embedding``: the embedding of the naive chain's
    pyannote pipeline (:data:`convoice.bench.naive.EMBEDDINGS`). ``keep_stores``: a
    directory to keep each draw's labelled store in (:func:`store_name`), the stores
    ``convoice calibrate --bench-home`` fits on; None: every store is removed.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    check_draws(draws, quick, split, corpus_dir)
    name = "bench-quick" if quick else "bench"
    root = Path(workdir) if workdir else loaders.cache_dir() / name
    corpus, notes = bench_corpus(root, quick, split, corpus_dir)
    wavs = [ep.audio_path for ep in corpus.episodes]
    audio_s = sum(ep.duration for ep in corpus.episodes)
    result = BenchmarkResult(corpus=_describe(corpus), audio_seconds=audio_s, notes=notes)
    result.machine = machine.describe()
    result.repeat = repeat if profile else 1
    baselines.warm_up()
    if naive:
        result.naive_embedding = naive_embedding
        result.naive_s, result.naive_steps = baselines.time_naive(wavs, naive_embedding)
    workspace = Path(tempfile.mkdtemp(prefix="convoice-bench-sources-"))
    with serve_directory(corpus.root) as base_url:
        sources = workspace / "sources.csv"
        write_sources_csv(corpus, base_url, sources)
        home = ""
        for _ in range(result.repeat):
            if home:
                shutil.rmtree(home, ignore_errors=True)  # only the last flow's labels are scored
            home = tempfile.mkdtemp(prefix="convoice-bench-")
            result.profile_runs.append(_timed_run(wavs, sources, home, profile))
    shutil.rmtree(workspace, ignore_errors=True)
    result.take_medians()
    store = Store.open(load_settings(home=home))
    clips, episodes = store.clips().to_pylist(), episodes_by_recording(store, corpus)
    if profile:
        result.whisper_alone_passes = encoder_passes.whisper_alone(wavs)
        result.flow_passes = encoder_passes.flow(result.profile_runs[-1].encoder_passes)
    result.quality = score_corpus(clips, episodes, corpus)
    truth = corpus_truth(episodes, corpus)
    judged = evaluation.speaker_judgements(clips, truth)
    result.reliability = [asdict(b) for b in evaluation.reliability(*judged)]
    result.identity_errors = identity_errors.errors_by_kind(clips, ingest_ids(store), truth)
    result.review = [asdict(r) for r in evaluation.review_table(clips, truth)]
    result.queue_order = [asdict(r) for r in queue_order(clips, truth)]
    result.conditions = [asdict(r) for r in condition_rows(clips, episodes, corpus)]
    if corpus.metadata.get("half") == Split.TUNE:  # rules may be chosen by the tuning half only
        target = load_settings(home=home).routing.target_precision
        result.held_out = held_out_lines(clips, truth, target)
    settings = load_settings(home=home)
    result.quality.update(der_figures("pyannote_sample_engine", engine_der(settings)))
    corpus_errors, left_out = corpus_der(settings, corpus)
    result.quality.update(der_figures("corpus_engine", corpus_errors))
    result.notes += left_out
    if naive:
        result.quality["der_pyannote_sample_naive"] = baselines.naive_der(naive_embedding)
    if corpus.metadata.get("identities"):
        result.hard_pairs = hard_pairs(corpus)
    result.registry_match_ms = baselines.time_registry_matching()
    seed = corpus.seed
    kept = keep_or_remove(home, keep_stores, store_name(corpus, seed))
    result.kept_stores = [(seed, kept)] if kept else []
    if draws > 1:
        result.draws = [Draw(seed, dict(result.quality), kept, *judged)]
        for n in range(1, draws):
            if progress is not None:
                progress(f"draw {n + 1} of {draws}: the same voices dealt by seed {seed + n}")
            draw = score_draw(root, split, seed + n, keep_stores)
            result.draws.append(draw)
            if draw.store:
                result.kept_stores.append((draw.seed, draw.store))
    return result


def store_name(corpus: samples.Corpus, seed: int) -> str:
    """The name a kept store of ``corpus`` gets: ``<half>-seed<seed>`` for a generated half
    (what ``convoice calibrate --bench-home ... --bench-seed <seed>`` reads), else ``corpus``."""
    half = corpus.metadata.get("half")
    return f"{half}-seed{seed}" if half in (Split.TUNE, Split.REPORT) else "corpus"


def keep_or_remove(home: str, keep: Path | None, name: str) -> str:
    """Move the labelled store ``home`` to ``keep / name`` and return that path, or remove
    it (``keep`` None) and return ""."""
    if keep is None:
        shutil.rmtree(home, ignore_errors=True)
        return ""
    target = keep / name
    if target.exists():
        raise FileExistsError(f"{target} already exists: keep stores in a new directory")
    keep.mkdir(parents=True, exist_ok=True)
    shutil.move(home, target)
    return str(target)


def check_draws(draws: int, quick: bool, split: str, corpus_dir: str | None) -> None:
    """Raise ``ValueError`` unless ``draws`` can be dealt: at least one, and more only on a
    :func:`generated_half`."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    if draws > 1 and not generated_half(quick, split, corpus_dir):
        raise ValueError(
            "more than one draw needs a generated half (--split report or tune): "
            "the quick, seven-voice and --corpus corpora are one fixed corpus"
        )


def score_draw(root: Path, split: str, seed: int, keep: Path | None = None) -> Draw:
    """Deal the half's voices into the corpus of ``seed``, ingest it into a store of its
    own (removed after, or kept as ``keep / <split>-seed<seed>``) and score its labels as
    the first corpus's are scored."""
    from convoice.bench import corpus as half_corpus

    corpus = half_corpus.make_half_corpus(
        root / f"corpus-{split}-seed{seed}", half=split, seed=seed
    )
    workspace = Path(tempfile.mkdtemp(prefix="convoice-bench-sources-"))
    home = tempfile.mkdtemp(prefix="convoice-bench-")
    try:
        with serve_directory(corpus.root) as base_url:
            write_sources_csv(corpus, base_url, workspace / "sources.csv")
            run_ingest(sources_file=str(workspace / "sources.csv"), home=home)
        store = Store.open(load_settings(home=home))
        clips, episodes = store.clips().to_pylist(), episodes_by_recording(store, corpus)
        quality = score_corpus(clips, episodes, corpus)
        judged = evaluation.speaker_judgements(clips, corpus_truth(episodes, corpus))
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)  # nothing scored: nothing worth keeping
        raise
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return Draw(seed, quality, keep_or_remove(home, keep, store_name(corpus, seed)), *judged)


def _timed_run(wavs: list[Path], sources: Path, home: str, profile: bool) -> ProfileRun:
    """Whisper alone, with words and the process (with ``profile``), then the flow into ``home``."""
    run = ProfileRun(load_average=round(os.getloadavg()[0], 2))
    whisper = baselines.time_whisper(wavs)
    run.whisper_s, run.whisper_cpu_s = whisper.seconds, whisper.cpu_s
    if profile:
        words = baselines.time_whisper(wavs, words=True)
        run.whisper_words_s, run.whisper_words_cpu_s = words.seconds, words.cpu_s
        run.whisper_plain_s, run.whisper_plain_cpu_s = whisper_plain.time_in_plain_process(wavs)
        process_home = Path(tempfile.mkdtemp(prefix="convoice-bench-process-"))
        timing = baselines.time_ingest_process(sources, process_home)
        run.process_s, run.process_flow_s = timing.seconds, timing.flow_s
        run.process_cpu_s = timing.cpu_s
        shutil.rmtree(process_home, ignore_errors=True)
    stages_before, cpu_before = cpu_clock.totals(), cpu_clock.cpu_seconds()
    passes_before = encoder_tally.totals()
    start = time.perf_counter()
    report = run_ingest(sources_file=str(sources), home=home)
    run.flow_s = time.perf_counter() - start
    run.flow_cpu_s = cpu_clock.cpu_seconds() - cpu_before
    run.encoder_passes = encoder_tally.since(passes_before)
    run.flow_stages = dict(report.stage_seconds)
    run.flow_stages_cpu = cpu_clock.since(stages_before)
    run.clips = report.clips
    return run


def held_out_lines(
    clips: list[dict[str, Any]], truth: dict[str, list[evaluation.RefTurn]], target: float
) -> list[str]:
    """Whether each speaker calibration rule carries over to recordings it was not fitted
    on: its held-out ECE leaving one recording out (:mod:`convoice.training.calibrate`)."""
    from convoice.training import calibrate

    figures = calibrate.held_out(calibrate.judged_from_truth(clips, truth), target)
    return [line for name, h in figures for line in h.render(name)]


def ingest_ids(store: Store) -> dict[str, str]:
    """Clip id -> the speaker id the ingest wrote on its row (before consolidation)."""
    rows = store.tables.read("clips", CLIP_SCHEMA, columns=["clip_id", "speaker_id"])
    return dict(zip(rows["clip_id"].to_pylist(), rows["speaker_id"].to_pylist(), strict=True))


def episodes_by_recording(store: Store, corpus: samples.Corpus) -> dict[str, samples.Episode]:
    """Recording id -> the corpus episode it was ingested from (by the media file name)."""
    by_name = {ep.media_path.name: ep for ep in corpus.episodes}
    out = {}
    for rec in store.recordings().to_pylist():
        episode = by_name.get(unquote(rec["url"].rsplit("/", 1)[-1]))
        if episode is not None:
            out[rec["recording_id"]] = episode
    return out


def corpus_truth(
    episodes: dict[str, samples.Episode], corpus: samples.Corpus
) -> dict[str, list[evaluation.RefTurn]]:
    """Reference turns per recording id; turns of non-English voices carry no text (no WER)."""
    ids = corpus.metadata.get("identities", {})

    def text(turn: samples.TruthTurn) -> str:
        return turn.text if ids.get(turn.speaker, {}).get("language", "en") == "en" else ""

    return {
        rid: [evaluation.RefTurn(t.start, t.end, t.speaker, text(t)) for t in ep.turns]
        for rid, ep in episodes.items()
    }


def condition_rows(
    clips: list[dict[str, Any]], episodes: dict[str, samples.Episode], corpus: samples.Corpus
) -> list[evaluation.ConditionRow]:
    """Speaker labels per recording condition, where the corpus names each episode's
    (the generated halves do: studio, telephone, noise, ...; an operator's corpus does not)."""
    conditions = corpus.metadata.get("conditions", {})
    condition_of = {
        rid: conditions[ep.episode_id]
        for rid, ep in episodes.items()
        if ep.episode_id in conditions
    }
    if not condition_of:
        return []
    return evaluation.condition_table(clips, corpus_truth(episodes, corpus), condition_of)


def score_corpus(
    clips: list[dict[str, Any]], episodes: dict[str, samples.Episode], corpus: samples.Corpus
) -> dict[str, float]:
    """Quality of the labels against the corpus truth."""
    ids = corpus.metadata.get("identities", {})
    real = frozenset(name for name, v in ids.items() if v["real"])
    raw = sum(ep.duration for ep in corpus.episodes)
    out = evaluation.score(clips, corpus_truth(episodes, corpus), raw, real)
    texts = corpus.metadata.get("transcripts", {})
    if texts:
        mapped = {
            rid: texts[ep.episode_id] for rid, ep in episodes.items() if ep.episode_id in texts
        }
        out["wer_transcripts_all_clips"] = evaluation.recording_wer(clips, mapped).wer
    return out


def hard_pairs(corpus: samples.Corpus, threshold: float = 0.8) -> list[tuple[str, str, float]]:
    """Same-engine identities whose resemblyzer centroids (over their clean turns) exceed
    ``threshold`` in cosine: the pairs the corpus puts to the engine (all mbrola voices are
    one engine, whatever their language)."""
    from convoice.models.clustering import normalize

    encoder = loaders.voice_encoder()
    vectors: dict[str, list[np.ndarray]] = {}
    for ep in corpus.episodes:
        samples_ = decode(ep.audio_path).samples
        for t in ep.turns:
            if any(o is not t and o.start < t.end and o.end > t.start for o in ep.turns):
                continue
            seg = samples_[int(t.start * 16000) : int(t.end * 16000)]
            vectors.setdefault(t.speaker, []).append(encoder.embed_utterance(seg))
    names = sorted(vectors)
    cent = normalize(np.stack([np.mean(vectors[n], axis=0) for n in names]).astype(np.float32))
    groups = {n: v.get("engine", v["group"]) for n, v in corpus.metadata["identities"].items()}
    sims = cent @ cent.T
    return [
        (a, b, round(float(sims[i, j]), 3))
        for i, a in enumerate(names)
        for j, b in enumerate(names)
        if i < j and groups.get(a) == groups.get(b) and sims[i, j] > threshold
    ]


def engine_diarization(
    settings: Settings, wav: Path, reference: list[tuple[float, float, str]]
) -> DiarizationErrors:
    """Missed, false-alarm and confused speech of the engine's own diarization of one
    recording (segment, embed, identify; no registry), against ``reference``. A
    recording where the engine finds no speech has all of its speech missed."""
    audio = decode(wav)
    try:
        seg = stages.segment.fn(audio, settings)
    except IngestError as err:
        if err.reason_code != SkipReason.NO_SPEECH:
            raise
        return diarization_errors(reference, [])
    seg, vectors = stages.embed_and_cut(audio, seg, settings)
    empty = np.zeros((0, 0), dtype=np.float32)
    speakers, _ = stages.identify.fn(wav.stem, seg, vectors, [], empty, settings)
    cfg = settings.diarization
    gap, lone = cfg.timeline_gap_s, cfg.timeline_gap_lone
    timeline = labelling.diarization_output(seg, speakers, gap, lone)
    return diarization_errors(reference, timeline)


def engine_der(settings: Settings) -> DiarizationErrors:
    """The engine's diarization errors on pyannote's real two-speaker sample."""
    wav, rttm = pyannote_sample()
    reference = parse_rttm(Path(rttm).read_text(encoding="utf-8"))
    return engine_diarization(settings, Path(wav), reference)


def corpus_der(settings: Settings, corpus: samples.Corpus) -> tuple[DiarizationErrors, list[str]]:
    """The engine's diarization errors summed over the corpus's episodes (their reference
    turns), each recording on its own: what the ``der_corpus_*`` figures print; and a
    note for each episode left out because its media cannot be decoded."""
    total, left_out = DiarizationErrors(), []
    for episode in corpus.episodes:
        reference = [(t.start, t.end, t.speaker) for t in episode.turns]
        try:
            total += engine_diarization(settings, episode.audio_path, reference)
        except IngestError as err:
            left_out.append(f"{episode.audio_path.name}: not in the corpus DER ({err})")
    return total, left_out


def der_figures(name: str, errors: DiarizationErrors) -> dict[str, float]:
    """``der_<name>`` and its parts, as shares of the reference speech."""
    return {
        f"der_{name}": errors.der,
        f"der_{name}_missed": errors.missed,
        f"der_{name}_false_alarm": errors.false_alarm,
        f"der_{name}_confusion": errors.confusion,
    }
