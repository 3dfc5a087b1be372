"""Where and at what precision the network runs: the one device resolver and the inference precision rule.

bf16 on the CPU is refused on processors with AMX: oneDNN's AMX bf16 convolutions return wrong features
for this network (cosine 0.96 to fp32 instead of > 0.99, and sometimes NaN, in layer4) on Sapphire Rapids
class Xeons. Limiting oneDNN to a pre-AMX instruction set (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``, set
before Python starts) gives correct bf16 on the same CPU, so that setting lifts the refusal.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import torch

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_CPUINFO = Path("/proc/cpuinfo")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` means CUDA when available; asking for CUDA without it is an error, not a silent fallback."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}: expected auto, cpu, cuda or cuda:N") from error
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: reid-sdk runs on cpu or cuda, not {resolved.type}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available to torch")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but torch sees {torch.cuda.device_count()} CUDA device(s)")
    return resolved


@functools.cache
def cpu_has_amx() -> bool:
    """True when the CPU advertises AMX tiles (Linux ``/proc/cpuinfo`` flags); False where it cannot tell."""
    try:
        flags = _CPUINFO.read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "amx_tile" in flags


def onednn_isa_excludes_amx() -> bool:
    """True when ``ONEDNN_MAX_CPU_ISA`` caps oneDNN below AMX for this process."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return bool(isa) and "AMX" not in isa and isa != "ALL"


def check_cpu_bf16() -> None:
    """Raise ValueError when bf16 inference on this CPU would give wrong features (see the module docstring)."""
    if cpu_has_amx() and not onednn_isa_excludes_amx():
        raise ValueError("precision 'bf16' is refused on this CPU: it has AMX, and oneDNN's AMX bf16 "
                         "convolutions give wrong (sometimes NaN) features for this network; use fp32, or set "
                         "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 before starting Python to use bf16 without AMX")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``"auto"``: fp16 on CUDA, fp32 elsewhere; fp16 on CPU is refused (slow and partly unsupported)."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of auto, {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA device; use fp32 or bf16 on CPU")
    if precision == "bf16" and device.type == "cpu":
        check_cpu_bf16()
    return PRECISIONS[precision]


@contextlib.contextmanager
def true_fp32(device: torch.device) -> Iterator[None]:
    """fp32 convolutions and matmuls without TF32 on CUDA inside the block; the previous settings come back after.

    torch lets cuDNN convolutions use TF32 by default (10-bit mantissa), which an fp32 promise (max |diff|
    <= 1e-4 to the CPU) cannot afford. No-op on CPU.

    Uses torch's ``fp32_precision`` flags, as the clustering does (torch refuses to read its legacy
    ``allow_tf32`` flags once these are set).
    """
    if device.type != "cuda":
        yield
        return
    flags = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [flag.fp32_precision for flag in flags]
    try:
        for flag in flags:
            flag.fp32_precision = "ieee"
        yield
    finally:
        for flag, value in zip(flags, saved):
            flag.fp32_precision = value
