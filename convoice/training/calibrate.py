"""``convoice calibrate``: fit the map from raw scores to probabilities that a label is right.

Two sources of truth, never the clips a calibration is judged on:

- the benchmark's **tuning half** (``convoice calibrate --bench-home DIR``: the
  store a ``convoice bench --split tune`` run labelled): its fit is the
  calibration that ships in the package (:mod:`convoice.models.calibration_shipped`),
  printed with each speaker rule's held-out ECE, leaving one recording out
  (:mod:`convoice.models.calibration_loro`): whether the curve will carry over;
- **people's review labels** in a store (``convoice calibrate``, and the
  ``calibrate`` step of ``convoice loop``): a clip whose speaker a person
  gave is judged right when the machine had said the same speaker, a
  transcript when the person's text is within 10 % WER of the machine's (scored as
  the benchmark scores: ``metrics.standard_wer_count`` in the clip's language). The
  recording speakers (a recording and the machine's speaker in it: the unit
  errors cluster by) are split in two stable halves by hash: the refit is
  fitted on one and judged (reliability table, ECE, accepted precision) on
  the other, beside the current calibration judged on the same clips, and
  saved as the store's next version (``calibration/v<N>``) only when it is no
  worse there. The speaker curve is refitted by
  :func:`convoice.models.calibration_refit.refit_curve` (the current curve as
  a prior, never raised above what the labels support); people's labels a
  trained CAM++ was trained on are left out (their scores flatter it).
"""

from __future__ import annotations

import json
import pprint
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convoice.models import calibration as calib
from convoice.models import calibration_loro as loro
from convoice.models import calibration_refit as refit_rule
from convoice.models import encoder_eval, evaluation
from convoice.models.metrics import standard_wer_count
from convoice.records import ALL_LANGUAGES, ClipStatus, StoredClip

if TYPE_CHECKING:
    import pyarrow as pa

    from convoice.storage import Store


def judged_from_truth(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[evaluation.RefTurn]]
) -> list[calib.Judged]:
    """Every clip of ``truth``'s recordings with its raw scores and whether its labels are right."""
    labelled, reference, right = evaluation.judge(clips, truth)
    text_right = evaluation.transcript_right(labelled, truth)
    return [
        _judged_row(c, ref[0], bool(ok), text_right)
        for c, ref, ok in zip(labelled, reference, right, strict=True)
    ]


def _judged_row(
    c: Mapping[str, Any], voice: str, right: bool, text_right: Mapping[str, bool]
) -> calib.Judged:
    """One clip row of :func:`judged_from_truth`, its true speaker ``voice``."""
    raw = _raw(c.get("speaker_score_raw"), c.get("speaker_confidence"))
    duration = float(c.get("duration") or c["end"] - c["start"])
    return calib.Judged(
        key=c["recording_id"],
        speaker_raw=raw,
        speaker_right=right,
        transcript_raw=(
            _raw(c.get("transcript_score_raw"), c.get("transcript_confidence"))
            if c["clip_id"] in text_right
            else None
        ),
        transcript_right=text_right.get(c["clip_id"]),
        language=c.get("language") or "",
        clip_id=c["clip_id"],
        group=f"{c['recording_id']}/{c.get('speaker_id')}",
        duration=duration,
        voice=voice,
        speaker_kind=stored_kind(c.get("extra")),
        speaker_evidence=stored_evidence(c.get("extra"), raw, duration),
    )


def stored_kind(extra: str | None) -> str:
    """The ``speaker_kind`` a clip row's ``extra`` JSON records ("" in rows made before it)."""
    return str(json.loads(extra or "{}").get("speaker_kind", ""))


STORED_EVIDENCE = ("own_similarity", "other_similarity", "identity_similarity")
"""What a clip row's ``extra`` must hold for its :func:`stored_evidence` (rows of stores made
before session 24 lack some)."""


def stored_evidence(extra: str | None, raw: float, duration: float) -> dict[str, float] | None:
    """The speaker evidence (:func:`~convoice.models.routing.evidence_features`) a clip row
    records: the measurements in its ``extra`` JSON with its raw score and length, as the
    ingest computed them (None when the row lacks them)."""
    from convoice.models.routing import evidence_features

    data = json.loads(extra or "{}")
    if any(key not in data for key in STORED_EVIDENCE):
        return None
    clip_identity = data.get("clip_identity")
    return evidence_features(
        str(data.get("speaker_kind", "")), raw, float(data["own_similarity"]),
        float(data["other_similarity"]), float(data["identity_similarity"]),
        float(data.get("identity_runner_up", -1.0)),
        float("nan") if clip_identity is None else float(clip_identity),
        float(data.get("clip_runner_up", -1.0)), duration,
    )  # fmt: skip


