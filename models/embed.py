"""Speaker embeddings with resemblyzer's GE2E encoder, batched across segments.

``VoiceEncoder.embed_utterance`` runs the LSTM once per utterance; here the
1.6 s partial windows of every segment of a recording go through the network
together, which is what makes one embedding per clip cheap on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from convoice.models.records import Region

if TYPE_CHECKING:
    from resemblyzer import VoiceEncoder

FloatArray = npt.NDArray[np.float32]

SAMPLE_RATE = 16000
EMBEDDING_DIM = 256
PARTIAL_FRAMES = 160  # 1.6 s of 10 ms mel frames, as the encoder was trained
PARTIAL_STEP = 80  # 50 % overlap between partial windows
BATCH = 64


def _partials(mel: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    """Partial windows covering a mel spectrogram (the last one zero-padded)."""
    n = mel.shape[0]
    if n <= PARTIAL_FRAMES:
        pad = np.zeros((PARTIAL_FRAMES - n, mel.shape[1]), dtype=np.float32)
        return [np.concatenate([mel, pad])]
    starts = list(range(0, n - PARTIAL_FRAMES + 1, PARTIAL_STEP))
    if n - (starts[-1] + PARTIAL_FRAMES) > PARTIAL_STEP // 2:
        starts.append(n - PARTIAL_FRAMES)
    return [mel[s : s + PARTIAL_FRAMES] for s in starts]


def mel_spectrogram(wav: FloatArray) -> FloatArray:
    """The encoder's input features of 16 kHz audio: 40 mel bands, 10 ms frames."""
    from resemblyzer import audio as rz_audio

    wav = rz_audio.normalize_volume(wav, -30, increase_only=True)
    return rz_audio.wav_to_mel_spectrogram(wav).astype(np.float32)


def embed_regions(
    encoder: VoiceEncoder, samples: FloatArray, regions: Sequence[Region | list[Region]]
) -> FloatArray:
    """One unit-norm embedding per region (or per list of regions, concatenated).

    Returns shape (len(regions), 256). A region too short to hold any speech
    gets a zero vector, which callers treat as "no embedding".
    """
    import torch

    windows: list[npt.NDArray[np.float32]] = []
    owner: list[int] = []
    for i, region in enumerate(regions):
        parts: list[Region] = region if isinstance(region, list) else [region]
        wav = np.concatenate(
            [samples[int(r.start * SAMPLE_RATE) : int(r.end * SAMPLE_RATE)] for r in parts]
        ).astype(np.float32)
        if len(wav) < SAMPLE_RATE // 4:
            continue
        for w in _partials(mel_spectrogram(wav)):
            windows.append(w)
            owner.append(i)
    out = np.zeros((len(regions), EMBEDDING_DIM), dtype=np.float32)
    if not windows:
        return out
    batch = np.stack(windows)  # shape: (num_partials, 160, 40)
    parts_out = []
    with torch.inference_mode():
        for s in range(0, len(batch), BATCH):
            parts_out.append(encoder(torch.from_numpy(batch[s : s + BATCH])).numpy())
    partial_embeds = np.concatenate(parts_out)  # shape: (num_partials, 256), unit norm
    np.add.at(out, np.array(owner), partial_embeds)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norms > 0, out / np.maximum(norms, 1e-8), 0.0).astype(np.float32)
