"""The offline pyannote pipeline and the naive baseline, on real models and a real recording.

The recording is the 30 s two-speaker sample that ships in the pyannote.audio
wheel, with its reference RTTM. Nothing here touches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convoice.bench import naive as pipelines
from convoice.engines.loaders import ModelUnavailable
from convoice.synth.recordings import pyannote_sample

SR = pipelines.SAMPLE_RATE
MAX_DER = 0.15


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, Any]:
    """(samples, reference Annotation) of pyannote's sample recording."""
    import soundfile as sf
    from pyannote.database.util import load_rttm

    wav, rttm = pyannote_sample()
    samples, rate = sf.read(wav, dtype="float32")
    assert rate == SR
    return samples, next(iter(load_rttm(rttm).values()))


@pytest.fixture(scope="module")
def baseline(sample: tuple[np.ndarray, Any]) -> pipelines.NaiveResult:
    """The naive baseline (offline_pipeline() at step 0.1, batch 1, CAM++) run once."""
    return pipelines.naive_baseline(sample[0])


def _annotation(turns: list[pipelines.Turn]) -> Any:
    from pyannote.core import Annotation, Segment

    hyp = Annotation(uri="sample")
    for i, (start, end, speaker) in enumerate(turns):
        hyp[Segment(start, end), i] = speaker
    return hyp


def _speaker90_chunk(samples: np.ndarray) -> tuple[Any, Any]:
    """The 10-20 s chunk twice, as pyannote batches it, with weights (segmentation-3.0's
    589 frames per 10 s): speaker90's speech (10.57 to 14.49 s) in the first, none in the
    second."""
    import torch

    chunk = samples[10 * SR : 20 * SR]  # speaker90 speaks 10.57 to 14.70 s
    num_frames = 589
    times = 10 + (np.arange(num_frames) + 0.5) * 10 / num_frames
    mask = torch.from_numpy(((times >= 10.57) & (times < 14.49)).astype(np.float32))
    waveforms = torch.from_numpy(np.stack([chunk, chunk]))[:, None]
    return waveforms, torch.stack([mask, torch.zeros(num_frames)])


def test_embedding_model_matches_resemblyzer(sample: tuple[np.ndarray, Any]) -> None:
    """The masked forward equals embed_utterance on the same speech; no speech gives NaN."""
    import torch
    from resemblyzer import preprocess_wav

    from convoice.engines.loaders import voice_encoder

    samples, _ = sample
    waveforms, weights = _speaker90_chunk(samples)
    model = pipelines.resemblyzer_embedding()
    with torch.inference_mode():
        out = model(waveforms, weights=weights).numpy()
    assert out.shape == (2, pipelines.EMBEDDING_DIM)
    assert np.isnan(out[1]).all()
    expected = voice_encoder().embed_utterance(
        preprocess_wav(samples[int(10.57 * SR) : int(14.49 * SR)])
    )
    assert float(out[0] @ expected) > 0.99
    with torch.inference_mode():
        whole = model(waveforms[:1]).numpy()  # no weights: the whole chunk
    assert np.isclose(np.linalg.norm(whole), 1.0, atol=1e-4)


def test_campplus_embedding_model(sample: tuple[np.ndarray, Any]) -> None:
    """The masked forward is CAM++ of the speech alone; no speech gives NaN; too short raises."""
    import torch

    from convoice.engines.loaders import campplus_model
    from convoice.models.embed import fbank

    samples, _ = sample
    waveforms, weights = _speaker90_chunk(samples)
    model = pipelines.CamPPlusEmbedding()
    with torch.inference_mode():
        out = model(waveforms, weights=weights).numpy()
        speech = fbank(samples[int(10.57 * SR) : int(14.49 * SR)])
        alone = campplus_model()(torch.from_numpy(speech)[None])[0].numpy()
    assert out.shape == (2, pipelines.CAMPPLUS_DIM)
    assert np.isnan(out[1]).all()
    assert np.isclose(np.linalg.norm(out[0]), 1.0, atol=1e-4)
    assert float(out[0] @ alone) / float(np.linalg.norm(alone)) > 0.95
    with pytest.raises(ValueError, match="shorter than one fbank frame"):
        model(torch.zeros(1, 1, 100))


