"""Mel spectrogram pictures (PNG) for the voice bank page."""

from __future__ import annotations

import base64
import io

import numpy as np

from convoice.models.voicebank import mel_spectrogram_db

MAX_SECONDS = 12.0  # longer audio is cut for the picture


def mel_png(samples: np.ndarray, rate: int) -> bytes:
    """A log-mel spectrogram of the start of ``samples`` as a PNG (low bands at the bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import image

    mel = mel_spectrogram_db(np.asarray(samples[: int(MAX_SECONDS * rate)], np.float32), rate)
    buffer = io.BytesIO()
    image.imsave(buffer, mel[::-1], cmap="magma", vmin=-80.0, vmax=0.0, format="png")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
