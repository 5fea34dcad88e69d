"""CAM++ through ONNX Runtime: torch's embeddings on real speech, and torch as the fallback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from convoice.engines import loaders, onnx_runtime
from convoice.media.audio import decode
from convoice.models import embed
from convoice.models.campplus import CAMPPlus
from convoice.records import Region
from convoice.synth.recordings import pyannote_sample


def _graph() -> onnx_runtime.OnnxGraph:
    example = np.random.default_rng(1).standard_normal((2, 100, 80)).astype(np.float32)
    return onnx_runtime.OnnxGraph("campplus", example, {0: "batch", 1: "frames"})


def test_onnx_campplus_gives_torchs_embeddings_on_real_speech() -> None:
    """pyannote's real sample cut into regions of 0.3-7 s: every region and window agrees."""
    runner = loaders.campplus_encoder()
    assert isinstance(runner, onnx_runtime.OnnxRunner), "ONNX Runtime fell back to torch"
    audio = decode(pyannote_sample()[0]).samples
    lengths = [0.3, 0.55, 1.0, 1.2, 1.6, 2.4, 3.3, 5.0, 7.0]
    regions: list[Region | list[Region]] = []
    t = 0.5
    for length in lengths:
        regions.append(Region(t, t + length))
        t += length + 0.2
    regions.append([Region(1.0, 2.0), Region(20.0, 21.5)])  # a local speaker's pieces
    want = embed.embed_regions_campplus(loaders.campplus_model(), audio, regions)
    got = embed.embed_regions_campplus(runner, audio, regions)
    assert (np.linalg.norm(want.vectors, axis=1) > 0.99).all()
    assert float((want.vectors * got.vectors).sum(axis=1).min()) > 0.9999
    for a, b in zip(want.windows, got.windows, strict=True):
        assert a.shape == b.shape and len(a) >= 1
        assert float((a * b).sum(axis=1).min()) > 0.9999


def test_onnx_resemblyzer_gives_torchs_embeddings_on_real_speech() -> None:
    net = loaders.voice_encoder_net()
    assert isinstance(net, onnx_runtime.OnnxRunner), "ONNX Runtime fell back to torch"
    audio = decode(pyannote_sample()[0]).samples
    regions: list[Region | list[Region]] = [Region(t, t + 0.4 + t / 4) for t in range(0, 24, 3)]
    want = embed.embed_regions(loaders.voice_encoder(), audio, regions)
    got = embed.embed_regions(net, audio, regions)
    assert (np.linalg.norm(want, axis=1) > 0.99).all()
    assert float((want * got).sum(axis=1).min()) > 0.9999


def test_onnx_segmentation_gives_torchs_turns_on_real_speech() -> None:
    """pyannote's real two-speaker sample: the same speaker activity, frame for frame."""
    from convoice.config import ClipSettings, DiarizationSettings
    from convoice.models.diarize import segment_recording, segmenter_from_model

    onnx = loaders.segmenter()
    assert isinstance(onnx.net, onnx_runtime.OnnxRunner), "ONNX Runtime fell back to torch"
    audio = decode(pyannote_sample()[0]).samples
    cfg, clips = DiarizationSettings(), ClipSettings()
    want = segment_recording(segmenter_from_model(loaders.segmentation_model()), audio, cfg, clips)
    got = segment_recording(onnx, audio, cfg, clips)
    assert len(want.chunks) >= 3 and len(want.clips) >= 5
    for a, b in zip(want.chunk_segmentations, got.chunk_segmentations, strict=True):
        assert a.activity.any() and np.array_equal(a.activity, b.activity)
    assert [c.region for c in want.clips] == [c.region for c in got.clips]


def test_onnx_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOICE_ONNX", "0")
    loaders.campplus_encoder.cache_clear()
    loaders.segmenter.cache_clear()
    try:
        assert isinstance(loaders.campplus_encoder(), CAMPPlus)
        net = loaders.segmenter().net  # torch runs the segmentation model
        assert not isinstance(net, onnx_runtime.OnnxRunner)
    finally:
        loaders.campplus_encoder.cache_clear()
        loaders.segmenter.cache_clear()


def test_a_broken_cached_graph_is_refused_and_removed(tmp_path: Path) -> None:
    weights = loaders.campplus_weights()
    target = onnx_runtime.graph_path(_graph(), weights, tmp_path, shipped=True)
    assert target.name == f"campplus-{onnx_runtime.weights_digest(weights)}.onnx"
    target.parent.mkdir()
    target.write_bytes(b"not an onnx graph")
    with pytest.raises(onnx_runtime.OnnxUnavailable, match="campplus"):
        model = loaders.campplus_model()
        onnx_runtime.onnx_runner(model, _graph(), weights, tmp_path, 1, shipped=True)
    assert not target.exists()  # exported again next time


