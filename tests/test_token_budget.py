"""Whisper's token budget per packed window: loops stop early, speech decodes the same."""

from __future__ import annotations

import numpy as np
import pytest

from convoice.engines import loaders
from convoice.media.audio import decode
from convoice.models import asr
from convoice.models.packing import GAP_S
from convoice.records import Region
from convoice.synth.recordings import librivox_samples

SR = 16000


def test_the_budget_is_whispers_rate_over_the_window() -> None:
    assert asr.token_budget(3.6, prompted=False) == 124  # ceil(3.6 * 2 * 448 / 30) + 16
    assert asr.token_budget(0.0, prompted=False) == asr.TOKEN_MARGIN
    assert asr.token_budget(29.4, prompted=False) is None  # a full window: Whisper's own limit
    assert asr.token_budget(16.9, prompted=False) is None  # more than Whisper's own limit
    assert asr.token_budget(10.0, prompted=True) is None  # a long prompt leaves less room
    assert asr.token_budget(6.0, prompted=True) == 196
    with pytest.raises(ValueError):
        asr.token_budget(-1.0, prompted=False)


def _uncapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asr, "token_budget", lambda window_s, prompted: None)


def test_a_repetition_loop_stops_at_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Half a second of read speech six times over, told Norwegian Nynorsk: Whisper base loops
    ("Enlist, enlist, ..."). Capped it stops near 30 tokens a second; uncapped (the engine
    before) it ran on towards 448 tokens, with word times for each."""
    path, _ = librivox_samples()[0]
    audio = np.tile(decode(path).samples[: SR // 2], 6).astype(np.float32)
    clips = [Region(0.0, len(audio) / SR)]
    options = asr.AsrOptions(4, 1, "nn")
    model = loaders.whisper_model()
    budget = asr.token_budget(len(audio) / SR + 2 * GAP_S, prompted=False)
    capped = asr.transcribe_clips(model, audio, clips, options)[0]
    _uncapped(monkeypatch)
    uncapped = asr.transcribe_clips(model, audio, clips, options)[0]
    assert capped is not None and uncapped is not None
    assert budget is not None and len(capped.words) <= budget
    assert len(uncapped.words) > 2 * len(capped.words), (capped.text, uncapped.text)


def test_speech_decodes_the_same_under_the_budget(  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch, librivox_clips
) -> None:
    """Real read speech (LibriVox), each clip a window of its own: the same words, times and
    probabilities with the budget and without it."""
    audio, clips = librivox_clips
    model = loaders.whisper_model()
    options = asr.AsrOptions(4, 1, "en")
    capped = [asr.transcribe_clips(model, audio, [clip], options)[0] for clip in clips]
    _uncapped(monkeypatch)
    uncapped = [asr.transcribe_clips(model, audio, [clip], options)[0] for clip in clips]
    assert all(t is not None and t.words for t in capped)
    assert capped == uncapped
