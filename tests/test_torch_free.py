"""The ingest path without torch, pyannote.audio or librosa once the graphs are cached.

Each replacement is checked against what it replaces, on real speech (pyannote's
two-speaker sample): the mel spectrogram against librosa's (through resemblyzer),
the Kaldi fbank against torchaudio's, the powerset decoding against pyannote's,
and the segmenter opened from its cached graph against pyannote's model in torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convoice.config import ClipSettings, DiarizationSettings
from convoice.engines import loaders, onnx_runtime
from convoice.media.audio import decode
from convoice.models import diarize, embed
from convoice.records import SAMPLE_RATE, Region
from convoice.synth.recordings import pyannote_sample

PIECES = [(0.0, 0.26), (0.5, 1.0), (3.0, 10.3), (0.0, 30.0)]  # seconds of the sample


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return decode(pyannote_sample()[0]).samples


def test_mel_spectrogram_is_librosas_through_resemblyzer(speech: np.ndarray) -> None:
    from resemblyzer import audio as rz_audio

    for start, end in PIECES:
        wav = speech[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)].astype(np.float32)
        loud = rz_audio.normalize_volume(wav, -30, increase_only=True)
        want = rz_audio.wav_to_mel_spectrogram(loud).astype(np.float32)
        got = embed.mel_spectrogram(wav)
        assert got.shape == want.shape and got.dtype == np.float32
        assert float(np.abs(got - want).max()) <= 1e-6 * float(np.abs(want).max())
    quiet = speech[: 2 * SAMPLE_RATE].astype(np.float32) * 100.0  # louder than -30 dBFS: as is
    want = rz_audio.wav_to_mel_spectrogram(rz_audio.normalize_volume(quiet, -30, True))
    assert np.allclose(embed.mel_spectrogram(quiet), want, rtol=1e-6, atol=0)


def test_mel_filterbank_is_librosas() -> None:
    import librosa

    want = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=embed.MEL_FFT, n_mels=embed.MEL_BANDS)
    got = embed.mel_filterbank()
    assert got.shape == want.shape and float(np.abs(got - want).max()) <= 1e-9


def test_fbank_is_torchaudios_kaldi_fbank(speech: np.ndarray) -> None:
    """torchaudio computes in float32 (its FFT's rounding differs from numpy's): the same
    features to 5e-3 in the log domain (2e-4 for 99.9 % of them), and CAM++ embeddings
    of regions at a cosine above 0.99999 to those of torchaudio's features. The largest
    difference (one bin's log) was under 2e-3 on earlier machines, 2.2e-3 on a fresh one
    (session 23), so its bound is not the test's point; the quantile and the embeddings are."""
    import torch
    from torchaudio.compliance import kaldi

    def torchaudio_fbank(wav: np.ndarray) -> np.ndarray:
        feats = kaldi.fbank(
            torch.from_numpy(wav * 32768.0).unsqueeze(0),
            num_mel_bins=80,
            sample_frequency=SAMPLE_RATE,
            dither=0.0,
        )
        return (feats - feats.mean(dim=0, keepdim=True)).numpy().astype(np.float32)

    for start, end in PIECES:
        wav = speech[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)].astype(np.float32)
        want, got = torchaudio_fbank(wav), embed.fbank(wav)
        assert got.shape == want.shape and got.dtype == np.float32
        diff = np.abs(got - want)
        assert float(diff.max()) < 5e-3 and float(np.quantile(diff, 0.999)) < 2e-4
    assert embed.fbank(np.zeros(399, np.float32)).shape == (0, 80)

    regions: list[Region | list[Region]] = [
        Region(t, t + 0.3 + t / 5) for t in np.arange(0.0, 25.0, 1.3)
    ]
    net = loaders.campplus_encoder()
    got_vectors = embed.embed_regions_campplus(net, speech, regions).vectors
    original = embed.fbank
    try:
        embed.fbank = torchaudio_fbank  # type: ignore[assignment]
        want_vectors = embed.embed_regions_campplus(net, speech, regions).vectors
    finally:
        embed.fbank = original  # type: ignore[assignment]
    assert float((got_vectors * want_vectors).sum(axis=1).min()) > 0.99999


def test_powerset_decoding_is_pyannotes() -> None:
    import torch
    from pyannote.audio.utils.powerset import Powerset

    for classes, most in [(3, 2), (4, 2), (3, 3), (2, 1)]:
        powerset = Powerset(classes, most)
        mapping = diarize.powerset_mapping(classes, most)
        assert np.array_equal(mapping, powerset.mapping.numpy() > 0.5)
        scores = np.random.default_rng(classes).standard_normal((2, 50, len(mapping)))
        scores[0, :5] = 0.0  # ties: the first maximum wins in both
        net = lambda _, s=scores: s.astype(np.float32)  # noqa: E731
        segmenter = diarize.Segmenter(net, 0.0, 0.1, classes, most)
        want = powerset.to_multilabel(torch.from_numpy(scores.astype(np.float32))).numpy() > 0.5
        assert np.array_equal(segmenter.activity(np.zeros((2, 1, 10), np.float32)), want)
        # "talks at the same time as another": the classes of pyannote's mapping holding it
        # and somebody else, weighted by their probability (log-softmax scores, as the model's)
        logp = torch.log_softmax(torch.from_numpy(scores.astype(np.float32)), dim=-1)
        shared = powerset.mapping * (powerset.mapping.sum(dim=1, keepdim=True) >= 2)
        expected = (logp.exp() @ shared).numpy()
        assert np.allclose(segmenter.together(logp.numpy()), expected, atol=1e-6)


