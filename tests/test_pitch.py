"""A clip's pitch (median F0): right on real synthetic voices and through a telephone band.

The voices are the small corpus's (flite: rms and ked, men; slt, a woman), read from
the corpus's audio at its reference turns; the pitch veto's rule is :func:`apart`.
"""

from __future__ import annotations

import numpy as np
import pytest

from convoice.media.audio import decode
from convoice.models.pitch import apart, median_f0, pitch_allowed, semitones, speaker_f0


def _telephone(wave: np.ndarray, sample_rate: int = 16_000) -> np.ndarray:
    """``wave`` with everything outside 300-3400 Hz removed (the fundamental of a man goes)."""
    spectrum = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(wave.size, 1 / sample_rate)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    return np.fft.irfft(spectrum, wave.size).astype(np.float32)


def test_the_pitch_of_a_harmonic_sound_survives_a_telephone_band() -> None:
    t = np.arange(3 * 16_000) / 16_000
    for f0 in (90.0, 130.0, 210.0):
        wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 15)).astype(np.float32)
        assert abs(median_f0(wave) - f0) < 0.01 * f0
        assert abs(median_f0(_telephone(wave)) - f0) < 0.01 * f0
    assert np.isnan(median_f0(np.zeros(16_000, dtype=np.float32)))  # silence: unknown


def test_real_voices_keep_their_pitch_across_turns_and_channels(small_corpus) -> None:  # type: ignore[no-untyped-def]
    pitches: dict[str, list[float]] = {}
    phone: dict[str, list[float]] = {}
    for episode in small_corpus.episodes:
        samples = decode(episode.audio_path).samples
        for turn in episode.turns:
            overlapped = any(
                o is not turn and o.start < turn.end and o.end > turn.start for o in episode.turns
            )
            if overlapped or turn.end - turn.start < 1.0:
                continue
            wave = samples[int(turn.start * 16_000) : int(turn.end * 16_000)]
            pitches.setdefault(turn.speaker, []).append(median_f0(wave))
            phone.setdefault(turn.speaker, []).append(median_f0(_telephone(wave)))
    voice = {v: speaker_f0(p, [1.0] * len(p)) for v, p in pitches.items()}
    for v, p in pitches.items():
        assert max(semitones(f, voice[v]) for f in p) < 2.0, (v, p)  # one voice, one pitch
        # measured: at most 1.19 semitones (flite rms, slt, ked), far inside a 7-semitone veto
        assert max(semitones(a, b) for a, b in zip(p, phone[v], strict=True)) < 2.0
    assert semitones(voice["slt"], voice["rms"]) > 4.0  # a woman and a man
    assert semitones(voice["slt"], voice["ked"]) > 4.0


@pytest.mark.parametrize(
    ("a", "b", "apart_"),
    [
        ([110.0, 112.0], [220.0, 225.0], True),  # an octave
        ([110.0, 180.0], [220.0, 225.0], False),  # one clip (another voice over it?) is near
        ([110.0], [float("nan")], False),  # unknown: never a veto
        ([110.0], [140.0], False),  # 4.2 semitones: within the limit
        ([100.0, 300.0], [180.0], False),  # the ranges overlap: no veto (8.8 st nearest)
        ([105.0, 112.0], [float("nan"), 230.0], True),  # a range [low, high], an unknown clip
    ],
)
def test_two_speakers_are_apart_only_when_every_clip_is(a, b, apart_) -> None:  # type: ignore[no-untyped-def]
    assert apart(a, b, 7.0) is apart_
    assert pitch_allowed([a], [b], 7.0)[0, 0] == (not apart_)
    assert pitch_allowed([a], [b], 0.0)[0, 0]  # 0: off
