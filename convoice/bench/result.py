"""What ``convoice bench`` prints: one run's figures, the ``--profile`` table, the review
table, and the figures of every draw of the corpus (``--draws``)."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from convoice.bench.encoder_passes import EncoderPasses, render_passes
from convoice.bench.naive import DEFAULT_EMBEDDING
from convoice.bench.queue_order import render_queue_order
from convoice.models import evaluation
from convoice.models.identity_errors import render_errors


@dataclass
class ProfileRun:
    """One round of ``convoice bench --profile --repeat N``: each timed thing once.

    Wall and CPU seconds (user + sys, the process and its finished children); the
    stages' CPU is the whole process's while each stage ran (:mod:`convoice.cpu_clock`).
    """

    load_average: float = 0.0  # the machine's 1-minute load average when the round began
    whisper_s: float = 0.0
    whisper_cpu_s: float = 0.0
    whisper_words_s: float = 0.0
    whisper_words_cpu_s: float = 0.0
    whisper_plain_s: float = 0.0  # in a process of its own, glibc's default allocator
    whisper_plain_cpu_s: float = 0.0
    process_s: float = 0.0
    process_flow_s: float = 0.0
    process_cpu_s: float = 0.0  # with its Prefect server's
    flow_s: float = 0.0
    flow_cpu_s: float = 0.0
    flow_stages: dict[str, float] = field(default_factory=dict)
    flow_stages_cpu: dict[str, float] = field(default_factory=dict)
    clips: int = 0  # the flow's clips (the same every round, or the engine is not deterministic)
    # Whisper's encoder passes in the flow: kind -> (passes, seconds) (engines.encoder_tally)
    encoder_passes: dict[str, tuple[int, float]] = field(default_factory=dict)


@dataclass
class Draw:
    """One corpus the half's voices were dealt into (``convoice bench --draws``).

    The draws share the voices and the recording conditions; the seed deals them into
    other episodes with other sentences, so the spread of a figure over the draws is
    how far one corpus of those voices can move it.
    """

    seed: int
    quality: dict[str, float]  # the figures of :func:`convoice.bench.quality.score_corpus`
    store: str = ""  # where its labelled store was kept (``--keep-stores``); "": removed
    # every judged clip's speaker_confidence and whether its label is right, so the draws'
    # ECE can be pooled (evaluation.speaker_judgements)
    speaker_confidence: list[float] = field(default_factory=list)
    speaker_right: list[bool] = field(default_factory=list)


# The figures compared over the draws: (quality key, label, bar).
DRAW_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("clips", "clips", ""),
    ("bcubed_f1_cross_episode", "cross-episode B-cubed F1", ">= 0.97 / 0.95"),
    ("bcubed_f1_synthetic", "  synthetic voices", ">= 0.97"),
    ("bcubed_f1_real", "  real people", ">= 0.95"),
    ("accepted_speaker_accuracy", "accepted speaker labels right", ">= 0.995"),
    ("speaker_accepted_share_of_speech", "  their share of speech", ">= 0.80"),
    ("speaker_confidence_ece", "speaker ECE", "<= 0.03"),
    ("speaker_confidence_ece_floor", "  a calibrated score's (mean)", ""),
    ("accepted_two_voice_clips", "two-voice clips accepted", "0"),
    ("wer_accepted", "accepted WER (English)", "<= 0.04"),
    ("review_share_of_speech", "review share of speech", ""),
)

COUNTS = frozenset({"clips", "accepted_two_voice_clips"})  # printed without decimals


def render_kept(kept: list[tuple[int, str]], tuning_half: bool) -> list[str]:
    """Where ``--keep-stores`` kept each draw's store and, for the tuning half, the
    ``convoice calibrate`` command that judges a calibration on them (add ``--write`` and
    drop ``--dry-run`` to fit the one that ships); the reporting half is not fitted on."""
    if not kept:
        return []
    lines = ["stores kept (the labels scored above, one per draw):"]
    lines += [f"  seed {seed}: {path}" for seed, path in kept]
    if tuning_half:
        homes = " ".join(f"--bench-home {path}" for _, path in kept)
        seeds = " ".join(f"--bench-seed {seed}" for seed, _ in kept)
        lines.append(f"judge a calibration on them: convoice calibrate --dry-run {homes} {seeds}")
    else:
        lines.append("nothing may be fitted on these stores: only the tuning half's (--split tune)")
    return lines


def render_draws(draws: list[Draw]) -> list[str]:
    """Each draw's figures side by side, with their mean and range (none for one draw)."""
    if len(draws) < 2:
        return []
    heads = "".join(f"{f'seed {d.seed}':>9}" for d in draws)
    lines = [
        f"the same voices dealt into {len(draws)} corpora (--draws; the first is the one above):",
        f"  {'figure':<32}{heads}{'mean':>9}  {'min-max':<13}  bar",
    ]
    for key, label, bar in DRAW_FIGURES:
        values = [d.quality[key] for d in draws if key in d.quality]
        if len(values) < len(draws):
            continue  # not measured on every draw (no real people, no English text)
        places = 0 if key in COUNTS else 4
        cells = "".join(f"{v:9.{places}f}" for v in values)
        spread = f"{min(values):.{places}f}-{max(values):.{places}f}"
        mean = f"{statistics.mean(values):9.{places or 1}f}"  # a count's mean: one decimal
        lines.append(f"  {label:<32}{cells}{mean}  {spread:<13}  {bar}".rstrip())
    return lines + render_pooled_ece(draws)