def _raw(score_raw: float | None, confidence: float | None) -> float:
    """A clip's raw score (rows written before the raw columns: its confidence)."""
    return float(score_raw if score_raw is not None else confidence or 0.0)


BENCH_SEED = 11
"""The seed of the corpus ``convoice bench`` generates (``make_half_corpus``'s default)."""


def bench_truth(
    home: str, split: str, seed: int = BENCH_SEED
) -> tuple[Store, dict[str, list[evaluation.RefTurn]]]:
    """A store that ``convoice bench --split <split>`` labelled (or, for another ``seed``, an
    ingest of that half's corpus generated with it: the same voices in other episodes;
    cached beside the bench's as ``corpus-<split>-seed<seed>``), and its reference turns
    per recording id."""
    from convoice.bench import corpus as bench_corpus
    from convoice.bench.quality import corpus_truth, episodes_by_recording
    from convoice.engines import loaders
    from convoice.storage import Store

    name = f"corpus-{split}" if seed == BENCH_SEED else f"corpus-{split}-seed{seed}"
    corpus = bench_corpus.make_half_corpus(
        loaders.cache_dir() / "bench" / name, half=split, seed=seed
    )
    store = Store(home)
    return store, corpus_truth(episodes_by_recording(store, corpus), corpus)


def bench_judged(home: str, split: str, seed: int = BENCH_SEED) -> list[calib.Judged]:
    """The judged clips of a store :func:`bench_truth` reads."""
    store, truth = bench_truth(home, split, seed)
    return judged_from_truth(store.clips().to_pylist(), truth)


def pooled_bench_judged(
    homes: Sequence[str], split: str, seeds: Sequence[int] = ()
) -> list[calib.Judged]:
    """:func:`bench_judged` of several stores (``seeds``: each one's corpus seed, default the
    bench's); with more than one, each recording is keyed by its seed too (episode names
    repeat across seeds)."""
    seeds = tuple(seeds) or (BENCH_SEED,) * len(homes)
    if len(seeds) != len(homes):
        raise ValueError(f"{len(homes)} bench stores but {len(seeds)} seeds")
    out: list[calib.Judged] = []
    for home, seed in zip(homes, seeds, strict=True):
        judged = bench_judged(home, split, seed)
        if len(homes) > 1:
            judged = [replace(j, key=f"{seed}:{j.key}", group=f"{seed}:{j.group}") for j in judged]
        out.extend(judged)
    return out


def fit_shipped(
    judged: Sequence[calib.Judged], version: str, seeds: Sequence[int] = ()
) -> calib.Calibration:
    """The package's calibration: fitted on every judged clip of the tuning half, one
    transcript curve for every language (as ``shipped-4`` chose: a per-language curve beside
    it gained nothing held out; README "Confidence and review")."""
    corpora = f" (corpus seeds {', '.join(map(str, seeds))})" if seeds else ""
    rule = (
        f"isotonic regression (pool-adjacent-violators, each block shrunk towards the overall "
        f"rate by {calib.PRIOR_WEIGHT:g} clip) of right labels on the raw scores of the "
        f"{len(judged)} clips of `convoice bench --split tune`{corpora} "
        "(split rule convoice-split-1); "
        f"speaker right: evaluation.judge; transcript right: WER <= "
        f"{evaluation.TRANSCRIPT_RIGHT_WER:.0%} on the reference turns its clip covers, "
        "one transcript curve for every language"
    )
    return calib.fit_calibration(judged, version, rule, per_language=False)


SPEAKER_RULES: dict[str, loro.Fitter] = {
    "isotonic (the shipped rule)": lambda scores, right, _: calib.fit_curve(scores, right),
    "logistic (3 parameters, candidate)": calib.fit_logistic,
}
"""The speaker fitting rules whose carry-over :func:`held_out` measures."""


KEEP_TOP = "the shipped curve's top, one rate below (candidate)"
"""The rule of :func:`~convoice.models.calibration.keep_top` on the current shipped curve."""


