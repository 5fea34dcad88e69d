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

import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from convoice.engines.blas import blas_threads
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
CAMPPLUS_BATCH = 16  # CAM++'s activations of 64 windows outgrow the CPU's caches: 16 cost less


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


MEL_FFT = 400  # resemblyzer's 25 ms window at 16 kHz (librosa's n_fft)
MEL_HOP = 160  # 10 ms
MEL_BANDS = 40
INT16_MAX = 2**15 - 1


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    mels = hz / (200.0 / 3)
    log_part = hz >= 1000.0
    mels[log_part] = 15.0 + np.log(hz[log_part] / 1000.0) / (np.log(6.4) / 27.0)
    return mels


def _mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    hz = (200.0 / 3) * mels
    log_part = mels >= 15.0
    hz[log_part] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_part] - 15.0))
    return hz


@functools.cache
def mel_filterbank(
    rate: int = SAMPLE_RATE, n_fft: int = MEL_FFT, bands: int = MEL_BANDS
) -> npt.NDArray[np.float32]:
    """librosa's ``filters.mel(sr=rate, n_fft=n_fft, n_mels=bands)`` (Slaney scale and
    area normalisation, 0 Hz to Nyquist, float32), shape (bands, n_fft // 2 + 1)."""
    fft_hz = np.fft.rfftfreq(n=n_fft, d=1.0 / rate)
    low, high = _hz_to_mel(np.array([0.0, rate / 2.0]))
    edges = _mel_to_hz(np.linspace(low, high, bands + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_hz)
    weights = np.zeros((bands, len(fft_hz)), dtype=np.float32)
    for i in range(bands):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (edges[2 : bands + 2] - edges[:bands]))[:, np.newaxis]
    weights.flags.writeable = False
    return weights


def _normalize_volume(wav: FloatArray, target_dbfs: float = -30.0) -> FloatArray:
    """resemblyzer's ``normalize_volume(wav, target_dbfs, increase_only=True)``, same arithmetic."""
    rms = np.sqrt(np.mean((wav * INT16_MAX) ** 2))
    change = target_dbfs - 20 * np.log10(rms / INT16_MAX)
    if change < 0:
        return wav
    return np.asarray(wav * (10 ** (change / 20)))


