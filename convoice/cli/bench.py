"""``convoice bench``: one command, several measurements; a flag chooses which (README, Benchmark).

The command's flags keep their names and their order of precedence; inside, the
first "instead" flag given picks a :class:`BenchMode`, and each mode is a small
function of the options. Heavy libraries are imported inside the modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from convoice.bench.splits import Split, generated_half
from convoice.cli.common import HomeOption, fail, prefect_defaults

console = Console()
N = TypeVar("N", int, float)


class BenchMode(StrEnum):
    """What ``convoice bench`` measures; the first flag given wins, in this order."""

    VOICES = "voices"  # --voices: list the voice inventory and its split, then stop
    SERVICE = "service"  # --service: the voice bank's synthesisers
    VOCABULARY = "vocabulary"  # --vocabulary: round two on one channel's recurring names
    LONG = "long"  # --long H,H: peak memory and wall time on long recordings
    LANGUAGES = "languages"  # --languages: the multilingual corpus
    ROUND = "round"  # --round: one loop round, judged on later episodes
    SCALE = "scale"  # --scale: throughput per runner, cost with size
    QUALITY = "quality"  # none of them: quality and speed on a corpus (--corpus, --profile)


@dataclass(frozen=True)
class BenchOptions:
    """The options every mode may read (each reads its own)."""

    quick: bool = False
    split: Split = Split.REPORT
    corpus: Path | None = None
    naive: bool = True
    sizes: str = "100000,1000000"
    requests: int = 20
    home: str | None = None
    models: str = "base,small"
    out: Path | None = None
    profile: bool = False
    long: str | None = None
    repeat: int = 1
    long_dense: bool = False
    long_pair: bool = False
    draws: int | None = None  # None: DEFAULT_DRAWS on a generated half, else one
    naive_embedding: str = "campplus"  # naive.DEFAULT_EMBEDDING; not imported, --help stays light
    keep_stores: Path | None = None  # keep each draw's labelled store here (quality mode)


DEFAULT_DRAWS = 3
"""Corpora a generated half's voices are dealt into by default (``--draws``): one corpus
moved accepted precision 0.864-1.000 and B-cubed 0.80-0.93 over nine tuning seeds."""


def draws_of(opts: BenchOptions) -> int:
    """The draws to run: as given, else :data:`DEFAULT_DRAWS` where the corpus is generated
    from a half's voices (not ``--quick``, ``--split seven`` or ``--corpus``)."""
    if opts.draws is not None:
        return opts.draws
    return DEFAULT_DRAWS if generated_half(opts.quick, opts.split, _corpus_dir(opts)) else 1


def _corpus_dir(opts: BenchOptions) -> str | None:
    return str(opts.corpus) if opts.corpus else None


def bench_mode(
    voices: bool = False,
    service: bool = False,
    vocabulary: bool = False,
    long: str | None = None,
    languages: bool = False,
    round_: bool = False,
    scale: bool = False,
) -> BenchMode:
    """The mode of the first flag given, in the order the command has always checked them."""
    given = (
        (BenchMode.VOICES, voices),
        (BenchMode.SERVICE, service),
        (BenchMode.VOCABULARY, vocabulary),
        (BenchMode.LONG, bool(long)),
        (BenchMode.LANGUAGES, languages),
        (BenchMode.ROUND, round_),
        (BenchMode.SCALE, scale),
    )
    return next((mode for mode, flag in given if flag), BenchMode.QUALITY)


def _write(out: Path | None, text: str) -> None:
    """Write the figures as JSON to ``--out``, when given."""
    if out:
        out.write_text(text)


def _numbers(option: str, text: str, kind: Callable[[str], N]) -> list[N]:
    """A comma-separated option as numbers; a bad one is a usage error (exit 2)."""
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise typer.BadParameter(f"{option}: {err}") from err


def _voices(opts: BenchOptions) -> None:
    from convoice.synth.inventory import describe, inventory

    console.print(describe(inventory()), soft_wrap=True, markup=False)


def _service(opts: BenchOptions) -> None:
    from convoice.bench.service import run_service_benchmark
    from convoice.config import load_settings

    figures = run_service_benchmark(load_settings(home=opts.home), requests=opts.requests)
    console.print(figures.render(), markup=False, soft_wrap=True)
    _write(opts.out, figures.to_json())


def _vocabulary(opts: BenchOptions) -> None:
    from convoice.bench.vocabulary import run_vocabulary_benchmark

    bench = run_vocabulary_benchmark(opts.quick, opts.split.value)
    console.print(bench.render(), soft_wrap=True, markup=False)


def _long(opts: BenchOptions) -> None:
    from convoice.bench.long import render, run_long_benchmark

    hours = _numbers("--long", opts.long or "", float)
    if not opts.long_dense:
        console.print(render(run_long_benchmark(hours, pair=opts.long_pair)), soft_wrap=True)
        return
    from convoice.bench.long_dense import WHOLE_MAX_H, render_stages, run_stages_benchmark

    console.print(render_stages(run_stages_benchmark(hours)), soft_wrap=True, markup=False)
    whole = [h for h in hours if h <= WHOLE_MAX_H]
    if whole:
        runs = run_long_benchmark(whole, dense=True, pair=opts.long_pair)
        console.print(render(runs), soft_wrap=True, markup=False)


