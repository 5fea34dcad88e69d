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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convoice.records import FloatArray

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

PROBE_COSINE = 0.9999  # an exported graph must agree with torch this closely on a probe batch
KEEP_GRAPHS = 4  # per network, the graphs of this many fine-tuned weights files stay cached
TUNED = "tuned"  # the middle of a fine-tuned weights file's graph name (the ones pruned)


class OnnxUnavailable(RuntimeError):
    """ONNX Runtime cannot stand in for the torch network (the caller falls back to torch)."""


def onnx_enabled() -> bool:
    """Whether ONNX Runtime may be used (``CONVOICE_ONNX=0`` turns it off)."""
    return os.environ.get("CONVOICE_ONNX", "1").strip().lower() not in {"0", "false", "no", "off"}


@dataclass(frozen=True)
class OnnxGraph:
    """What to export: a network, an example input, and its input's dynamic axes."""

    name: str  # file name stem in the cache
    example: FloatArray  # shape: the input's, e.g. (batch, frames, 80)
    dynamic_axes: dict[int, str]  # input axis -> name (the output's axis 0 is the batch)


class OnnxRunner:
    """One ONNX Runtime session: a float32 batch in, the network's output out (numpy)."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
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

    def __call__(self, batch: FloatArray) -> FloatArray:
        out = self.session.run(None, {self.input: np.ascontiguousarray(batch, np.float32)})
        return np.asarray(out[0], dtype=np.float32)


def weights_digest(weights: Path) -> str:
    """A short digest of a weights file and the torch version (the exporter's)."""
    import torch

    digest = hashlib.sha256(torch.__version__.encode())
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


def _probe(module: nn.Module, runner: OnnxRunner, example: FloatArray) -> None:
    """Raise :class:`OnnxUnavailable` unless the graph gives torch's answer on ``example``."""
    import torch

    with torch.inference_mode():
        want = module(torch.from_numpy(example)).numpy()
    got = runner(example)
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


def onnx_runner(
    module: nn.Module,
    graph: OnnxGraph,
    weights: Path,
    cache: Path,
    threads: int,
    *,
    shipped: bool = False,
) -> OnnxRunner:
    """An ONNX Runtime session for ``module`` (exported from ``weights`` once, then cached).

    ``shipped``: ``weights`` are a shipped default, whose graph is never pruned;
    otherwise exporting it prunes the network's other fine-tuned graphs.
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
        raise OnnxUnavailable(f"{graph.name}: {type(err).__name__}: {err}") from err
    try:
        _probe(module, runner, graph.example)
    except OnnxUnavailable:
        target.unlink(missing_ok=True)  # exported by another version: export again next time
        raise
    return runner


def _prune(keep: Path, name: str) -> None:
    """Remove all but the last used ``KEEP_GRAPHS`` fine-tuned graphs of network ``name``
    (each fine-tuned encoder's weights file gets a graph of its own, about 30 MB); the
    shipped weights' graphs are not among them."""
    graphs = sorted(keep.parent.glob(f"{name}-{TUNED}-*.onnx"), key=lambda p: p.stat().st_mtime)
    for old in graphs[:-KEEP_GRAPHS]:
        if old != keep:
            old.unlink(missing_ok=True)