def held_out(
    judged: Sequence[calib.Judged], target: float, current: calib.Curve | None = None
) -> list[tuple[str, loro.HeldOut]]:
    """Each speaker rule's held-out figures, leaving one recording out, then (when every
    clip's true speaker is known) one voice out; the shipped rule's first. With ``current``
    (the shipped speaker curve) also :data:`KEEP_TOP`, last."""
    units = [loro.LeaveOut.RECORDING]
    if judged and all(j.voice for j in judged):
        units.append(loro.LeaveOut.VOICE)
    rules = dict(SPEAKER_RULES)
    if current is not None:
        top = current
        rules[KEEP_TOP] = lambda scores, right, _: calib.keep_top(top, scores, right, target)
    return [
        (name, loro.leave_one_recording_out(judged, fitter, target, unit))
        for name, fitter in rules.items()
        for unit in units
    ]


def fit_keep_top(
    judged: Sequence[calib.Judged],
    current: calib.Calibration,
    version: str,
    target: float,
    seeds: Sequence[int] = (),
    transcripts: bool = False,
    kinds: Sequence[str] = (),
) -> calib.Calibration:
    """The package's calibration by :data:`KEEP_TOP`: ``current``'s speaker curve where it
    reaches ``target``, the share right of every judged clip below it; transcripts as
    ``current``'s, or (``transcripts``) one curve for every language refitted on the judged
    clips (as ``shipped-4`` chose: the tuning half has text for English voices only, and an
    'en' curve beside it gained nothing held out; README "Confidence and review").

    ``kinds`` (speaker kinds, :func:`~convoice.models.routing.speaker_kind`): each gets a
    level of its own (:func:`~convoice.models.calibration.kind_level`), the share below the
    top is fitted on the other clips, and the operating point is chosen on all of them
    (:func:`~convoice.models.calibration.operating_point`)."""
    spk = calib.speaker_judged(judged)
    main = [j for j in spk if j.speaker_kind not in kinds]
    speaker = calib.keep_top(
        current.speaker, [j.speaker_raw or 0.0 for j in main],
        [bool(j.speaker_right) for j in main], target,
    )  # fmt: skip
    levels = {kind: calib.kind_level(spk, kind) for kind in kinds}
    corpora = f" (corpus seeds {', '.join(map(str, seeds))})" if seeds else ""
    rule = (
        f"speaker: {current.version}'s curve where it reaches {target:g} (what it accepts "
        f"unchanged), below it one probability, the share right of the {speaker.clips} clips "
        f"of `convoice bench --split tune`{corpora} (split rule convoice-split-1) it does not "
        f"accept"
    )
    point = None
    if levels:
        rule += "".join(
            f"; kind {kind!r}: one probability, the share right of its {c.clips} clips "
            f"({c.right} right), pulled towards all clips' by {calib.PRIOR_WEIGHT:g}"
            for kind, c in levels.items()
        )
        probe = calib.Calibration(version, rule, speaker, speaker_kinds=levels)
        point = calib.operating_point(
            [calib.judged_probability(probe, j) for j in spk],
            [bool(j.speaker_right) for j in spk], target, [c(0.0) for c in levels.values()],
        )  # fmt: skip
        rule += (
            f"; accepted from probability {point[1]:g} at target {target:g} (the accepted "
            f"clips right at least {target:g} of the time as a whole)"
        )
    rule += "; speaker right: evaluation.judge; transcripts: "
    if not transcripts:
        return calib.Calibration(
            version, rule + f"{current.version}'s", speaker, dict(current.transcript),
            speaker_kinds=levels, operating_point=point,
        )  # fmt: skip
    rule += (
        f"isotonic regression of right transcripts (WER <= {evaluation.TRANSCRIPT_RIGHT_WER:.0%} "
        "on the reference turns the clip covers) on their raw scores, the same clips, one "
        "curve for every language"
    )
    curves = calib.fit_transcript_curves(judged, per_language=False)
    return calib.Calibration(
        version, rule, speaker, curves, speaker_kinds=levels, operating_point=point
    )