def render_pooled_ece(draws: list[Draw]) -> list[str]:
    """The speaker ECE of every draw's clips together, beside the ECE a perfectly calibrated
    score would show on them (:func:`~convoice.models.evaluation.ece_floor`): one draw's
    few hundred clips cannot tell an ECE of 0.03 from one of 0.05."""
    confidence = [c for d in draws for c in d.speaker_confidence]
    right = [r for d in draws for r in d.speaker_right]
    if not confidence or len(confidence) != len(right):
        return []
    pooled = evaluation.expected_calibration_error(evaluation.reliability(confidence, right))
    floor, low, high = evaluation.ece_floor(confidence)
    return [
        f"  speaker ECE pooled over the {len(draws)} draws ({len(confidence)} clips): "
        f"{pooled:.4f}; a perfectly calibrated score with these confidences: {floor:.4f} "
        f"(5-95 %: {low:.4f}-{high:.4f}; README, Benchmark)"
    ]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


PLAIN_WHISPER = "faster-whisper alone as a user runs it (own process, glibc's defaults)"
# the rows above are timed in the benchmark's process, whose allocator keeps freed memory
# (convoice.orchestration.memory); this one is what a user of faster-whisper gets


OVERLAP = "  stages side by side (two recordings at once): their sum less the flow's wall"

NAIVE_EMBEDDING_NAMES = {"resemblyzer": "GE2E", "campplus": "CAM++"}


