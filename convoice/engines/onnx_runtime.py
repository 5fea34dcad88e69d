"""Torch networks run through ONNX Runtime, exported once per weights file into the cache.

On a 2-core CPU ONNX Runtime runs CAM++ about 1.5 x faster than torch with one
thread, and degrades far less when other processes share the cores (see the
README, "How it works, and what it costs"). The graph is exported with torch's
own exporter the first time a weights file is used, into
``<cache>/onnx/<name>-<digest>.onnx`` (the digest covers the weights file and
the torch version), and read from there afterwards. The graph of a shipped
weights file (the defaults) stays there for good; a fine-tuned encoder's goes to
``<name>-tuned-<digest>.onnx``, and only the last used ``KEEP_GRAPHS`` of those
stay, so training encoders never evicts the graph every ingest loads. Any failure (export, load,
a wrong answer on a probe batch) falls back to torch with a warning: ONNX
Runtime is an accelerator, never a requirement. ``CONVOICE_ONNX=0`` turns it off.

Beside each graph, ``<graph>.json`` keeps torch's answer on the probe batch and
what the network's user needs to know of it (for the segmentation model: its
frames and powerset classes), written once the graph has passed the probe.
With both on disk, :func:`cached_runner` opens the graph without torch or the
network's library (about 60 s of a loaded 2-core machine for pyannote.audio):
ONNX Runtime's answer on the probe batch is checked against the one stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.config import switched_on
from convoice.engines import budget
from convoice.records import FloatArray

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

PROBE_COSINE = 0.9999  # an exported graph must agree with torch this closely on a probe batch
KEEP_GRAPHS = 4  # per network, the graphs of this many fine-tuned weights files stay cached
TUNED = "tuned"  # the middle of a fine-tuned weights file's graph name (the ones pruned)
SIDECAR_FORMAT = 1  # of the ``<graph>.json`` beside a graph

Meta = dict[str, Any]
"""What a network's user needs to know of it besides the graph (JSON values)."""


class OnnxUnavailable(RuntimeError):
    """ONNX Runtime cannot stand in for the torch network (the caller falls back to torch)."""


def onnx_enabled() -> bool:
    """Whether ONNX Runtime may be used (``CONVOICE_ONNX=0`` turns it off)."""
    return switched_on("CONVOICE_ONNX")


@dataclass(frozen=True)
class OnnxGraph:
    """What to export: a network, an example input, and its input's dynamic axes."""

    name: str  # file name stem in the cache
    example: FloatArray  # shape: the input's, e.g. (batch, frames, 80)
    dynamic_axes: dict[int, str]  # input axis -> name (the output's axis 0 is the batch)


def split_batches() -> bool:
    """Whether a runner splits each batch over its threads (``CONVOICE_ONNX_SPLIT=0``: no)."""
    return switched_on("CONVOICE_ONNX_SPLIT")