def module_source(calibration: calib.Calibration) -> str:
    """The text of ``models/calibration_shipped.py`` holding ``calibration``."""
    data = pprint.pformat(asdict(calibration), width=96, sort_dicts=True)
    return (
        '"""The calibration that ships in the package (written by ``convoice calibrate\n'
        '--bench-home``, see :mod:`convoice.training.calibrate`; do not edit by hand)."""\n\n'
        "from typing import Any\n\n"
        f"SHIPPED: dict[str, Any] = {data}\n"
    )


def write_module(calibration: calib.Calibration, out: Path) -> None:
    """Write :func:`module_source` to ``out``, laid out by ``ruff format`` as the repository's
    lint expects (ruff is a development dependency: without it the text stays as written)."""
    out.write_text(module_source(calibration))
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        return
    subprocess.run([find_ruff_bin(), "format", "--quiet", str(out)], check=True)


def judged_from_labels(machine: Sequence[StoredClip], labels: pa.Table) -> list[calib.Judged]:
    """Clips people labelled, judged against what the machine had said (its raw scores)."""
    from convoice.storage.labels import latest_labels
    from convoice.storage.rows import label_records

    given: dict[tuple[str, str], str | None] = {}
    if labels.num_rows:
        given = {(r.clip_id, r.field): r.value for r in label_records(latest_labels(labels))}
    out = []
    for c in machine:
        speaker = given.get((c.clip_id, "speaker_id"))
        text = given.get((c.clip_id, "text"))
        if given.get((c.clip_id, "status")) == ClipStatus.REJECTED or (
            speaker is None and text is None
        ):
            continue
        text_ok = None
        if text is not None:
            count = standard_wer_count(text, c.text or "", c.language or "en")
            text_ok = count.wer <= evaluation.TRANSCRIPT_RIGHT_WER  # scored as the bench scores
        out.append(
            calib.Judged(
                key=f"{c.recording_id}/{c.speaker_id}",  # a recording speaker
                speaker_raw=(
                    _raw(c.speaker_score_raw, c.speaker_confidence) if speaker is not None else None
                ),
                speaker_right=None if speaker is None else speaker == c.speaker_id,
                transcript_raw=(
                    _raw(c.transcript_score_raw, c.transcript_confidence)
                    if text is not None
                    else None
                ),
                transcript_right=text_ok,
                language=c.language or "",
                clip_id=c.clip_id,
                speaker_kind=stored_kind(c.extra),
                speaker_evidence=stored_evidence(
                    c.extra, _raw(c.speaker_score_raw, c.speaker_confidence), c.duration
                ),
            )
        )
    return out


@dataclass(frozen=True)
class RefitResult:
    """What a refit from people's labels found, and whether it was saved."""

    fitted_on: int
    judged_on: int
    current: calib.Calibration
    current_table: tuple[calib.Bin, ...]
    refit: calib.Calibration | None
    saved: bool
    why: str
    speakers: tuple[int, int] = (0, 0)  # recording speakers fitted on, judged on
    accepted: str = ""  # accepted precision on the judged half, current and refit

    def render(self) -> str:
        lines = [
            f"people's labels: {self.fitted_on} clips ({self.speakers[0]} recording speakers) "
            f"to fit on, {self.judged_on} ({self.speakers[1]}) held out (recording speakers "
            f"split by hash)",
            f"current calibration {self.current.version}, on the held-out clips: "
            f"ECE {calib.ece(self.current_table):.4f}",
            *calib.render_table(self.current_table),
        ]
        if self.refit is not None:
            lines += [
                f"refit {self.refit.version}, on the same held-out clips: ECE "
                f"{self.refit.speaker_ece or 0.0:.4f}",
                *calib.render_table(self.refit.speaker_reliability),
            ]
        if self.accepted:
            lines.append(self.accepted)
        lines.append(("saved: " if self.saved else "not saved: ") + self.why)
        return "\n".join(lines)


def _table(cal: calib.Calibration, held: Sequence[calib.Judged]) -> tuple[calib.Bin, ...]:
    spk = calib.speaker_judged(held)
    return calib.reliability_bins(
        [calib.judged_probability(cal, j) for j in spk],
        [bool(j.speaker_right) for j in spk],
    )


def _accepted(cal: calib.Calibration, held: Sequence[calib.Judged], target: float) -> tuple:
    spk = calib.speaker_judged(held)
    return refit_rule.accepted_precision(
        [calib.judged_probability(cal, j) for j in spk],
        [bool(j.speaker_right) for j in spk],
        cal.speaker_bar(target),
    )


