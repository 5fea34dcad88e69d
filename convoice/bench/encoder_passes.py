"""How many passes of Whisper's encoder a run makes, and how full they are (``--profile``).

faster-whisper pads every window to 30 s, so its encoder costs the same for a window
full or not (on the 2-core AVX2 machine of session 35, about 1.3 CPU s a window for
Whisper base int8, as much as decoding a full window's words). The flow encodes each
batch of windows at its longest window's length instead
(:mod:`convoice.engines.whisper_windows`; a window that loops there again at 30 s), so
the seconds it encodes, not only its windows, set much of its transcription's cost.

- Whisper alone (the benchmark's baseline): per file, one 30 s pass to detect its
  language, then Silero VAD's speech cut into chunks of up to 30 s
  (``BatchedInferencePipeline.transcribe`` with ``vad_filter=True``), one pass each.
- The flow: per recording and language, the clips packed into windows
  (:mod:`convoice.models.packing`), one pass each at its batch's length; and before
  that one language pass per clip at its own length, at least ``[asr] language_min_clip_s``
  (:mod:`convoice.models.language`, the default "short" detection). The flow counts
  them itself as it makes them (:mod:`convoice.engines.encoder_tally`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from convoice.engines import encoder_tally
from convoice.media.audio import decode
from convoice.records import SAMPLE_RATE

WHISPER_WINDOW_S = 30.0  # what Whisper's encoder pads every input to


@dataclass(frozen=True)
class EncoderPasses:
    """One side's encoder passes: transcription windows and language detection passes."""

    windows: int  # transcription windows
    speech_s: float  # the speech those windows hold (clips or VAD chunks; no gaps, no padding)
    language_passes: int  # language detection passes
    language_s: float  # the audio each of them encodes, summed (30 s for a padded pass)
    encoded_s: float | None = None  # the windows' encoded length, summed (None: 30 s each)
    again: int = 0  # windows encoded again padded to 30 s, after they looped

    @property
    def window_s(self) -> float:
        """The seconds of audio the transcription windows were encoded as, summed."""
        padded = self.windows * WHISPER_WINDOW_S
        return padded if self.encoded_s is None else self.encoded_s + self.again * WHISPER_WINDOW_S

    @property
    def fill(self) -> float:
        """The share of the windows' 30 s that holds speech."""
        return self.speech_s / (self.windows * WHISPER_WINDOW_S) if self.windows else 0.0

    def describe(self) -> str:
        """``"35 windows 73 % full, 26 language passes (780 s)"``; windows encoded at their own
        length add ``", encoded as 790 s (2 again at 30 s)"`` after the fill."""
        encoded = ""
        if self.encoded_s is not None:
            encoded = f", encoded as {self.window_s:.0f} s ({self.again} again at 30 s)"
        return (
            f"{self.windows} windows {100 * self.fill:.0f} % full{encoded}, "
            f"{self.language_passes} language passes ({self.language_s:.0f} s)"
        )


def whisper_alone(wavs: Iterable[Path]) -> EncoderPasses:
    """The passes :func:`convoice.bench.baselines.time_whisper` makes on ``wavs``: the VAD and
    chunking faster-whisper's batched pipeline runs, and one 30 s language pass per file."""
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    options = VadOptions(max_speech_duration_s=WHISPER_WINDOW_S, min_silence_duration_ms=160)
    windows, speech, files = 0, 0.0, 0
    for wav in wavs:
        samples = decode(wav).samples
        chunks, _ = collect_chunks(
            samples, get_speech_timestamps(samples, options), max_duration=WHISPER_WINDOW_S
        )
        windows += len(chunks)
        speech += sum(len(c) for c in chunks) / SAMPLE_RATE
        files += 1
    return EncoderPasses(windows, speech, files, files * WHISPER_WINDOW_S)


def flow(counted: dict[str, tuple[int, float]]) -> EncoderPasses:
    """The flow's passes, as it counted them (:func:`convoice.engines.encoder_tally.since`)."""
    windows, speech = counted.get(encoder_tally.WINDOWS, (0, 0.0))
    passes, language_s = counted.get(encoder_tally.LANGUAGE, (0, 0.0))
    if encoder_tally.ENCODED not in counted:  # every window padded to 30 s
        return EncoderPasses(windows, speech, passes, language_s)
    again = counted.get(encoder_tally.AGAIN, (0, 0.0))[0]
    return EncoderPasses(
        windows, speech, passes, language_s, counted[encoder_tally.ENCODED][1], again
    )


def render_passes(alone: EncoderPasses, flow_passes: EncoderPasses) -> list[str]:
    """The lines under the ``--profile`` table."""
    return [
        "  Whisper's encoder (convoice.bench.encoder_passes; a window padded to 30 s costs a full"
        " 30 s pass):",
        f"    Whisper alone  {alone.describe()}",
        f"    the flow       {flow_passes.describe()}; clips packed per recording and language",
    ]