@dataclass
class BenchmarkResult:
    corpus: str
    audio_seconds: float
    machine: str = ""  # the CPU (convoice.bench.machine): figures differ between CPUs
    whisper_fastest_s: float = 0.0
    whisper_words_s: float = 0.0  # the same with word_timestamps=True (--profile)
    whisper_plain_s: float = 0.0  # as a user runs it: own process, glibc's defaults (--profile)
    process_s: float = 0.0  # `convoice ingest` as a process, start to exit (--profile)
    process_flow_s: float = 0.0  # of which its flow's wall time, by its report (--profile)
    naive_s: float = 0.0
    naive_steps: dict[str, float] = field(default_factory=dict)
    naive_embedding: str = DEFAULT_EMBEDDING  # the naive chain's pyannote embedding
    flow_s: float = 0.0
    flow_stages: dict[str, float] = field(default_factory=dict)
    quality: dict[str, float] = field(default_factory=dict)
    registry_match_ms: dict[str, float] = field(default_factory=dict)
    reliability: list[dict[str, float]] = field(default_factory=list)
    review: list[dict[str, Any]] = field(default_factory=list)  # evaluation.ReviewRow
    queue_order: list[dict[str, Any]] = field(default_factory=list)  # queue_order.QueueOrder
    conditions: list[dict[str, Any]] = field(default_factory=list)  # evaluation.ConditionRow
    hard_pairs: list[tuple[str, str, float]] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)  # speaker rules, one recording/voice out
    identity_errors: dict[str, Any] = field(default_factory=dict)  # models.identity_errors
    notes: list[str] = field(default_factory=list)
    repeat: int = 1  # rounds of --profile --repeat: the figures above are their medians
    flow_stages_cpu: dict[str, float] = field(default_factory=dict)  # CPU s, median of rounds
    profile_runs: list[ProfileRun] = field(default_factory=list)  # every round, in order
    draws: list[Draw] = field(default_factory=list)  # --draws: this corpus first, then others
    kept_stores: list[tuple[int, str]] = field(default_factory=list)  # --keep-stores: (seed, path)
    # --profile: Whisper's encoder passes alone and in the flow (bench.encoder_passes)
    whisper_alone_passes: EncoderPasses | None = None
    flow_passes: EncoderPasses | None = None

    def take_medians(self) -> None:
        """Set the figures from :attr:`profile_runs`: each the median of its rounds."""
        runs = self.profile_runs
        if not runs:
            return
        self.whisper_fastest_s = _median([r.whisper_s for r in runs])
        self.whisper_words_s = _median([r.whisper_words_s for r in runs])
        self.whisper_plain_s = _median([r.whisper_plain_s for r in runs])
        self.process_s = _median([r.process_s for r in runs])
        self.process_flow_s = _median([r.process_flow_s for r in runs])
        self.flow_s = _median([r.flow_s for r in runs])
        stages = list(dict.fromkeys(k for r in runs for k in r.flow_stages))
        self.flow_stages = {k: _median([r.flow_stages.get(k, 0.0) for r in runs]) for k in stages}
        cpu = list(dict.fromkeys(k for r in runs for k in r.flow_stages_cpu))
        self.flow_stages_cpu = {
            k: _median([r.flow_stages_cpu.get(k, 0.0) for r in runs]) for k in cpu
        }

    @property
    def ratio_to_whisper(self) -> float:
        return self.flow_s / self.whisper_fastest_s if self.whisper_fastest_s else float("nan")

    @property
    def naive_label(self) -> str:
        """The naive chain's row: which embedding its pyannote pipeline ran."""
        inside = NAIVE_EMBEDDING_NAMES.get(self.naive_embedding, self.naive_embedding)
        return f"naive chain (pyannote defaults with {inside}, Whisper, resemblyzer)"

    @property
    def ratio_to_naive(self) -> float:
        return self.flow_s / self.naive_s if self.naive_s else float("nan")

    def to_json(self) -> str:
        data = asdict(self)
        data["ratio_to_whisper"] = self.ratio_to_whisper
        data["ratio_to_naive"] = self.ratio_to_naive
        return json.dumps(data, indent=2)

    def profile_rows(self) -> list[tuple[str, float]]:
        """(what, wall seconds) of the ``--profile`` table, Whisper alone first."""
        rows = [
            ("faster-whisper base int8, batched 8, greedy, VAD, no word timestamps",
             self.whisper_fastest_s),
            ("the same with word_timestamps=True", self.whisper_words_s),
        ]  # fmt: skip
        if self.whisper_plain_s:
            rows.append((PLAIN_WHISPER, self.whisper_plain_s))
        rows.append(("`convoice ingest` as a process (CLI start to exit)", self.process_s))
        if self.process_flow_s:
            rows += [
                ("  its start-up and exit (imports, Prefect's server, flow run set-up)",
                 self.process_s - self.process_flow_s),
                ("  its flow (wall time its report gives; models finish loading in it)",
                 self.process_flow_s),
            ]  # fmt: skip
        rows.append(("the flow (in this process, models loaded)", self.flow_s))
        rows += [(f"  {name}", seconds) for name, seconds in self.flow_stages.items()]
        if self.flow_stages:
            rest = self.flow_s - sum(self.flow_stages.values())
            if rest >= 0:
                rows.append(("  the rest (Prefect's flow and task runs, waits, logging)", rest))
            else:  # the next recording is prepared while Whisper transcribes one
                rows.append((OVERLAP, -rest))
        if self.naive_s:
            rows.append((self.naive_label, self.naive_s))
        return rows

    def machine_note(self) -> str:
        """``"; machine: ..."`` for a table's heading (empty when not recorded)."""
        return f"; machine: {self.machine}" if self.machine else ""

    def plain_lines(self) -> list[str]:
        """The process and the flow against Whisper as a user runs it (none when not timed)."""
        if not self.whisper_plain_s:
            return []
        return [
            f"  against faster-whisper alone as a user runs it: the process "
            f"{self.process_s / self.whisper_plain_s:.2f}, the flow "
            f"{self.flow_s / self.whisper_plain_s:.2f} (the rows' / W: Whisper in this process)"
        ]

    def passes_lines(self) -> list[str]:
        """Whisper's encoder passes, alone and in the flow (none when not counted)."""
        if self.whisper_alone_passes is None or self.flow_passes is None:
            return []
        return render_passes(self.whisper_alone_passes, self.flow_passes)

    def render_profile(self) -> str:
        """The per-stage table of issue 12: seconds and ratio to Whisper alone, one run
        (with ``--repeat N``: :meth:`render_repeats`)."""
        if self.repeat > 1:
            return self.render_repeats()
        base = self.whisper_fastest_s
        lines = [
            f"profile: {self.corpus}, {self.audio_seconds:.1f} s of audio (one run, same audio)"
            + self.machine_note(),
            f"  {'':<72} {'wall s':>8} {'/ Whisper alone':>16}",
        ]
        for what, seconds in self.profile_rows():
            ratio = f"{seconds / base:16.2f}" if base else f"{'-':>16}"
            lines.append(f"  {what:<72} {seconds:8.1f} {ratio}")
        lines += self.plain_lines() + self.passes_lines()
        if self.naive_s:
            lines.append(f"  naive chain / flow = {self.naive_s / self.flow_s:.1f} (bar >= 10)")
        if self.profile_runs:
            lines.append("  CPU s (user + sys): " + _cpu_line(self.profile_runs[0]))
        return "\n".join(lines)

    def repeat_rows(self) -> list[tuple[str, list[float], list[float]]]:
        """(what, wall seconds per round, CPU seconds per round) of :meth:`render_repeats`."""
        runs = self.profile_runs
        rows = [
            ("faster-whisper base int8, batched 8, greedy, VAD, no word timestamps",
             [r.whisper_s for r in runs], [r.whisper_cpu_s for r in runs]),
            ("the same with word_timestamps=True",
             [r.whisper_words_s for r in runs], [r.whisper_words_cpu_s for r in runs]),
            (PLAIN_WHISPER,
             [r.whisper_plain_s for r in runs], [r.whisper_plain_cpu_s for r in runs]),
            ("`convoice ingest` as a process (CLI start to exit)",
             [r.process_s for r in runs], [r.process_cpu_s for r in runs]),
            ("  its start-up and exit (imports, Prefect's server, flow run set-up)",
             [r.process_s - r.process_flow_s for r in runs], []),
            ("  its flow (wall time its report gives; models finish loading in it)",
             [r.process_flow_s for r in runs], []),
            ("the flow (in this process, models loaded)",
             [r.flow_s for r in runs], [r.flow_cpu_s for r in runs]),
        ]  # fmt: skip
        stages = list(dict.fromkeys(k for r in runs for k in (*r.flow_stages, *r.flow_stages_cpu)))
        rows += [
            (f"  {k}", [r.flow_stages.get(k, 0.0) for r in runs],
             [r.flow_stages_cpu.get(k, 0.0) for r in runs])
            for k in stages
        ]  # fmt: skip
        return rows

    def render_repeats(self) -> str:
        """``--profile --repeat N``: per row the median of the N rounds, their spread (min-max),
        and the ratio of medians to Whisper alone's, for wall and for CPU seconds."""
        runs = self.profile_runs
        loads = [r.load_average for r in runs]
        clips = sorted({r.clips for r in runs})
        lines = [
            f"profile: {self.corpus}, {self.audio_seconds:.1f} s of audio, {len(runs)} rounds "
            "alternating (Whisper, with words, the process, the flow), same audio; "
            f"load average {min(loads):.1f}-{max(loads):.1f}; clips per round {clips}"
            + self.machine_note(),
            f"  {'':<70} {'wall s':>7} {'min-max':>13} {'/ W':>5}"
            f"   {'CPU s':>7} {'min-max':>13} {'/ W':>5}",
        ]
        base = _median([r.whisper_s for r in runs])
        base_cpu = _median([r.whisper_cpu_s for r in runs])
        for what, wall, cpu in self.repeat_rows():
            lines.append(f"  {what:<70} {_spread(wall, base)}   {_spread(cpu, base_cpu)}")
        lines += self.plain_lines() + self.passes_lines()
        if self.naive_s:
            lines.append(f"  naive chain / flow = {self.naive_s / self.flow_s:.1f} (bar >= 10)")
        return "\n".join(lines)

    def render(self) -> str:
        a = self.audio_seconds
        lines = [
            f"corpus: {self.corpus}, {a:.1f} s of audio",
            f"machine: {self.machine or 'not recorded'}",
            "speed (wall s, real-time factor on this machine):",
            f"  faster-whisper alone, batched, fastest: {self.whisper_fastest_s:8.1f} s  "
            f"RTF {self.whisper_fastest_s / a:.3f}",
            (
                f"  naive pieces one after another:        {self.naive_s:8.1f} s  "
                f"RTF {self.naive_s / a:.3f}  "
                + " ".join(f"{k} {v:.1f}" for k, v in self.naive_steps.items())
                if self.naive_s
                else "  naive pieces one after another:        not run (--no-naive)"
            ),
            f"  convoice ingest flow (everything):      {self.flow_s:8.1f} s  "
            f"RTF {self.flow_s / a:.3f}",
            f"  flow / whisper alone = {self.ratio_to_whisper:.2f} (issue 12's bar, for "
            "`convoice ingest` as a process: <= 1.3; --profile times it); "
            + (
                f"naive / flow = {self.naive_s / self.flow_s:.1f} (bar >= 10)"
                if self.naive_s and self.flow_s
                else "naive / flow: - (--no-naive)"
            ),
            "  flow stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.flow_stages.items()),
            "quality:",
        ]
        lines += [f"  {k}: {v:.4f}" for k, v in self.quality.items()]
        if self.reliability:
            lines.append("reliability of speaker_confidence (bin: clips, mean confidence, right):")
            lines += [
                f"  [{b['low']:.1f}, {b['high']:.1f}{']' if b['high'] >= 1 else ')'}: "
                f"{b['clips']:5.0f}  "
                f"{b['mean_confidence']:.3f}  {b['accuracy']:.3f}"
                for b in self.reliability
            ]
        if self.held_out:
            lines.append("speaker calibration rules refitted leaving one recording (or voice) out:")
            lines += [f"  {line}" for line in self.held_out]
        lines += render_review(self.review)
        lines += render_queue_order(self.queue_order)
        lines += render_conditions(self.conditions)
        lines += render_draws(self.draws)
        lines += render_errors(self.identity_errors)
        if self.hard_pairs:
            lines.append(
                "hard pairs (same engine, resemblyzer centroid cosine > 0.8): "
                + ", ".join(f"{a}-{b} {c:.2f}" for a, b, c in self.hard_pairs)
            )
        lines += [f"note: {n}" for n in self.notes]
        lines.append(
            "identity matching of one 3-speaker recording against a registry of N speakers: "
            + ", ".join(f"N={k}: {v:.1f} ms" for k, v in self.registry_match_ms.items())
        )
        return "\n".join(lines)