def _languages(opts: BenchOptions) -> None:
    from convoice.bench.languages import run_language_benchmark

    names = [m.strip() for m in opts.models.split(",") if m.strip()]
    if opts.split == Split.SEVEN:
        raise typer.BadParameter("--languages runs on --split tune or report", param_hint="--split")
    lingual = run_language_benchmark(
        turns=4 if opts.quick else 6,
        models=names,
        half=opts.split.value,
        quick=opts.quick,
        clips_out=opts.out.with_suffix(".clips.jsonl") if opts.out else None,
    )
    console.print(lingual.render(), soft_wrap=True, markup=False)
    _write(opts.out, lingual.to_json())


def _round(opts: BenchOptions) -> None:
    from convoice.bench.round import run_round

    rounded = run_round(quick=opts.quick, split=opts.split.value)
    console.print(rounded.render(), soft_wrap=True, markup=False)
    _write(opts.out, rounded.to_json())


def _scale(opts: BenchOptions) -> None:
    from convoice.bench.scale import run_scale_benchmark

    numbers = tuple(_numbers("--sizes", opts.sizes, int))
    scaled = run_scale_benchmark(sizes=numbers)
    console.print(scaled.render(), soft_wrap=True)
    _write(opts.out, scaled.to_json())


def check_keep_stores(keep: Path | None) -> None:
    """``--keep-stores`` must name a directory that is new or empty: a kept store is the
    labels of this run alone (an ingest into an old store would only add to it)."""
    if keep is None:
        return
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise typer.BadParameter(
            f"{keep} exists and is not an empty directory", param_hint="--keep-stores"
        )


def _quality(opts: BenchOptions) -> None:
    from convoice.bench.corpus import CorpusFormatError
    from convoice.bench.quality import check_draws, run_benchmark
    from convoice.bench.result import render_kept

    if opts.repeat < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--repeat")
    check_keep_stores(opts.keep_stores)
    draws = draws_of(opts)
    try:
        check_draws(draws, opts.quick, opts.split.value, _corpus_dir(opts))
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--draws") from err
    try:
        result = run_benchmark(
            quick=opts.quick,
            naive=opts.naive,
            split=opts.split.value,
            corpus_dir=_corpus_dir(opts),
            profile=opts.profile,
            repeat=opts.repeat,
            draws=draws,
            progress=lambda line: console.print(line, markup=False),
            naive_embedding=opts.naive_embedding,
            keep_stores=opts.keep_stores,
        )
    except CorpusFormatError as err:
        fail(err)
    console.print(result.render(), markup=False, soft_wrap=True)  # tables, not prose
    tuning = opts.split is Split.TUNE and generated_half(opts.quick, opts.split, _corpus_dir(opts))
    kept = render_kept(result.kept_stores, tuning)
    if kept:
        console.print("\n".join(kept), markup=False, soft_wrap=True)
    if opts.profile:
        console.print(result.render_profile(), markup=False, soft_wrap=True)
    _write(opts.out, result.to_json())


RUNS: dict[BenchMode, Callable[[BenchOptions], None]] = {
    BenchMode.VOICES: _voices,
    BenchMode.SERVICE: _service,
    BenchMode.VOCABULARY: _vocabulary,
    BenchMode.LONG: _long,
    BenchMode.LANGUAGES: _languages,
    BenchMode.ROUND: _round,
    BenchMode.SCALE: _scale,
    BenchMode.QUALITY: _quality,
}


def run_bench(mode: BenchMode, opts: BenchOptions) -> None:
    """Run one mode (every mode but ``voices`` talks to Prefect: its defaults are set first)."""
    if mode is not BenchMode.VOICES:
        prefect_defaults()
    RUNS[mode](opts)


