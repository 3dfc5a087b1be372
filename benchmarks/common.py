"""What every benchmark records next to its numbers: the machine and library versions, and where JSON goes."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """CPU, core count, Python/torch versions and the GPU name when torch sees one."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
    }
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_results(name: str, results: dict[str, Any], path: str | Path | None = None) -> Path:
    """Write ``results`` plus machine info and a timestamp as JSON; returns the file path."""
    target = Path(path) if path else RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": machine_info(), **results}
    target.write_text(json.dumps(document, indent=2) + "\n")
    return target


def timed(
    function: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """Best and median wall seconds of ``repeats`` calls (after ``sync``, so GPU work counts), and CPU seconds."""
    wall, cpu = [], []
    for _ in range(repeats):
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        sync()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"best_s": min(wall), "median_s": statistics.median(wall), "wall_s": wall, "process_cpu_s": cpu}
