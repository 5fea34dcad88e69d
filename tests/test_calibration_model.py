"""The speaker model: a probability for the labels a calibration curve does not accept.

Fitted on clips whose rightness depends on evidence the raw score hides, it must order them
better than the curve does held out, never reach the bar (routing stays the curve's), travel
through the calibration's JSON, and be what routing gives a clip under the bar.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from convoice.config import RoutingSettings
from convoice.models import calibration as calib
from convoice.models import calibration_model as cm
from convoice.models.calibration_loro import LeaveOut
from convoice.models.routing import (
    SPEAKER_FEATURES,
    SpeakerEvidence,
    route,
    speaker_features,
    speaker_kind,
)
from convoice.records import CalibrationError, LabelStatus, SpeakerModel, Transcript, Word

STEP = calib.Curve((0.0, 1.49, 1.5, 2.0), (0.6, 0.8, 0.996, 0.998), 100, 90)


def judged_clips(n: int, seed: int) -> list[calib.Judged]:
    """Clips under the curve's step whose label is right more often the further the match
    leads its runner-up, which the raw score (flat at 1.2) does not show; a few sure ones."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        sure = i % 10 == 0
        lead = float(rng.uniform(0.0, 0.6))
        raw = 1.8 if sure else 1.2
        right = bool(sure or rng.uniform() < 0.45 + lead)
        evidence = {name: 0.0 for name in SPEAKER_FEATURES} | {
            "matched": 1.0, "raw": raw, "match_lead": lead, "log_duration": float(rng.normal()),
        }  # fmt: skip
        out.append(
            calib.Judged(
                key=f"rec{i % 40}",
                speaker_raw=raw,
                speaker_right=right,
                duration=2.0,
                voice=f"v{i % 12}",
                speaker_kind="matched",
                speaker_evidence=evidence,
            )
        )
    return out


def test_the_model_orders_what_the_curve_cannot_and_carries_over_held_out() -> None:
    judged = judged_clips(1200, seed=5)
    model = cm.fit_under(judged, STEP, SPEAKER_FEATURES, 0.995)
    assert model.clips == sum(1 for j in judged if (j.speaker_raw or 0) < 1.5)
    lead = SPEAKER_FEATURES.index("match_lead")
    assert model.weights[1 + lead] > 0.5  # more lead, more often right
    assert model({"matched": 1.0, "raw": 1.2, "match_lead": 0.55}) > 0.9
    assert model({"matched": 1.0, "raw": 1.2, "match_lead": 0.0}) < 0.6
    assert model({"matched": 1.0, "raw": 1.2, "match_lead": 50.0}) == model.cap == 0.99
    for unit in LeaveOut:
        out = cm.held_out_model(judged, STEP, SPEAKER_FEATURES, 0.995, unit)
        assert out.under == model.clips and out.clips == len(judged)
        assert out.order[0] == 0.5 < 0.7 < out.order[1]  # the curve ties them all
        assert out.brier[1] < out.brier[0]
        assert out.first_quarter[1] > out.first_quarter[0]
        assert "leave one" in out.render()[0]


def test_the_curve_decides_what_is_accepted_and_the_model_speaks_below_it() -> None:
    judged = judged_clips(600, seed=6)
    model = cm.fit_under(judged, STEP, SPEAKER_FEATURES, 0.995)
    with_model = calib.Calibration("m-1", "test", STEP, speaker_model=model)
    plain = calib.Calibration("c-1", "test", STEP)
    words = (Word("a", 0.0, 0.3, 0.99), Word("b", 0.4, 0.7, 0.99))
    text = Transcript("a b", "en", 0.99, words, -0.1, 1.2, 0.01)
    cfg = RoutingSettings()
    checked = 0
    for own, other, similarity, runner_up in [
        (0.9, 0.1, 0.97, 0.1), (0.5, 0.3, 0.97, 0.1), (0.9, 0.1, 0.7, 0.6), (0.3, 0.2, 0.8, 0.1),
    ]:  # fmt: skip
        ev = SpeakerEvidence(
            own, other, 1.0, 0.35, 0.6, 0.25, identity_strength=0.4, decision="matched",
            match_similarity=similarity, match_runner_up=runner_up,
        )  # fmt: skip
        a, b = route(ev, text, 2.0, False, cfg, with_model), route(ev, text, 2.0, False, cfg, plain)
        assert a.speaker_status == b.speaker_status and a.reasons == b.reasons
        if b.speaker_status == LabelStatus.REVIEW:
            expected = model(speaker_features(ev, 2.0))
            assert a.speaker_confidence == expected < 0.995
            checked += 1
    assert checked >= 2
    sure = SpeakerEvidence(0.9, 0.1, 1.0, 0.35, 0.6, 0.25, decision="new")  # raw 2.0
    assert route(sure, text, 2.0, False, cfg, with_model).speaker_confidence == 0.998
    assert speaker_kind(sure) == "new"


def test_a_speaker_model_travels_through_the_calibrations_json_and_refuses_nonsense() -> None:
    model = cm.fit_under(judged_clips(300, seed=7), STEP, SPEAKER_FEATURES, 0.995)
    cal = calib.Calibration("m-1", "test", STEP, speaker_model=model)
    again = calib.Calibration.from_dict(json.loads(cal.to_json()))
    assert again == cal and again.speaker_model == model
    assert calib.Calibration.from_dict(json.loads(calib.Calibration("c", "t", STEP).to_json())) \
        .speaker_model is None  # fmt: skip
    with pytest.raises(CalibrationError, match="intercept"):
        SpeakerModel(("raw",), (0.0,), (1.0,), (0.1,), 0.995, 0.99, 10, 5)
    with pytest.raises(CalibrationError, match="cap"):
        SpeakerModel(("raw",), (0.0,), (1.0,), (0.1, 1.0), 0.9, 0.99, 10, 5)
    with pytest.raises(CalibrationError, match="right and wrong"):
        cm.fit_speaker_model([{"raw": 1.0}] * 20, [True] * 20, ("raw",), 0.995)