def test_torch_version_is_read_without_importing_torch() -> None:
    import torch

    code = (
        "import sys; from convoice.engines import onnx_runtime as o; "
        "print(o.torch_version()); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [torch.__version__, "False"]


_CACHED_RUN = """
import json, sys
import numpy as np
from convoice.config import ClipSettings, DiarizationSettings
from convoice.engines import loaders
from convoice.media.audio import decode
from convoice.models import diarize, embed
from convoice.synth.recordings import pyannote_sample

segmenter = loaders.segmenter()
audio = decode(pyannote_sample()[0]).samples
seg = diarize.segment_recording(segmenter, audio, DiarizationSettings(), ClipSettings())
np.save(sys.argv[1], np.concatenate([s.activity for s in seg.chunk_segmentations]))
embed.embed_regions(loaders.voice_encoder_net(), audio, [c.region for c in seg.clips])
embed.embed_regions_campplus(loaders.campplus_encoder(), audio, [c.region for c in seg.clips])
heavy = ["torch", "pyannote.audio", "lightning", "librosa", "resemblyzer", "torchaudio", "numba"]
print(json.dumps({
    "imported": [m for m in heavy if m in sys.modules],
    "clips": [[c.region.start, c.region.end] for c in seg.clips],
    "net": type(segmenter.net).__name__,
}))
"""


def test_a_cached_segmenter_gives_pyannotes_turns_without_importing_it(
    speech: np.ndarray, tmp_path: Path
) -> None:
    """Once the graphs and their metadata are cached, a process segments and embeds real
    speech without importing torch, pyannote.audio, librosa or resemblyzer, and finds the
    same speaker activity, frame for frame, as pyannote's model run in torch."""
    loaders.segmenter()  # export (or find) the graph and write its metadata beside it
    loaders.voice_encoder_net()
    loaders.campplus_encoder()
    out = tmp_path / "activity.npy"
    done = subprocess.run(
        [sys.executable, "-c", _CACHED_RUN, str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] == [] and report["net"] == "OnnxRunner"

    torch_segmenter = diarize.segmenter_from_model(loaders.segmentation_model())
    want = diarize.segment_recording(torch_segmenter, speech, DiarizationSettings(), ClipSettings())
    activity = np.concatenate([s.activity for s in want.chunk_segmentations])
    assert len(want.chunks) >= 3 and len(want.clips) >= 5 and activity.any()
    assert np.array_equal(np.load(out), activity)
    assert report["clips"] == [[c.region.start, c.region.end] for c in want.clips]


def _segmentation_graph() -> Path:
    net = loaders.segmenter().net
    assert isinstance(net, onnx_runtime.OnnxRunner), "ONNX Runtime fell back to torch"
    return net.path


def test_a_graph_without_metadata_takes_the_torch_path_and_writes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A graph exported before metadata was kept beside it (or by an older engine)."""
    graph = _segmentation_graph()
    (tmp_path / "onnx").mkdir()
    copy = tmp_path / "onnx" / graph.name
    copy.write_bytes(graph.read_bytes())
    monkeypatch.setenv("CONVOICE_CACHE", str(tmp_path))
    weights = loaders.default_segmentation_path() / "pytorch_model.bin"
    graph_spec = loaders._graph("segmentation")
    assert onnx_runtime.cached_runner(graph_spec, weights, tmp_path, 1, shipped=True) is None
    loaders.segmenter.cache_clear()
    try:
        found = loaders.segmenter()
        assert isinstance(found.net, onnx_runtime.OnnxRunner) and found.net.path == copy
        meta = json.loads(onnx_runtime.sidecar_path(copy).read_text())["meta"]
        assert meta["powerset_max"] == 2 and meta["speakers"] == 3
        again = onnx_runtime.cached_runner(graph_spec, weights, tmp_path, 1, shipped=True)
        assert again is not None and diarize.Segmenter.from_meta(*again) == diarize.Segmenter(
            again[0], found.frame_start, found.frame_step, 3, 2
        )
    finally:
        loaders.segmenter.cache_clear()


def test_metadata_whose_probe_answer_differs_is_not_trusted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Torch's answer kept beside the graph no longer matches the graph's (another network's
    graph under this name, a changed runtime): the torch path decides, and re-checks it."""
    graph = _segmentation_graph()
    (tmp_path / "onnx").mkdir()
    copy = tmp_path / "onnx" / graph.name
    copy.write_bytes(graph.read_bytes())
    record = json.loads(onnx_runtime.sidecar_path(graph).read_text())
    record["probe"] = [-v for v in record["probe"]]
    onnx_runtime.sidecar_path(copy).write_text(json.dumps(record))
    weights = loaders.default_segmentation_path() / "pytorch_model.bin"
    graph_spec = loaders._graph("segmentation")
    assert onnx_runtime.cached_runner(graph_spec, weights, tmp_path, 1, shipped=True) is None
    net = loaders.segmenter().net  # and metadata this engine cannot use:
    with pytest.raises(ValueError, match="incomplete"):
        diarize.Segmenter.from_meta(net, {"sample_rate": 16000})
    with pytest.raises(ValueError, match="8000 Hz"):
        diarize.Segmenter.from_meta(net, {**record["meta"], "sample_rate": 8000})
    monkeypatch.setenv("CONVOICE_CACHE", str(tmp_path))
    loaders.segmenter.cache_clear()
    try:
        found = loaders.segmenter()  # torch's probe passes: the right answer is written
        assert isinstance(found.net, onnx_runtime.OnnxRunner) and found.net.path == copy
        assert onnx_runtime.cached_runner(graph_spec, weights, tmp_path, 1, shipped=True)
    finally:
        loaders.segmenter.cache_clear()