class OnnxRunner:
    """One ONNX Runtime session: a float32 batch in, the network's output out (numpy).

    With ``threads`` > 1 and ``split`` (the default), the session runs on one thread and
    each batch is cut into ``threads`` slices run side by side: every row's answer is the
    same bit for bit (these networks treat a batch's rows independently), for less CPU
    than one run whose operators each wake the other threads (``tests/test_onnx_runtime.py``).
    """

    def __init__(self, path: Path, threads: int, split: bool | None = None) -> None:
        import onnxruntime as ort

        self.slices = threads if (split_batches() if split is None else split) else 1
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1 if self.slices > 1 else threads
        options.inter_op_num_threads = 1
        # Like OMP_WAIT_POLICY=PASSIVE for torch: idle threads sleep instead of
        # spinning, so they do not starve CTranslate2 or another process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Inputs change shape with every clip: the CPU arena would keep the largest of each
        # and never give it back (+0.64 GiB at the peak of a 3-hour file); plain malloc does.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self._pool: ThreadPoolExecutor | None = None

    def _run(self, batch: FloatArray) -> FloatArray:
        out = self.session.run(None, {self.input: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(out[0], dtype=np.float32)

    def __call__(self, batch: FloatArray) -> FloatArray:
        parts = min(budget.network_threads(self.slices), len(batch))
        if parts <= 1:
            return self._run(batch)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.slices, thread_name_prefix="onnx")
        return np.concatenate(list(self._pool.map(self._run, np.array_split(batch, parts))))


def torch_version() -> str:
    """``torch.__version__`` (with its local part, e.g. ``+cu128``), without importing torch
    when it is not imported yet: read from ``torch/version.py``."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return str(torch.__version__)
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.submodule_search_locations:
        version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
        with contextlib.suppress(OSError):
            found = re.search(
                r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", version_file.read_text(), re.M
            )
            if found:
                return found.group(1)
    import torch as imported

    return str(imported.__version__)


def weights_digest(weights: Path) -> str:
    """A short digest of a weights file and the torch version (the exporter's)."""
    digest = hashlib.sha256(torch_version().encode())
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _without_onnx_package() -> Iterator[None]:
    """Let torch's TorchScript exporter write its graph when the ``onnx`` package is absent.

    The exporter already holds the serialised graph; it imports ``onnx`` only to
    splice in onnxscript functions, which these networks do not use.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        from unittest import mock

        from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

        with mock.patch.object(onnx_proto_utils, "_add_onnxscript_fn", lambda proto, _: proto):
            yield
        return
    yield


def export(module: nn.Module, graph: OnnxGraph, target: Path) -> None:
    """Export ``module`` to ``target`` (written beside it first, then renamed)."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    axes: dict[str, Any] = {"input": graph.dynamic_axes, "output": {0: graph.dynamic_axes[0]}}
    try:
        with _without_onnx_package(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python
            torch.onnx.export(
                module,
                (torch.from_numpy(graph.example),),
                str(tmp),
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes=axes,
                opset_version=17,
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def _probe(module: nn.Module, runner: OnnxRunner, example: FloatArray) -> FloatArray:
    """Torch's answer on ``example``; raise :class:`OnnxUnavailable` unless the graph gives it."""
    import torch

    with torch.inference_mode():
        want = np.asarray(module(torch.from_numpy(example)).numpy(), dtype=np.float32)
    _agree(runner, runner(example), want)
    return want


def _agree(runner: OnnxRunner, got: FloatArray, want: FloatArray) -> None:
    """Raise :class:`OnnxUnavailable` unless ``got`` is ``want`` (cosine per example)."""
    if got.shape != want.shape:
        raise OnnxUnavailable(f"{runner.path.name}: output shape {got.shape} != {want.shape}")
    got, want = got.reshape(len(got), -1), want.reshape(len(want), -1)  # per example
    cos = (got * want).sum(axis=1) / np.maximum(
        np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12
    )
    if float(cos.min()) < PROBE_COSINE:
        raise OnnxUnavailable(f"{runner.path.name}: cosine {cos.min():.6f} to torch's output")


def graph_path(graph: OnnxGraph, weights: Path, cache: Path, shipped: bool) -> Path:
    """Where ``weights``' graph is cached: ``<name>-<digest>.onnx`` for shipped weights
    (kept for good), ``<name>-tuned-<digest>.onnx`` for others (pruned, see :func:`_prune`)."""
    kind = "" if shipped else f"{TUNED}-"
    return cache / "onnx" / f"{graph.name}-{kind}{weights_digest(weights)}.onnx"


def sidecar_path(target: Path) -> Path:
    """Where a graph's probe answer and metadata are kept: ``<graph>.json`` beside it."""
    return target.with_suffix(".json")


def _write_sidecar(target: Path, example: FloatArray, want: FloatArray, meta: Meta) -> None:
    """Keep torch's answer on the probe batch and ``meta`` beside the graph (atomically)."""
    record = {
        "format": SIDECAR_FORMAT,
        "graph": target.name,
        "example_shape": list(example.shape),
        "probe_shape": list(want.shape),
        "probe": [float(v) for v in want.reshape(-1)],
        "meta": meta,
    }
    side = sidecar_path(target)
    tmp = side.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record))
        tmp.replace(side)
    finally:
        tmp.unlink(missing_ok=True)


def cached_runner(
    graph: OnnxGraph, weights: Path, cache: Path, threads: int, *, shipped: bool = False
) -> tuple[OnnxRunner, Meta] | None:
    """The cached graph of ``weights`` and its metadata, opened without torch, or None
    when the graph or its ``.json`` is missing, unreadable, or answers the probe batch
    otherwise than torch did (the caller then takes the torch path, which re-checks it).
    """
    target = graph_path(graph, weights, cache, shipped)
    side = sidecar_path(target)
    if not (target.is_file() and side.is_file()):
        return None
    try:
        record = json.loads(side.read_text())
        if record.get("format") != SIDECAR_FORMAT or record.get("graph") != target.name:
            return None
        if list(graph.example.shape) != record["example_shape"]:
            return None
        want = np.asarray(record["probe"], np.float32).reshape(record["probe_shape"])
        meta = record["meta"]
        if not isinstance(meta, dict):
            return None
        runner = OnnxRunner(target, threads)
        _agree(runner, runner(graph.example), want)
        os.utime(target)  # last used: what pruning keeps
    except Exception as err:  # any doubt: torch's path decides (and re-checks the graph)
        log.info("%s: cached graph not used without torch: %s", graph.name, err)
        return None
    return runner, meta


def onnx_runner(
    module: nn.Module,
    graph: OnnxGraph,
    weights: Path,
    cache: Path,
    threads: int,
    *,
    shipped: bool = False,
    meta: Meta | None = None,
) -> OnnxRunner:
    """An ONNX Runtime session for ``module`` (exported from ``weights`` once, then cached).

    ``shipped``: ``weights`` are a shipped default, whose graph is never pruned;
    otherwise exporting it prunes the network's other fine-tuned graphs.
    ``meta``: what :func:`cached_runner` gives back with the graph next time; it
    and torch's probe answer are written beside the graph once it passes the probe.
    Raises :class:`OnnxUnavailable` when it cannot be had or disagrees with torch.
    """
    target = graph_path(graph, weights, cache, shipped)
    try:
        if not target.is_file():
            log.info("exporting %s to ONNX (once per weights file): %s", graph.name, target)
            export(module, graph, target)
            if not shipped:
                _prune(target, graph.name)
        os.utime(target)  # last used: what pruning keeps
        runner = OnnxRunner(target, threads)
    except Exception as err:  # no onnxruntime, an exporter change, a broken file
        target.unlink(missing_ok=True)
        sidecar_path(target).unlink(missing_ok=True)
        raise OnnxUnavailable(f"{graph.name}: {type(err).__name__}: {err}") from err
    try:
        want = _probe(module, runner, graph.example)
    except OnnxUnavailable:
        target.unlink(missing_ok=True)  # exported by another version: export again next time
        sidecar_path(target).unlink(missing_ok=True)
        raise
    try:
        _write_sidecar(target, graph.example, want, meta or {})
    except OSError as err:  # a read-only cache: only the next start-up is slower
        log.info("%s: cannot write %s: %s", graph.name, sidecar_path(target), err)
    return runner


def _prune(keep: Path, name: str) -> None:
    """Remove all but the last used ``KEEP_GRAPHS`` fine-tuned graphs of network ``name``
    (each fine-tuned encoder's weights file gets a graph of its own, about 30 MB); the
    shipped weights' graphs are not among them."""
    graphs = sorted(keep.parent.glob(f"{name}-{TUNED}-*.onnx"), key=lambda p: p.stat().st_mtime)
    for old in graphs[:-KEEP_GRAPHS]:
        if old != keep:
            old.unlink(missing_ok=True)
            sidecar_path(old).unlink(missing_ok=True)
