"""The fp32 peak of this machine's CPU cores, from the CPU model: what training images/s are reported against.

    peak FLOP/s = cores x FMA pipes x (vector bits / 32) fp32 lanes x 2 (an FMA is a multiply and an add) x clock

Pipes and width by microarchitecture (vendor manuals; AVX-512 on Zen 4 runs as two 256-bit halves, so it
peaks like AVX2 there):

- AMD Zen 2 / 3 / 4 (family 23, 25): 2 FMA pipes x 256 bits = 32 fp32 FLOP per cycle;
- AMD Zen 5 (family 26) with AVX-512: 2 x 512 bits = 64;
- Intel with AVX-512 (Skylake-SP and later Xeons: two 512-bit FMA units on Gold / Platinum): 64;
- any other x86-64 with FMA (AVX2): 2 x 256 bits = 32.

The clock is /proc/cpuinfo's "cpu MHz" (the nominal or TSC clock under a hypervisor; turbo and AVX-512
down-clocking move the real one), overridable with ``clock_ghz``. The result is a yardstick, not a promise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def fp32_flops_per_cycle(vendor: str, family: int, flags: set[str]) -> tuple[int, str]:
    """fp32 FLOP per cycle per core and the rule that gave it (see the module docstring)."""
    if vendor == "AuthenticAMD" and family >= 26 and "avx512f" in flags:
        return 64, "AMD Zen 5: 2 FMA pipes x 512 bits"
    if vendor == "AuthenticAMD" and family in (23, 25):
        return 32, "AMD Zen 2-4: 2 FMA pipes x 256 bits (AVX-512 double-pumped on Zen 4)"
    if vendor == "GenuineIntel" and "avx512f" in flags:
        return 64, "Intel AVX-512 server core: 2 FMA units x 512 bits"
    if "fma" in flags:
        return 32, "x86-64 with FMA (AVX2): 2 FMA units x 256 bits"
    return 8, "no FMA flag: 1 SSE multiply + 1 add per cycle x 4 lanes (a rough floor)"


def cpu_fp32_peak(cores: int | None = None, clock_ghz: float | None = None) -> dict[str, Any]:
    """Peak fp32 GFLOP/s of ``cores`` cores (default: the threads torch uses) with its formula and inputs."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    per_cycle, rule = fp32_flops_per_cycle(info.get("vendor_id", ""), int(info.get("cpu family", 0) or 0), flags)
    if clock_ghz is None:
        clock_ghz = float(info.get("cpu MHz", 0) or 0) / 1000 or None
    cores = cores or os.cpu_count() or 1
    peak = cores * per_cycle * clock_ghz if clock_ghz else None
    return {"cpu": info.get("model name", "unknown"), "cores": cores, "clock_ghz": clock_ghz,
            "fp32_flop_per_cycle_per_core": per_cycle, "rule": rule, "peak_gflops": peak,
            "formula": "cores x FMA pipes x fp32 lanes x 2 x clock"}
