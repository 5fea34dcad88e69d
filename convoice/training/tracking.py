"""Offline experiment tracking of training runs: TensorBoard event files.

Every training run (speaker encoder, TTS) opens a :class:`TrainingRun` under
``<tracking dir>/<kind>/<run id>``: its parameters (dataset version, settings)
go to TensorBoard's text and hparams views and to ``params.json``, its losses
and evaluation metrics to scalars and ``metrics.json``. Look at them with
``tensorboard --logdir <tracking dir>`` (no network needed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from convoice.config import Settings


def tracking_dir(settings: Settings) -> Path:
    """Where training runs are logged: ``[tracking] dir``, else ``<home>/runs``."""
    if settings.tracking.dir:
        return Path(settings.tracking.dir)
    if "://" in settings.home:
        return Path.home() / ".convoice-runs"
    return Path(settings.home) / "runs"


def new_run_id(kind: str) -> str:
    """A sortable id such as ``encoder-20261122-043512``."""
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


class TrainingRun:
    """One tracked training run (a directory of TensorBoard events and JSON files)."""

    def __init__(self, root: Path, kind: str, run_id: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.kind = kind
        self.run_id = run_id
        self.dir = root / kind / run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(self.dir))
        self.params: dict[str, Any] = _read_json(self.dir / "params.json")
        self.metrics: dict[str, float] = _read_json(self.dir / "metrics.json")

    def log_params(self, params: dict[str, Any]) -> None:
        """Record the run's inputs (dataset version, settings); merged with earlier ones."""
        self.params.update(params)
        _write_json(self.dir / "params.json", self.params)
        self._writer.add_text("params", f"```\n{json.dumps(self.params, indent=2)}\n```")

    def log_scalar(self, tag: str, value: float, step: int) -> None:
        """A loss or rate at a training step."""
        self._writer.add_scalar(tag, float(value), step)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Evaluation results (also kept in ``metrics.json``)."""
        for tag, value in metrics.items():
            self._writer.add_scalar(tag, float(value), step)
        self.metrics.update({k: float(v) for k, v in metrics.items()})
        _write_json(self.dir / "metrics.json", self.metrics)

    def close(self) -> None:
        """Write the hparams summary (params against metrics) and flush."""
        flat = {k: v for k, v in _flatten(self.params).items() if isinstance(v, int | float | str)}
        if flat and self.metrics:
            self._writer.add_hparams(flat, dict(self.metrics), run_name=".")
        self._writer.flush()
        self._writer.close()

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run(settings: Settings, kind: str, run_id: str | None = None) -> TrainingRun:
    """Open (or reopen, when resuming) the tracked run ``run_id`` of ``kind``."""
    return TrainingRun(tracking_dir(settings), kind, run_id or new_run_id(kind))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