def mel_spectrogram(wav: FloatArray) -> FloatArray:
    """The encoder's input features of 16 kHz audio: 40 mel bands, 10 ms frames, shape (frames, 40).

    resemblyzer's ``normalize_volume`` then ``wav_to_mel_spectrogram`` (librosa's
    power mel spectrogram: centred 25 ms Hann frames, zero-padded ends), computed
    with numpy alone in librosa's order of operations and dtypes: no librosa import
    and no numba compilation at start-up (``tests/test_models.py`` checks it
    against librosa).
    """
    y = _normalize_volume(np.asarray(wav, np.float32))
    pad = MEL_FFT // 2
    padded = np.pad(y, (pad, pad), mode="constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, MEL_FFT)[::MEL_HOP]  # (t, n_fft)
    spectrum = np.fft.rfft(_hann(MEL_FFT) * frames, axis=-1).astype(np.complex64)  # float64 FFT
    power = np.abs(spectrum).T ** 2.0  # shape: (freqs, frames), float32
    with blas_threads():  # not while Whisper's features hold BLAS at one thread
        mel = np.einsum("ft,mf->mt", power, mel_filterbank(), optimize=True)
    return np.ascontiguousarray(mel.T, dtype=np.float32)


@functools.cache
def _hann(n: int) -> npt.NDArray[np.float64]:
    """scipy's ``get_window("hann", n, fftbins=True)``: the periodic Hann window."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


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
        wav = _region_wave(samples, region)
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


FBANK_WINDOW = 400  # Kaldi's 25 ms frames at 16 kHz
FBANK_SHIFT = 160  # 10 ms
FBANK_FFT = 512  # the frame zero-padded to a power of two
FBANK_BINS = 80
FBANK_LOW_HZ = 20.0
PREEMPHASIS = 0.97
FLOAT32_EPS = float(np.finfo(np.float32).eps)  # Kaldi's floor before the log


@functools.cache
def kaldi_mel_banks(
    bins: int = FBANK_BINS, n_fft: int = FBANK_FFT, rate: int = SAMPLE_RATE
) -> npt.NDArray[np.float32]:
    """Kaldi's triangular mel filters (HTK mel scale, 20 Hz to Nyquist), as torchaudio's
    ``compliance.kaldi.get_mel_banks`` computes them (float32), shape (n_fft // 2 + 1, bins):
    transposed, the Nyquist bin's row zero."""

    def mel(hz: npt.NDArray[np.float32] | float) -> npt.NDArray[np.float32]:
        return np.asarray(1127.0 * np.log(1.0 + np.asarray(hz) / 700.0))

    low, high = float(mel(FBANK_LOW_HZ)), float(mel(rate / 2.0))
    delta = (high - low) / (bins + 1)
    index = np.arange(bins, dtype=np.float32)[:, None]
    left = (low + index * np.float32(delta)).astype(np.float32)
    centre = (low + (index + 1.0) * np.float32(delta)).astype(np.float32)
    right = (low + (index + 2.0) * np.float32(delta)).astype(np.float32)
    freqs = (np.float32(rate / n_fft) * np.arange(n_fft // 2, dtype=np.float32))[None, :]
    mels = (np.float32(1127.0) * np.log1p(freqs / np.float32(700.0))).astype(np.float32)
    up = (mels - left) / (centre - left)
    down = (right - mels) / (right - centre)
    banks = np.maximum(np.float32(0.0), np.minimum(up, down)).astype(np.float32)
    out = np.zeros((n_fft // 2 + 1, bins), np.float32)
    out[: n_fft // 2] = banks.T
    out.flags.writeable = False
    return out


@functools.cache
def _povey(n: int) -> npt.NDArray[np.float32]:
    """Kaldi's "povey" window: a symmetric Hann window to the power 0.85."""
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / (n - 1))
    return np.asarray(hann**0.85, dtype=np.float32)


def fbank(wav: FloatArray) -> FloatArray:
    """CAM++'s input features: 80-bin Kaldi fbank, 10 ms frames, mean-normalised.

    torchaudio's ``compliance.kaldi.fbank(wav * 32768, num_mel_bins=80, dither=0)``
    (25 ms frames that fit the audio, DC removed, pre-emphasis 0.97, povey window,
    512-point power spectrum, log of mel energies floored at float32's epsilon),
    computed with numpy alone: no torch import on the ingest path
    (``tests/test_models.py`` checks it against torchaudio). Shape (frames, 80).
    """
    samples = np.asarray(wav, np.float32) * np.float32(32768.0)
    count = 1 + (len(samples) - FBANK_WINDOW) // FBANK_SHIFT if len(samples) >= FBANK_WINDOW else 0
    if count == 0:
        return np.zeros((0, FBANK_BINS), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(samples, FBANK_WINDOW)[::FBANK_SHIFT][:count]
    frames = frames - frames.mean(axis=1, keepdims=True, dtype=np.float32)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = (frames - np.float32(PREEMPHASIS) * previous) * _povey(FBANK_WINDOW)
    spectrum = np.abs(np.fft.rfft(frames.astype(np.float64), n=FBANK_FFT, axis=1)) ** 2
    energies = spectrum @ kaldi_mel_banks()  # float64: torch's float32 FFT is no closer
    feats = np.log(np.maximum(energies, FLOAT32_EPS))
    return np.asarray(feats - feats.mean(axis=0, keepdims=True), dtype=np.float32)


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
    torch = sys.modules.get("torch")  # no torch imported: ``model`` is no torch module
    if torch is None or not isinstance(model, torch.nn.Module):
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
        for s in range(0, len(group), CAMPPLUS_BATCH):
            part = group[s : s + CAMPPLUS_BATCH]
            emb = run(np.stack([w for _, _, w in part]))  # shape: (b, 192)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-8)
            for (i, j, _), e in zip(part, emb, strict=True):
                windows[i][j] = e
    sums = np.stack([w.sum(axis=0) for w in windows]) if windows else np.zeros((0, CAMPPLUS_DIM))
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    vectors = np.where(norms > 0, sums / np.maximum(norms, 1e-8), 0.0).astype(np.float32)
    return WindowedEmbeddings(vectors.reshape(len(regions), CAMPPLUS_DIM), windows)