def refit_calibration(
    fit: Sequence[calib.Judged],
    held: Sequence[calib.Judged],
    current: calib.Calibration,
    version: str,
    rule: str,
) -> calib.Calibration:
    """Transcript curves refitted as the shipped ones are; the speaker curve by the safe rule."""
    cal = calib.fit_calibration(fit, version, rule, judge_on=held)
    spk = calib.speaker_judged(fit)
    speaker = refit_rule.refit_curve(
        [j.speaker_raw or 0.0 for j in spk],
        [bool(j.speaker_right) for j in spk],
        [j.key for j in spk],
        current.speaker,
    )
    # the kinds' levels, the operating point and the speaker model are the tuning half's:
    # people's labels move the main curve only
    cal = replace(
        cal, speaker=speaker, speaker_kinds=dict(current.speaker_kinds),
        operating_point=current.operating_point, speaker_model=current.speaker_model,
    )  # fmt: skip
    table = _table(cal, held)
    return replace(cal, speaker_reliability=table, speaker_ece=round(calib.ece(table), 4))


def _refusal(
    current: calib.Calibration,
    refit: calib.Calibration,
    held: Sequence[calib.Judged],
    target: float,
) -> tuple[str, str]:
    """Why a refit may not be saved ("" when it may), and the accepted-precision line."""
    n_now, p_now = _accepted(current, held, target)
    n_new, p_new = _accepted(refit, held, target)
    floor = refit_rule.precision_floor(p_now, target)

    def fmt(n: int, p: float | None) -> str:
        return f"{n} clips" + ("" if p is None else f", right {p:.4f}")

    line = (
        f"accepted at {target:g} on the held-out clips: current {fmt(n_now, p_now)}; "
        f"refit {fmt(n_new, p_new)}"
    )
    if p_new is not None and p_new < floor:
        return f"its accepted labels are right {p_new:.4f} < {floor:.4f} there", line
    # unrounded (the stored ECE is rounded to 4 places: an equal curve is not worse)
    if calib.ece(_table(refit, held)) > calib.ece(_table(current, held)) + 1e-9:
        return "its ECE is worse on the held-out clips", line
    return "", line


def _people_judged(store: Any, settings: Any, encoder: str) -> list[calib.Judged]:
    """People's labels, without those the current (trained) CAM++ was trained on."""
    from convoice.storage.encoders import built_in
    from convoice.storage.rows import clip_records

    judged = judged_from_labels(clip_records(store.clips()), store.labels())
    if built_in(encoder):  # trained on none of the store's labels
        return judged
    share = settings.encoder.judge_share
    return [j for j in judged if j.clip_id and encoder_eval.judged(j.clip_id, share)]


def refit_from_labels(
    home: str | None = None, save: bool = True, config: str | None = None
) -> RefitResult:
    """Refit the calibration on one half of people's labels, judge it on the other."""
    from convoice.config import load_settings
    from convoice.storage import Store
    from convoice.storage import calibration as stored
    from convoice.storage.encoders import EncoderRegistry

    settings = load_settings(config, home=home)
    store = Store.open(settings)
    encoder = EncoderRegistry(store.location).current("campplus")  # whose raw scores these are
    judged = _people_judged(store, settings, encoder)
    held = [j for j in judged if calib.holdout_half(j.key)]
    fit = [j for j in judged if not calib.holdout_half(j.key)]
    current = stored.current(store.location, encoder)
    now = _table(current, held)
    spk_fit, spk_held = calib.speaker_judged(fit), calib.speaker_judged(held)
    n_fit, n_held = len(spk_fit), len(spk_held)
    groups = (len({j.key for j in spk_fit}), len({j.key for j in spk_held}))
    if groups[0] < refit_rule.MIN_FIT_SPEAKERS or groups[1] < refit_rule.MIN_JUDGE_SPEAKERS:
        why = (
            f"{refit_rule.MIN_FIT_SPEAKERS} recording speakers labelled by people are needed "
            f"to fit on and {refit_rule.MIN_JUDGE_SPEAKERS} to judge on"
        )
        return RefitResult(n_fit, n_held, current, now, None, False, why, groups)
    version = stored.next_version(store.location)
    rule = (
        f"the current speaker curve ({current.version}) moved by {n_fit} clips people labelled "
        f"({groups[0]} recording speakers of hash half 0; the current curve counts as "
        f"{refit_rule.PRIOR_EVIDENCE:g} recording speakers, raised only to the Wilson lower "
        f"bound, z {refit_rule.CONFIDENCE_Z}), judged on {n_held} others (half 1), CAM++ "
        f"encoder {encoder}"
    )
    refit = refit_calibration(fit, held, current, version, rule)
    why, line = _refusal(current, refit, held, settings.routing.target_precision)
    if why or not save:
        why = why or "asked not to save (--dry-run)"
        return RefitResult(n_fit, n_held, current, now, refit, False, why, groups, line)
    uri = store.location.uri(stored.save_refit(store.location, refit, encoder))
    return RefitResult(n_fit, n_held, current, now, refit, True, uri, groups, line)


