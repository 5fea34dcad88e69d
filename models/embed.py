"""Speaker embeddings, batched across segments: resemblyzer's GE2E and CAM++.

``VoiceEncoder.embed_utterance`` runs the LSTM once per utterance; here the
1.6 s partial windows of every segment of a recording go through the network
together, which is what makes one embedding per clip cheap on a CPU.
CAM++ (:func:`embed_regions_campplus`) is batched the same way: each region's
fbank frames are cut into windows of equal length (the last one aligned to the
region's end), the windows of a recording go through the network in batches,
and a region's embedding is the normalised sum of its windows' embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from convoice.records import (
    CAMPPLUS_DIM,
    EMBEDDING_DIM,
    SAMPLE_RATE,
    FloatArray,
    Region,
    Samples,
    sample_index,
)

if TYPE_CHECKING:
    from resemblyzer import VoiceEncoder

    from convoice.models.campplus import CAMPPlus


PARTIAL_FRAMES = 160  # 1.6 s of 10 ms mel frames, as the encoder was trained
PARTIAL_STEP = 80  # 50 % overlap between partial windows
BATCH = 64


CAMPPLUS_WINDOW = 100  # frames (1 s) per CAM++ window: a clip's parts are compared
CAMPPLUS_QUANTUM = 20  # shorter regions are cut to a multiple of this (equal lengths batch)
MIN_SAMPLES = SAMPLE_RATE // 4  # shorter regions get no embedding (a zero vector)

BatchNet = Callable[[FloatArray], FloatArray]
"""A network on numpy batches (CAM++: (batch, frames, 80) fbank features -> (batch, 192);
resemblyzer: (batch, 160, 40) mel windows -> (batch, 256))."""


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
    encoder: VoiceEncoder | BatchNet,
    samples: Samples,
    regions: Sequence[Region | list[Region]],
) -> FloatArray:
    """One unit-norm embedding per region (or per list of regions, concatenated).

    ``encoder``: resemblyzer's, or the same network as a function of numpy
    batches (:func:`convoice.engines.loaders.voice_encoder_net`). Returns shape
    (len(regions), 256). A region too short to hold any speech gets a zero
    vector, which callers treat as "no embedding".
    """
    run = _batch_net(encoder)
    windows: list[npt.NDArray[np.float32]] = []
    owner: list[int] = []
    for i, region in enumerate(regions):
        parts: list[Region] = region if isinstance(region, list) else [region]
        wav = np.concatenate(
            [samples[sample_index(r.start) : sample_index(r.end)] for r in parts]
        ).astype(np.float32)
        if len(wav) < MIN_SAMPLES:
            continue
        for w in _partials(mel_spectrogram(wav)):
            windows.append(w)
            owner.append(i)
    out = np.zeros((len(regions), EMBEDDING_DIM), dtype=np.float32)
    if not windows:
        return out
    batch = np.stack(windows)  # shape: (num_partials, 160, 40)
    parts_out = [run(batch[s : s + BATCH]) for s in range(0, len(batch), BATCH)]
    partial_embeds = np.concatenate(parts_out)  # shape: (num_partials, 256), unit norm
    np.add.at(out, np.array(owner), partial_embeds)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norms > 0, out / np.maximum(norms, 1e-8), 0.0).astype(np.float32)


def _region_wave(samples: Samples, region: Region | list[Region]) -> FloatArray:
    parts: list[Region] = region if isinstance(region, list) else [region]
    return np.concatenate(
        [samples[sample_index(r.start) : sample_index(r.end)] for r in parts]
    ).astype(np.float32)


def fbank(wav: FloatArray) -> FloatArray:
    """CAM++'s input features: 80-bin Kaldi fbank, 10 ms frames, mean-normalised."""
    import torch
    from torchaudio.compliance import kaldi

    feats = kaldi.fbank(
        torch.from_numpy(wav * 32768.0).unsqueeze(0),
        num_mel_bins=80,
        sample_frequency=SAMPLE_RATE,
        dither=0.0,
    )  # shape: (frames, 80)
    return (feats - feats.mean(dim=0, keepdim=True)).numpy().astype(np.float32)


def _windows(feats: FloatArray, size: int) -> list[FloatArray]:
    """Windows of ``size`` frames over a region (the last one aligned to its end).

    A region shorter than 1.25 windows is one window, cut to a multiple of
    ``CAMPPLUS_QUANTUM`` frames so that regions of similar length batch together.
    """
    n = feats.shape[0]
    if n < size + size // 4:
        keep = max(CAMPPLUS_QUANTUM, n - n % CAMPPLUS_QUANTUM)
        return [feats[:keep]]
    starts = list(range(0, n - size + 1, size))
    if n - (starts[-1] + size) > size // 4:
        starts.append(n - size)
    return [feats[s : s + size] for s in starts]


@dataclass(frozen=True)
class WindowedEmbeddings:
    """One unit embedding per region, and the unit embeddings of its windows."""

    vectors: FloatArray  # shape: (num_regions, 192); zero rows for regions too short
    windows: list[FloatArray]  # per region, shape (num_windows, 192); (0, 192) when too short


def _batch_net(model: CAMPPlus | VoiceEncoder | BatchNet) -> BatchNet:
    """``model`` as a function of numpy batches (a torch module runs in inference mode)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        return model
    module = model

    def run(batch: FloatArray) -> FloatArray:
        with torch.inference_mode():
            return np.asarray(module(torch.from_numpy(batch)).numpy(), dtype=np.float32)

    return run


def embed_regions_campplus(
    model: CAMPPlus | BatchNet,
    samples: Samples,
    regions: Sequence[Region | list[Region]],
    window: int = CAMPPLUS_WINDOW,
) -> WindowedEmbeddings:
    """CAM++ embeddings of regions, every window of a recording batched by length.

    ``model``: the torch network, or the same network as a function of numpy
    batches (ONNX Runtime, :func:`convoice.engines.loaders.campplus_encoder`).
    A region's embedding is the normalised sum of its windows' (``window``
    frames each); regions shorter than 0.25 s get a zero vector, as in
    :func:`embed_regions`.
    """
    run = _batch_net(model)
    by_length: dict[int, list[tuple[int, int, FloatArray]]] = {}
    counts = [0] * len(regions)
    for i, region in enumerate(regions):
        wav = _region_wave(samples, region)
        if len(wav) < MIN_SAMPLES:
            continue
        for w in _windows(fbank(wav), window):
            by_length.setdefault(w.shape[0], []).append((i, counts[i], w))
            counts[i] += 1
    windows: list[FloatArray] = [np.zeros((n, CAMPPLUS_DIM), np.float32) for n in counts]
    for group in by_length.values():
        for s in range(0, len(group), BATCH):
            part = group[s : s + BATCH]
            emb = run(np.stack([w for _, _, w in part]))  # shape: (b, 192)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-8)
            for (i, j, _), e in zip(part, emb, strict=True):
                windows[i][j] = e
    sums = np.stack([w.sum(axis=0) for w in windows]) if windows else np.zeros((0, CAMPPLUS_DIM))
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    vectors = np.where(norms > 0, sums / np.maximum(norms, 1e-8), 0.0).astype(np.float32)
    return WindowedEmbeddings(vectors.reshape(len(regions), CAMPPLUS_DIM), windows)
