"""``convoice calibrate``: fit the map from raw scores to probabilities that a label is right.

Two sources of truth, never the clips a calibration is judged on:

- the benchmark's **tuning half** (``convoice calibrate --bench-home DIR``: the
  store a ``convoice bench --split tune`` run labelled): its fit is the
  calibration that ships in the package (:mod:`convoice.models.calibration_shipped`);
- **people's review labels** in a store (``convoice calibrate``, and the
  ``calibrate`` step of ``convoice loop``): a clip whose speaker a person
  gave is judged right when the machine had said the same speaker, a
  transcript when the person's text is within 10 % WER of the machine's. The
  recordings are split in two stable halves by hash: the refit is fitted on
  one and judged (reliability table, ECE) on the other, beside the current
  calibration judged on the same clips, and saved as the store's next version
  (``calibration/v<N>``) only when it is no worse there.
"""

from __future__ import annotations

import pprint
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convoice.models import calibration as calib
from convoice.models import evaluation
from convoice.models.metrics import wer_count
from convoice.records import ClipStatus, StoredClip

if TYPE_CHECKING:
    import pyarrow as pa

MIN_REFIT_CLIPS = 20  # judged clips on each side of the hold-out split before a refit


def judged_from_truth(
    clips: Sequence[Mapping[str, Any]], truth: Mapping[str, Sequence[evaluation.RefTurn]]
) -> list[calib.Judged]:
    """Every clip of ``truth``'s recordings with its raw scores and whether its labels are right."""
    labelled, _, right = evaluation.judge(clips, truth)
    text_right = evaluation.transcript_right(labelled, truth)
    return [
        calib.Judged(
            key=c["recording_id"],
            speaker_raw=_raw(c.get("speaker_score_raw"), c.get("speaker_confidence")),
            speaker_right=bool(ok),
            transcript_raw=(
                _raw(c.get("transcript_score_raw"), c.get("transcript_confidence"))
                if c["clip_id"] in text_right
                else None
            ),
            transcript_right=text_right.get(c["clip_id"]),
            language=c.get("language") or "",
        )
        for c, ok in zip(labelled, right, strict=True)
    ]


def _raw(score_raw: float | None, confidence: float | None) -> float:
    """A clip's raw score (rows written before the raw columns: its confidence)."""
    return float(score_raw if score_raw is not None else confidence or 0.0)


def bench_judged(home: str, split: str) -> list[calib.Judged]:
    """The judged clips of a store that ``convoice bench --split <split>`` labelled."""
    from convoice.bench import corpus as bench_corpus
    from convoice.bench.quality import corpus_truth, episodes_by_recording
    from convoice.engines import loaders
    from convoice.storage import Store

    corpus = bench_corpus.make_half_corpus(
        loaders.cache_dir() / "bench" / f"corpus-{split}", half=split
    )
    store = Store(home)
    truth = corpus_truth(episodes_by_recording(store, corpus), corpus)
    return judged_from_truth(store.clips().to_pylist(), truth)


def fit_shipped(judged: Sequence[calib.Judged], version: str) -> calib.Calibration:
    """The package's calibration: fitted on every judged clip of the tuning half."""
    rule = (
        f"isotonic regression (pool-adjacent-violators, each block shrunk towards the overall "
        f"rate by {calib.PRIOR_WEIGHT:g} clip) of right labels on the raw scores of the "
        f"{len(judged)} clips of `convoice bench --split tune` (split rule convoice-split-1); "
        f"speaker right: evaluation.judge; transcript right: WER <= "
        f"{evaluation.TRANSCRIPT_RIGHT_WER:.0%} on the reference turns its clip covers"
    )
    return calib.fit_calibration(judged, version, rule)


def module_source(calibration: calib.Calibration) -> str:
    """The text of ``models/calibration_shipped.py`` holding ``calibration``."""
    data = pprint.pformat(asdict(calibration), width=96, sort_dicts=True)
    return (
        '"""The calibration that ships in the package (written by ``convoice calibrate\n'
        '--bench-home``, see :mod:`convoice.training.calibrate`; do not edit by hand)."""\n\n'
        "from typing import Any\n\n"
        f"SHIPPED: dict[str, Any] = {data}\n"
    )


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
            text_ok = wer_count(text, c.text or "").wer <= evaluation.TRANSCRIPT_RIGHT_WER
        out.append(
            calib.Judged(
                key=c.recording_id,
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

    def render(self) -> str:
        lines = [
            f"people's labels: {self.fitted_on} clips to fit on, {self.judged_on} held out "
            f"(recordings split by hash)",
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
        lines.append(("saved: " if self.saved else "not saved: ") + self.why)
        return "\n".join(lines)


def _table(cal: calib.Calibration, held: Sequence[calib.Judged]) -> tuple[calib.Bin, ...]:
    spk = [j for j in held if j.speaker_raw is not None and j.speaker_right is not None]
    return calib.reliability_bins(
        [cal.speaker_probability(j.speaker_raw or 0.0) for j in spk],
        [bool(j.speaker_right) for j in spk],
    )


def refit_from_labels(
    home: str | None = None, save: bool = True, config: str | None = None
) -> RefitResult:
    """Refit the calibration on one half of people's labels, judge it on the other."""
    from convoice.config import load_settings
    from convoice.storage import Store
    from convoice.storage import calibration as stored
    from convoice.storage.encoders import EncoderRegistry

    store = Store.open(load_settings(config, home=home))
    from convoice.storage.rows import clip_records

    judged = judged_from_labels(clip_records(store.clips()), store.labels())
    held = [j for j in judged if calib.holdout_half(j.key)]
    fit = [j for j in judged if not calib.holdout_half(j.key)]
    encoder = EncoderRegistry(store.location).current("campplus")  # whose raw scores these are
    current = stored.current(store.location, encoder)
    now = _table(current, held)
    n_fit = sum(j.speaker_right is not None for j in fit)
    n_held = sum(j.speaker_right is not None for j in held)
    if min(n_fit, n_held) < MIN_REFIT_CLIPS:
        why = f"{MIN_REFIT_CLIPS} speaker labels by people are needed on each side"
        return RefitResult(n_fit, n_held, current, now, None, False, why)
    version = stored.next_version(store.location)
    rule = (
        f"isotonic regression on {n_fit} clips people labelled (recordings of hash half 0), "
        f"judged on {n_held} others (half 1), CAM++ encoder {encoder}; previous: {current.version}"
    )
    refit = calib.fit_calibration(fit, version, rule, judge_on=held)
    worse = (refit.speaker_ece or 0.0) > calib.ece(now)
    if worse or not save:
        why = "it is worse on the held-out clips" if worse else "asked not to save (--dry-run)"
        return RefitResult(n_fit, n_held, current, now, refit, False, why)
    key = stored.save_refit(store.location, refit, encoder)
    return RefitResult(n_fit, n_held, current, now, refit, True, f"{store.location.uri(key)}")


def write_shipped(bench_home: str, split: str, out: Path, version: str) -> calib.Calibration:
    """Fit on a tuning-half benchmark store and write the package's calibration module."""
    if split != "tune":
        raise ValueError("the shipped calibration is fitted on the tuning half only (--split tune)")
    cal = fit_shipped(bench_judged(bench_home, split), version)
    out.write_text(module_source(cal))
    return cal