def _spread(values: list[float], base: float) -> str:
    """Median, min-max and median / ``base`` of one row's rounds (blank when not measured)."""
    if not values:
        return f"{'-':>7} {'':>13} {'':>5}"
    mid = _median(values)
    ratio = f"{mid / base:5.2f}" if base else f"{'-':>5}"
    return f"{mid:7.1f} {f'{min(values):.1f}-{max(values):.1f}':>13} {ratio}"


def _cpu_line(run: ProfileRun) -> str:
    """One round's CPU seconds: Whisper's rows, the process, the flow and its stages."""
    stages = ", ".join(f"{k} {v:.1f}" for k, v in run.flow_stages_cpu.items())
    return (
        f"Whisper alone {run.whisper_cpu_s:.1f}, with words {run.whisper_words_cpu_s:.1f}, "
        f"the process {run.process_cpu_s:.1f}, the flow {run.flow_cpu_s:.1f} ({stages})"
    )


def _rate(x: float | None) -> str:
    """A share right (or "-" when nothing was judged), five characters wide."""
    return "    -" if x is None else f"{x:5.3f}"


def render_conditions(rows: list[dict[str, Any]]) -> list[str]:
    """Speaker labels per recording condition of the corpus (evaluation.ConditionRow)."""
    if not rows:
        return []
    lines = [
        "speaker labels by recording condition (speech: share of all; accepted: share of the",
        "condition's speech, right among them; the rest: mean speaker_confidence, right):",
        "  condition                           clips  speech  right  accepted  right(acc)"
        "  rest: conf  right",
    ]
    for r in rows:
        lines.append(
            f"  {r['condition'][:34]:34s}  {r['clips']:5d}  {r['speech_share']:6.3f}  "
            f"{r['right']:5.3f}  {r['accepted_share']:8.3f}  {_rate(r['accepted_right']):>10}  "
            f"{_rate(r['review_confidence']):>10}  {_rate(r['review_right'])}"
        )
    return lines


def render_review(rows: list[dict[str, Any]]) -> list[str]:
    """Review share next to precision, per label kind and per reason."""
    if not rows:
        return []
    lines = [
        "review share of speech next to precision (right: labels right among the accepted /",
        "among those sent to review; a reason's labels are its kind's):",
        "  what                              review  accepted  right(acc)  right(review)",
    ]
    for r in rows:
        acc = f"{r['accepted_share']:8.3f}" if not r["what"].startswith("reason:") else "       -"
        lines.append(
            f"  {r['what']:<32} {r['review_share']:7.3f}  {acc}  {_rate(r['accepted_right']):>10}"
            f"  {_rate(r['review_right']):>13}"
        )
    return lines
