"""The machine a benchmark ran on, in one line: its figures depend on the CPU.

The same commit gives other quality figures on a CPU without AVX-512 (README,
"The engine as it stands", session 32: CTranslate2 and ONNX Runtime pick their
kernels by instruction set), and other speeds on every CPU, so each benchmark
prints the CPU's model, its cores and the instruction sets those kernels choose by.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# instruction sets CTranslate2 (oneDNN) and ONNX Runtime choose their kernels by
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def describe(cpuinfo: str | None = None) -> str:
    """``"AMD EPYC, 2 cores; avx2 fma, no avx512f ..."`` (``cpuinfo``: /proc/cpuinfo's text)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    model, flags = platform.processor() or platform.machine(), set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break  # the first CPU's: they are alike
    has = [f for f in KERNEL_FLAGS if f in flags]
    lacks = [f for f in KERNEL_FLAGS if f not in flags]
    sets = " ".join(has) or "none of " + " ".join(KERNEL_FLAGS)
    if has and lacks:
        sets += ", no " + " ".join(lacks)
    return f"{model}, {os.cpu_count() or 1} cores; {sets}"