def test_a_graph_that_disagrees_with_torch_is_refused(tmp_path: Path) -> None:
    """Another network's graph under this weights file's name: the probe batch catches it."""
    shipped = loaders.campplus_encoder()
    assert isinstance(shipped, onnx_runtime.OnnxRunner)
    state = {k: v.clone() for k, v in loaders.campplus_model().state_dict().items()}
    state["xvector.dense.linear.weight"] *= -1.0  # a different (fine-tuned, say) network
    weights = tmp_path / "tuned.pt"
    torch.save(state, weights)
    tuned = CAMPPlus()
    tuned.load_state_dict(state)
    tuned.eval()
    target = onnx_runtime.graph_path(_graph(), weights, tmp_path, shipped=False)
    assert target.name == f"campplus-tuned-{onnx_runtime.weights_digest(weights)}.onnx"
    target.parent.mkdir()
    shutil.copyfile(shipped.path, target)
    with pytest.raises(onnx_runtime.OnnxUnavailable, match="cosine"):
        onnx_runtime.onnx_runner(tuned, _graph(), weights, tmp_path, 1)
    assert not target.exists()


def test_an_export_failure_falls_back_to_torch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("exporter changed")

    monkeypatch.setenv("CONVOICE_CACHE", str(tmp_path))
    monkeypatch.setattr(onnx_runtime, "export", broken)
    loaders.campplus_encoder.cache_clear()
    try:
        assert isinstance(loaders.campplus_encoder(), CAMPPlus)
    finally:
        loaders.campplus_encoder.cache_clear()
    assert "campplus runs in torch" in caplog.text and "exporter changed" in caplog.text


def test_training_encoders_prunes_old_tuned_graphs_never_the_shipped_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every fine-tuned encoder exports a graph of its own: the least recently used of those
    are pruned, the shipped weights' graph never (each ingest would export it again)."""
    shipped = loaders.campplus_encoder()
    assert isinstance(shipped, onnx_runtime.OnnxRunner)
    folder = tmp_path / "onnx"
    folder.mkdir()
    kept = folder / shipped.path.name
    shutil.copyfile(shipped.path, kept)
    os.utime(kept, (500.0, 500.0))  # used before any fine-tuned one
    for i in range(onnx_runtime.KEEP_GRAPHS + 2):
        old = folder / f"campplus-tuned-old{i}.onnx"
        old.write_bytes(b"x")
        os.utime(old, (1000.0 + i, 1000.0 + i))
    (folder / "resemblyzer-tuned-other.onnx").write_bytes(b"x")  # another network's: kept
    state = {k: v.clone() for k, v in loaders.campplus_model().state_dict().items()}
    state["xvector.dense.linear.weight"] *= 0.5  # a fine-tuned encoder, as training writes one
    weights = tmp_path / "tuned.pt"
    torch.save(state, weights)
    monkeypatch.setenv("CONVOICE_CACHE", str(tmp_path))
    tuned = loaders.campplus_encoder(str(weights))
    assert isinstance(tuned, onnx_runtime.OnnxRunner) and tuned.path.parent == folder
    left = sorted(p.name for p in folder.glob("*.onnx"))
    newest = [f"campplus-tuned-old{i}.onnx" for i in range(3, onnx_runtime.KEEP_GRAPHS + 2)]
    want = [kept.name, tuned.path.name, *newest, "resemblyzer-tuned-other.onnx"]
    assert left == sorted(want)

    def no_export(*_: object) -> None:
        raise AssertionError("the shipped graph was exported again")

    monkeypatch.setattr(onnx_runtime, "export", no_export)
    loaders.campplus_encoder.cache_clear()
    try:  # the next ingest finds the shipped graph where it was
        again = loaders.campplus_encoder()
        assert isinstance(again, onnx_runtime.OnnxRunner) and again.path == kept
    finally:
        loaders.campplus_encoder.cache_clear()


def test_a_batch_split_over_threads_gives_every_row_bit_for_bit() -> None:
    """Each network's batch cut in slices run side by side, one thread each: the same bytes
    as one run on two threads (real speech: CAM++'s fbank and resemblyzer's mel windows)."""
    audio = decode(pyannote_sample()[0]).samples
    cam = np.stack(embed._windows(embed.fbank(audio[16000:176000]), embed.CAMPPLUS_WINDOW)[:7])
    mel = np.stack(list(embed._partials(embed.mel_spectrogram(audio[:160000])))[:9])
    for runner, batch in ((loaders.campplus_encoder(), cam), (loaders.voice_encoder_net(), mel)):
        assert isinstance(runner, onnx_runtime.OnnxRunner), "ONNX Runtime fell back to torch"
        split = onnx_runtime.OnnxRunner(runner.path, 2, split=True)
        whole = onnx_runtime.OnnxRunner(runner.path, 2, split=False)
        assert (split.slices, whole.slices) == (2, 1)
        got, want = split(batch), whole(batch)
        assert got.shape == want.shape == (len(batch), want.shape[1])
        assert np.array_equal(got, want)
        assert np.array_equal(split(batch[:1]), want[:1])  # one row: no slicing