def write_shipped(
    bench_home: str | Sequence[str],
    split: str,
    out: Path | None,
    version: str,
    target: float,
    seeds: Sequence[int] = (),
    keep_top: bool = False,
    transcripts: bool = False,
    kinds: Sequence[str] = (),
    speaker_model: bool = False,
) -> tuple[calib.Calibration, list[str]]:
    """Fit on tuning-half benchmark stores (``seeds``: each one's corpus seed) and write the
    package's calibration module (``out`` None: only fit). It carries the reliability table
    and ECE of its speaker rule left one recording out; returned with every rule's lines
    (:func:`held_out`), after the lines of the calibration that ships now, judged as it is on
    the same clips (:func:`~convoice.models.calibration_loro.judge_curve`): what a refit has to
    beat held out. ``keep_top``: fit by :data:`KEEP_TOP` (:func:`fit_keep_top`) instead of
    the isotonic rule, and with ``transcripts`` refit the transcript curves as well, with
    ``kinds`` give those speaker kinds a level each and an operating point
    (:func:`held_out_kinds` judges that). The
    transcript lines come last: the shipped all-language curve as it is, then its isotonic
    refit held out (:func:`transcript_lines`)."""
    from convoice.storage.calibration import shipped

    if split != "tune":
        raise ValueError("the shipped calibration is fitted on the tuning half only (--split tune)")
    homes = [bench_home] if isinstance(bench_home, str) else list(bench_home)
    judged = pooled_bench_judged(homes, split, seeds)
    now = shipped()
    if speaker_model:
        return with_speaker_model(judged, now, version, target, seeds, out)
    figures = held_out(judged, target, now.speaker)
    mine = next(h for name, h in figures if name == KEEP_TOP) if keep_top else figures[0][1]
    fitted = (
        fit_keep_top(judged, now, version, target, seeds, transcripts, kinds)
        if keep_top
        else fit_shipped(judged, version, seeds)
    )
    table, ece, units = mine.table, mine.ece, mine.units
    kind_lines: list[str] = []
    if keep_top and kinds:
        table, units, kind_lines = held_out_kinds(judged, now, target, kinds)
        ece = round(calib.ece(table), 4)
    cal = replace(
        fitted,
        judged_on=f"the {sum(b.clips for b in table)} tuning clips, each judged by the "
        f"calibration fitted without its recording (leave one recording out, {units} "
        "recordings)",
        speaker_reliability=table,
        speaker_ece=ece,
    )
    if out is not None:
        write_module(cal, out)
    lines = loro.judge_curve(judged, now.speaker, target).render(now.version)
    lines += [line for name, h in figures for line in h.render(name)]
    return cal, lines + kind_lines + transcript_lines(judged, now)