# The command's options, in the order ``--help`` lists them (help texts as they always were).
Quick = Annotated[
    bool, typer.Option(help="The 4-minute corpus of seven tuning voices (tests, CI).")
]
SplitOption = Annotated[
    Split,
    typer.Option(
        help="Which voices: 'report' (the half nothing is tuned on), 'tune' (the half "
        "settings may look at) or 'seven' (the former 20-minute corpus of seven voices)."
    ),
]
CorpusOption = Annotated[
    Path | None,
    typer.Option(help="Score your own annotated audio instead (format: README, Benchmark)."),
]
Voices = Annotated[
    bool, typer.Option(help="Only list the voice inventory and its split, then stop.")
]
Naive = Annotated[
    bool, typer.Option(help="Also time the naive chain (pyannote, Whisper, resemblyzer per turn).")
]
NaiveEmbedding = Annotated[
    str,
    typer.Option(
        help="The naive chain's pyannote embedding: campplus (CAM++, nearest to the hub "
        "pipeline's ResNet34; what issue 12 times) or resemblyzer (GE2E)."
    ),
]
Scale = Annotated[
    bool,
    typer.Option(
        help="Instead: ingest throughput per runner (threads, 1 and 2 Dask workers) on the "
        "quick corpus, and matching and release cost at --sizes."
    ),
]
Sizes = Annotated[
    str, typer.Option(help="With --scale: comma-separated numbers of speakers / clips.")
]
Service = Annotated[
    bool,
    typer.Option(
        help="Instead: the voice bank's synthesisers: latency (p50/p95 of --requests), matched"
        " vs nearest shipped similarity, Whisper WER (see README, Voice bank)."
    ),
]
Requests = Annotated[int, typer.Option(help="With --service: requests per synthesiser.")]
Languages = Annotated[
    bool,
    typer.Option(
        help="Instead: the multilingual corpus (--split: which half of its voices; --quick: "
        "four episodes): clip language, WER per language, and the Whisper models of --models "
        "compared on the same clips."
    ),
]
Models = Annotated[
    str, typer.Option(help="With --languages: comma-separated Whisper models to compare.")
]
Out = Annotated[Path | None, typer.Option(help="Write the figures as JSON here.")]
Profile = Annotated[
    bool,
    typer.Option(
        help="Also print the per-stage table: Whisper alone, with word timestamps, "
        "`convoice ingest` as a process, the flow and each stage, as ratios."
    ),
]
Repeat = Annotated[
    int,
    typer.Option(
        help="With --profile: time Whisper alone, with words, the process and the flow this "
        "many times, alternating; print median, spread and ratios of medians (wall and CPU)."
    ),
]
KeepStores = Annotated[
    Path | None,
    typer.Option(
        help="Keep each draw's labelled store in this new (or empty) directory, as "
        "<split>-seed<N>, and print them; on --split tune, the `convoice calibrate "
        "--bench-home` command that fits on them (default: every store is removed).",
        show_default=False,
    ),
]
Draws = Annotated[
    int | None,
    typer.Option(
        help="Deal the half's voices into this many corpora (seeds), ingest and score each, "
        f"and print every figure's mean and range (default: {DEFAULT_DRAWS} on --split report"
        " or tune, else 1).",
        show_default=False,
    ),
]
Vocabulary = Annotated[
    bool,
    typer.Option(
        "--vocabulary",
        help="Instead: one channel's recurring names corrected in Label Studio, then round"
        " two (`convoice retranscribe`) on its other episodes (README, Vocabulary).",
    ),
]
Long = Annotated[
    str | None,
    typer.Option(
        "--long",
        help="Instead: peak memory and wall time of `convoice ingest` on recordings this "
        "many hours long, comma-separated (e.g. 0.5,3), made with ffmpeg.",
    ),
]
LongDense = Annotated[
    bool,
    typer.Option(
        "--long-dense",
        help="With --long: recordings of speech throughout (a conversation of four corpus "
        "voices): every stage but Whisper on each length (wall, CPU, peak memory per stage), "
        "then `convoice ingest` on the lengths up to 1 h.",
    ),
]
LongPair = Annotated[
    bool,
    typer.Option(
        "--long-pair",
        help="With --long: one more `convoice ingest`, of two recordings of the first (whole-"
        "ingest) length in one sources file (the pipeline holds both at once).",
    ),
]
Round = Annotated[
    bool,
    typer.Option(
        "--round",
        help="Instead: one loop round (people answer the review queue through Label Studio, "
        "then `convoice loop`), judged on episodes ingested after it (--split, --quick).",
    ),
]


def bench_command(
    quick: Quick = False,
    split: SplitOption = Split.REPORT,
    corpus: CorpusOption = None,
    voices: Voices = False,
    naive: Naive = True,
    scale: Scale = False,
    sizes: Sizes = "100000,1000000",
    service: Service = False,
    requests: Requests = 20,
    home: HomeOption = None,
    languages: Languages = False,
    models: Models = "base,small",
    out: Out = None,
    profile: Profile = False,
    vocabulary: Vocabulary = False,
    long: Long = None,
    round_: Round = False,
    repeat: Repeat = 1,
    long_dense: LongDense = False,
    long_pair: LongPair = False,
    draws: Draws = None,
    naive_embedding: NaiveEmbedding = "campplus",
    keep_stores: KeepStores = None,
) -> None:
    """Measure quality and speed against baselines in the same run (see README)."""
    from convoice.bench.naive import EMBEDDINGS

    if naive_embedding not in EMBEDDINGS:
        raise typer.BadParameter(f"one of {', '.join(EMBEDDINGS)}", param_hint="--naive-embedding")
    mode = bench_mode(voices, service, vocabulary, long, languages, round_, scale)
    if keep_stores is not None and mode is not BenchMode.QUALITY:
        raise typer.BadParameter(
            f"keeps the stores of the quality benchmark only, not of --{mode.value}",
            param_hint="--keep-stores",
        )
    opts = BenchOptions(quick, split, corpus, naive, sizes, requests, home, models, out,
                        profile, long, repeat, long_dense, long_pair, draws,
                        naive_embedding, keep_stores)  # fmt: skip
    run_bench(mode, opts)