def test_ge2e_pipeline_der(sample: tuple[np.ndarray, Any]) -> None:
    """The other embedding, GE2E with its own clustering threshold, finds both speakers too."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    samples, reference = sample
    pipeline = pipelines.offline_pipeline(embedding="resemblyzer")
    assert pipeline.default_parameters() == pipelines.GE2E_PARAMETERS
    turns = pipelines.diarize_whole(pipeline, samples)
    der = DiarizationErrorRate(collar=0.0)(reference, _annotation(turns))
    print(f"offline GE2E pipeline DER on pyannote's sample: {der:.4f}")
    assert der <= MAX_DER
    assert len({speaker for *_, speaker in turns}) == 2


def test_offline_pipeline_der(
    sample: tuple[np.ndarray, Any], baseline: pipelines.NaiveResult
) -> None:
    from pyannote.metrics.diarization import DiarizationErrorRate

    _, reference = sample
    der = DiarizationErrorRate(collar=0.0)(reference, _annotation(baseline.turns))
    print(f"offline pipeline DER on pyannote's sample: {der:.4f}")
    assert der <= MAX_DER
    assert len({speaker for *_, speaker in baseline.turns}) == 2
    assert baseline.turns == sorted(baseline.turns)


def test_naive_baseline_outputs(baseline: pipelines.NaiveResult) -> None:
    assert baseline.turns
    assert len(baseline.text.split()) > 20  # 30 s of conversational English
    assert all(seg.words for seg in baseline.segments)
    assert baseline.embedded_turns
    assert all(end - start >= pipelines.MIN_TURN_S for start, end, _ in baseline.embedded_turns)
    assert baseline.embeddings.shape == (len(baseline.embedded_turns), pipelines.EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(baseline.embeddings, axis=1), 1.0, atol=1e-4)
    assert set(baseline.step_seconds) == {"diarization", "transcription", "embedding"}
    assert all(t > 0 for t in baseline.step_seconds.values())


def test_load_pipeline_from_local_config(tmp_path: Path, sample: tuple[np.ndarray, Any]) -> None:
    """A directory with a config.yaml loads offline; step 1.0 keeps the run short."""
    config = pipelines.write_pipeline_config(tmp_path / "offline", segmentation_step=1.0)
    pipeline = pipelines.load_pipeline(str(config.parent))
    assert type(pipeline).__name__ == "OfflineSpeakerDiarization"
    assert pipeline.parameters(instantiated=True) == pipelines.CAMPPLUS_PARAMETERS
    turns = pipelines.diarize_whole(pipeline, sample[0])
    assert turns
    assert all(0 <= start < end <= 30.01 for start, end, _ in turns)


def test_load_pipeline_offline_hub_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # What a machine without network sees, without waiting for the hub client's retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailable, match=r"pyannote/does-not-exist.*Hugging Face hub"):
        pipelines.load_pipeline("pyannote/does-not-exist")


def test_load_pipeline_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=r"no pipeline config\.yaml"):
        pipelines.load_pipeline(str(tmp_path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"segmentation_step": 0.0}, "segmentation_step"), ({"batch_size": 0}, "batch_size")],
)
def test_offline_pipeline_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pipelines.offline_pipeline(**kwargs)


def test_unknown_embedding_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown embedding 'ecapa'"):
        pipelines.OfflineSpeakerDiarization(embedding="ecapa")


def test_vbx_clustering_is_refused() -> None:
    with pytest.raises(ValueError, match="PLDA"):
        pipelines.OfflineSpeakerDiarization(clustering="VBxClustering")


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError):
        _ = pipelines.NoSuchThing


def test_bench_names_the_naive_chain_embedding_and_refuses_an_unknown_one() -> None:
    from typer.testing import CliRunner

    from convoice.bench.result import BenchmarkResult
    from convoice.cli.root import app

    result = BenchmarkResult(corpus="c", audio_seconds=1.0, naive_s=2.0, flow_s=1.0)
    assert "with CAM++" in result.naive_label
    result.naive_embedding = "resemblyzer"
    assert "with GE2E" in result.naive_label
    assert dict(result.profile_rows())[result.naive_label] == 2.0
    done = CliRunner().invoke(app, ["bench", "--quick", "--naive-embedding", "ecapa"])
    assert done.exit_code == 2, done.output
    assert "campplus, resemblyzer" in " ".join(done.output.split())
