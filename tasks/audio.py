"""Read a recording's audio into memory as 16 kHz mono float32."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from convoice.tasks.download import IngestError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Audio:
    samples: npt.NDArray[np.float32]  # shape: (num_samples,)
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def decode(path: Path) -> Audio:
    """Decode any file ffmpeg reads into 16 kHz mono float32 samples.

    Raises:
        IngestError: ``corrupt_media`` when ffmpeg cannot decode it, ``no_audio``
            when it decodes to nothing.
    """
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1",
           "-ar", str(SAMPLE_RATE), "-"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=3600)
    except FileNotFoundError as err:
        raise RuntimeError("ffmpeg is not installed; run `make setup`") from err
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise IngestError("corrupt_media", f"ffmpeg cannot decode {path.name}: {detail[0]}")
    samples = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if samples.size == 0:
        raise IngestError("no_audio", f"{path.name} decodes to no audio")
    return Audio(samples, SAMPLE_RATE)