def held_out_kinds(
    judged: Sequence[calib.Judged], now: calib.Calibration, target: float, kinds: Sequence[str]
) -> tuple[tuple[calib.Bin, ...], int, list[str]]:
    """:func:`fit_keep_top` with ``kinds`` left one recording out: each recording's clips
    judged by the calibration (levels and operating point too) fitted on the others. The
    reliability table, the recordings, and lines saying what it accepts there."""
    spk = calib.speaker_judged(judged)
    keys = sorted({j.key for j in spk})
    probability: list[float] = []
    right: list[bool] = []
    accepted: list[tuple[bool, float]] = []  # (right, seconds) of the accepted clips
    for key in keys:
        cal = fit_keep_top([j for j in spk if j.key != key], now, "held-out", target, (), False,
                           kinds)  # fmt: skip
        bar = cal.speaker_bar(target)
        for j in (j for j in spk if j.key == key):
            p = calib.judged_probability(cal, j)
            probability.append(p)
            right.append(bool(j.speaker_right))
            if p >= bar:
                accepted.append((bool(j.speaker_right), j.duration))
    table = calib.reliability_bins(probability, right)
    speech = sum(j.duration for j in spk) or 1.0
    share = sum(s for _, s in accepted) / speech
    hits = sum(ok for ok, _ in accepted)
    precision = f"{hits / len(accepted):.4f}" if accepted else "-"
    lines = [
        f"kinds {', '.join(kinds)} with a level each, operating point (held out, leave one "
        f"recording out): ECE {calib.ece(table):.4f} over {len(spk)} clips of {len(keys)} "
        f"recordings",
        f"  accepted (held out): {len(accepted)} clips, right {precision} "
        f"({len(accepted) - hits} wrong), speech accepted {share:.4f}",
    ]
    return table, len(keys), lines


def with_speaker_model(
    judged: Sequence[calib.Judged],
    now: calib.Calibration,
    version: str,
    target: float,
    seeds: Sequence[int] = (),
    out: Path | None = None,
) -> tuple[calib.Calibration, list[str]]:
    """``now`` with a speaker model (:mod:`convoice.models.calibration_model`) fitted on the
    judged labels its curve leaves under the bar of ``target``; its curves unchanged, so it
    accepts what ``now`` accepts. Returned (and written to ``out``) with the model's figures
    held out by recording and by voice: what it carries over to."""
    from convoice.models import calibration_model as cm
    from convoice.models.routing import SPEAKER_FEATURES

    if now.speaker_kinds:
        raise calib.CalibrationError(
            f"{now.version} has levels per kind of evidence: a speaker model replaces them"
        )
    below = now.speaker_bar(target)
    model = cm.fit_under(judged, now.speaker, SPEAKER_FEATURES, below)
    units = [loro.LeaveOut.RECORDING] + (
        [loro.LeaveOut.VOICE] if all(j.voice for j in judged) else []
    )
    figures = [cm.held_out_model(judged, now.speaker, SPEAKER_FEATURES, below, u) for u in units]
    corpora = f" (corpus seeds {', '.join(map(str, seeds))})" if seeds else ""
    rule = (
        f"{now.rule}; under {below:g}, a speaker model: ridge {cm.RIDGE:g} logistic regression "
        f"of right labels on {', '.join(SPEAKER_FEATURES)} (each standardised), fitted on the "
        f"{model.clips} clips of `convoice bench --split tune`{corpora} that {now.version}'s "
        f"curve leaves under it ({model.right} right), at most {model.cap:g}"
    )
    by_recording = figures[0]
    cal = replace(
        now, version=version, rule=rule, speaker_model=model,
        judged_on=f"the {by_recording.clips} tuning clips, each judged by the speaker model "
        f"fitted without its recording (leave one recording out, {by_recording.units} "
        "recordings; the curve is the one that ships)",
        speaker_reliability=by_recording.table, speaker_ece=by_recording.ece[1],
    )  # fmt: skip
    if out is not None:
        write_module(cal, out)
    return cal, [line for f in figures for line in f.render()]


TRANSCRIPT_JUDGE_TARGET = 0.9
"""The precision the transcript lines count accepted clips at (routing's own
``transcript_target_precision`` is off by default)."""


def transcript_lines(judged: Sequence[calib.Judged], now: calib.Calibration) -> list[str]:
    """The shipped all-language transcript curve judged as it is on ``judged``, then an
    isotonic refit left one recording out: what a transcript refit has to beat."""
    rows = loro.transcript_rows(judged)
    if len({j.key for j in rows}) < 2:
        return ["transcripts: fewer than 2 recordings with judged transcripts"]
    target = TRANSCRIPT_JUDGE_TARGET
    lines: list[str] = []
    shipped_curve = now.transcript.get(ALL_LANGUAGES)
    if shipped_curve is not None:
        lines += loro.judge_curve(rows, shipped_curve, target).render(
            f"transcripts, {now.version}'s all-language curve"
        )
    refit = loro.leave_one_recording_out(rows, lambda x, ok, _: calib.fit_curve(x, ok), target)
    return lines + refit.render("transcripts, isotonic refit")
