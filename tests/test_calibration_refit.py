"""A refit from people's labels never makes accepted labels wrong (issue 11, item 3).

The round benchmark once refitted on 22 labels people nearly all confirmed and
mapped a raw speaker score of 0.52 to 0.998: accepted labels right fell 1.0 -> 0.83.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_calibration import commit

from convoice.models import calibration as calib
from convoice.models import calibration_refit as rule
from convoice.records import Calibration, Curve
from convoice.storage import Store
from convoice.storage import calibration as stored
from convoice.training import calibrate

TARGET = 0.995


def _review_queue(n_clips: int, n_groups: int, seed: int = 0) -> tuple[list, list, list]:
    """Clips of the review queue (raw scores 0.45-0.60), every one confirmed by a person."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.45, 0.60, n_clips).round(4).tolist()
    return scores, [True] * n_clips, [f"rec_{i % n_groups}/spk" for i in range(n_clips)]


def test_a_refit_on_labels_that_are_all_right_does_not_map_052_to_certainty() -> None:
    shipped = stored.shipped().speaker
    scores, right, groups = _review_queue(22, 5)
    plain = calib.fit_curve(scores, right)  # the rule that made store-1
    assert plain(0.52) > 0.95  # what went wrong
    safe = rule.refit_curve(scores, right, groups, shipped)
    assert safe(0.52) <= shipped(0.52) < TARGET
    grid = np.linspace(0.0, 2.0, 401)
    bound = rule.wilson_lower(5, 5)  # 5 recording speakers, all right: about 0.69
    assert all(safe(x) <= max(shipped(x), bound) + 1e-4 for x in grid)
    assert all(b >= a for a, b in zip(safe.ys, safe.ys[1:], strict=False))


def test_evidence_counts_recording_speakers_not_clips() -> None:
    current = Curve((0.0, 0.4, 0.6, 2.0), (0.3, 0.5, 0.5, 0.999), 10, 5)
    scores = np.linspace(0.4, 0.6, 200).tolist()
    many_clips = rule.refit_curve(scores, [True] * 200, ["rec_0/a", "rec_1/b"] * 100, current)
    many_speakers = rule.refit_curve(scores, [True] * 200, [f"r{i}/a" for i in range(200)], current)
    # 200 clips of 2 recording speakers: the Wilson bound on 2 is under the prior, nothing moves
    assert many_clips(0.5) == 0.5
    # 200 recording speakers, all right: raised, but only to the Wilson lower bound
    bound = rule.wilson_lower(200, 200)
    assert 0.5 < many_speakers(0.5) <= round(bound, 4) < TARGET
    assert rule.group_weights(["a", "a", "b"]).tolist() == [0.5, 0.5, 1.0]


def test_wrong_labels_lower_the_curve_where_they_are() -> None:
    current = Curve((0.0, 0.5, 1.0, 2.0), (0.4, 0.9, 0.998, 0.998), 100, 90)
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.8, 1.2, 60).tolist()
    right = [i % 3 != 0 for i in range(60)]  # a third wrong
    refit = rule.refit_curve(scores, right, [f"r{i}/s" for i in range(60)], current)
    assert refit(1.0) < 0.9 < current(1.0)  # pulled towards 2/3
    assert refit(1.15) < TARGET <= current(1.15)
    assert refit(2.0) == current(2.0)  # nobody labelled a clip there: the current curve stays
    assert refit(0.0) <= current(0.0)


def test_wilson_lower_bound() -> None:
    assert rule.wilson_lower(0, 0) == 0.0
    assert abs(rule.wilson_lower(5, 5) - 5 / (5 + 1.645**2)) < 1e-9
    assert rule.wilson_lower(50, 100) < 0.5 < rule.wilson_lower(90, 100) < 0.9


def _calibration(version: str, curve: Curve) -> Calibration:
    return Calibration(version, "test", curve)


def test_a_refit_whose_accepted_labels_are_wrong_on_the_judged_half_is_refused() -> None:
    current = _calibration("shipped-1", Curve((0.0, 1.0, 2.0), (0.5, 0.9, 0.998), 10, 9))
    rash = _calibration("store-1", Curve((0.0, 0.5, 2.0), (0.5, 0.999, 0.999), 10, 10))
    held = [calib.Judged(f"r{i}/s", 0.6 + i / 100, i % 4 != 0, clip_id=f"c{i}") for i in range(40)]
    why, line = calibrate._refusal(current, rash, held, TARGET)
    assert "right 0.7500 < 0.9950" in why, why
    assert "refit 40 clips, right 0.7500" in line
    why, _ = calibrate._refusal(current, current, held, TARGET)
    assert why == ""  # the same curve is never worse than itself (ECE compared unrounded)
    assert rule.precision_floor(None, TARGET) == TARGET
    assert rule.precision_floor(0.9, TARGET) == 0.9


def test_a_store_refit_on_confirmed_review_labels_keeps_052_in_review(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    labels = []
    rng = np.random.default_rng(7)
    for r in range(16):
        rec, speaker = f"rec_{r:02d}", f"spk_{r}"
        scores = rng.uniform(0.45, 0.60, 4).round(3).tolist()
        commit(store, rec, [speaker] * 4, r, scores)
        labels += [
            {"clip_id": f"{rec}_c{i}", "field": "speaker_id", "value": speaker,
             "labelled_by": "ann"}
            for i in range(4)
        ]  # fmt: skip
    store.add_labels(labels)
    result = calibrate.refit_from_labels(str(tmp_path / "store"), save=True)
    assert sum(result.speakers) == 16 and result.fitted_on + result.judged_on == 64
    assert result.refit is not None, result.render()
    # raised at most to the Wilson lower bound of its recording speakers, all right
    bound = rule.wilson_lower(result.speakers[0], result.speakers[0])
    shipped = stored.shipped().speaker(0.52)
    assert result.refit.speaker(0.52) <= max(shipped, round(bound, 4)) < TARGET
    assert stored.current(store.location).speaker(0.52) < TARGET
    assert "recording speakers" in result.render()


def test_too_few_recording_speakers_are_not_refitted_on(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    labels = []
    for r in range(3):  # 3 recordings, one speaker each, 10 clips: 30 clips, 3 speakers
        rec = f"rec_{r}"
        commit(store, rec, [f"spk_{r}"] * 10, r, [0.5])
        labels += [
            {"clip_id": f"{rec}_c{i}", "field": "speaker_id", "value": f"spk_{r}",
             "labelled_by": "ann"}
            for i in range(10)
        ]  # fmt: skip
    store.add_labels(labels)
    result = calibrate.refit_from_labels(str(tmp_path / "store"), save=True)
    assert not result.saved and result.refit is None
    assert "recording speakers labelled by people are needed" in result.why
    assert stored.current(store.location).version == stored.shipped().version
