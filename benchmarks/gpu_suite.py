"""The GPU check: the ``cuda`` tests and every GPU benchmark, each under its own time limit, in under 10 minutes.

Run through ``bash benchmarks/gpu_suite.sh [WHEEL_DIR] [COPY_DIR]`` (it installs the wheels first). Steps:

1. ``pytest -m cuda``: two-stage reid-train with AMP, merge_stage CUDA = CPU, engine parity, FAISS GPU threads;
2. ``benchmarks.gpu_extract``: NL-ResNet-50 256 x 128 crops/s per engine, batch-1 latency;
3. ``benchmarks.clustering_speed --device cuda``: one stage at N = 12,936 / 100,000 / 1,000,000, peak memory;
4. ``benchmarks.train_speed``: two one-epoch stages of the paper's network on the Market-sized synthetic set,
   seconds per stage by step, and the whole 19-stage run projected.

Each step runs in its own process group and is stopped (group and all) at its limit; the benchmarks rewrite
their JSON as they go, so a stopped step keeps what it measured. ``gpu_suite.json`` gathers the steps'
exit codes and times, the test counts and every target; it and the steps' files are copied to ``--copy-to``.
``--dry-run`` runs the same steps at toy sizes on the CPU, to check the wiring where no GPU is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, write_results

ROOT = Path(__file__).resolve().parents[1]
TOTAL_BUDGET_S = 540  # all steps, stops included: with the wheels installed, well inside a 600 s command
ENGINE_MODULES = ("onnxruntime", "faiss", "tensorrt")
MIN_STEP_S = 20  # a step is not started with less time than this left
# --dry-run checks the wiring on toy sizes, not the timing: its limits only stop a hung step, so a loaded CPU
# (CI beside other jobs) can never time a step out and fail the check.
DRY_RUN_LIMIT_S = 900


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of the suite, its time limit and the result file it writes (relative to the results folder)."""

    name: str
    budget_s: int
    args: tuple[str, ...]
    output: str


def steps(results: Path, dry_run: bool) -> list[Step]:
    """The suite's commands: full size on CUDA, or toy sizes on the CPU for ``dry_run``."""
    python = (sys.executable,)
    tests = Step("tests", 110, (*python, "-m", "pytest", "-p", "no:cacheprovider", "-m", "cuda", "-q", "-rs",
                                "--continue-on-collection-errors", f"--junitxml={results / 'gpu_tests.xml'}",
                                *cuda_test_files()), "gpu_tests.xml")
    if dry_run:
        return [dataclasses.replace(step, budget_s=DRY_RUN_LIMIT_S) for step in [
            tests,
            Step("extract", 240, (*python, "-m", "benchmarks.gpu_extract", "--device", "cpu", "--precision", "fp32",
                                  "--backbone", "resnet18", "--input-size", "64", "32", "--batch-sizes", "1", "2",
                                  "--batches", "2", "--engines", "eager", "onnxruntime", "--seconds", "0.05",
                                  "--out", str(results / "gpu_extract_cpu.json")), "gpu_extract_cpu.json"),
            Step("clustering", 120, (*python, "-m", "benchmarks.clustering_speed", "--sizes-on-cpu", "--gpu-sizes",
                                     "1500", "--dim", "32", "--repeats", "1", "--out-dir", str(results)),
                 "clustering_speed_cpu_sizes.json"),
            Step("train", 300, (*python, "-m", "benchmarks.train_speed", "--size", "tiny", "--device", "cpu",
                                "--stages", "1", "--epochs", "1", "--set", "model.input_size=[64, 32]",
                                "--set", "data.num_workers=0", "--out", str(results / "train_speed_cpu.json")),
                 "train_speed_cpu.json"),
        ]]
    workers = str(max(2, min(12, (os.cpu_count() or 4) - 2)))
    return [
        tests,
        Step("extract", 150, (*python, "-m", "benchmarks.gpu_extract", "--seconds", "2",
                              "--out", str(results / "gpu_extract_cuda.json")), "gpu_extract_cuda.json"),
        Step("clustering", 150, (*python, "-m", "benchmarks.clustering_speed", "--device", "cuda", "--repeats", "2",
                                 "--out-dir", str(results)), "clustering_speed_cuda.json"),
        Step("train", 130, (*python, "-m", "benchmarks.train_speed", "--size", "market", "--device", "cuda",
                            "--stages", "2", "--epochs", "1", "--set", f"data.num_workers={workers}",
                            "--out", str(results / "train_speed_cuda.json")), "train_speed_cuda.json"),
    ]


def cuda_test_files() -> list[str]:
    """The test files holding ``cuda``-marked tests: collecting only these keeps an engine the suite does not
    need (FAISS, say, on a machine without it) from failing the collection of unrelated files."""
    return [str(path) for path in sorted((ROOT / "tests").glob("test_*.py")) if "mark.cuda" in path.read_text()]


def run_step(step: Step, timeout_s: float, log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``step`` in a new process group, its output appended to ``log``; stop the whole group at the limit."""
    start = time.perf_counter()
    with log.open("a") as handle:
        handle.write(f"\n===== {step.name}: {' '.join(step.args)} (limit {timeout_s:.0f} s)\n")
        handle.flush()
        process = subprocess.Popen(step.args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        timed_out = False
        try:
            process.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(process)
    return {"returncode": process.returncode, "timed_out": timed_out, "seconds": time.perf_counter() - start,
            "limit_s": timeout_s}


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the step's process group (DataLoader workers, compile workers too), SIGKILL what is left after 10 s."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def junit_counts(junit: Path) -> dict[str, Any]:
    """Passed / failed / skipped counts from pytest's JUnit XML, with the failures' and skips' messages."""
    if not junit.is_file():
        return {"report": "missing"}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    notes: dict[str, list[str]] = {"failures": [], "skips": []}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
            continue
        kind = {"failure": "failed", "error": "errors", "skipped": "skipped"}[outcome.tag]
        counts[kind] += 1
        message = (outcome.get("message") or "").splitlines()[0][:300] if outcome.get("message") else ""
        notes["skips" if kind == "skipped" else "failures"].append(f"{name}: {message}")
    return {**counts, **notes}


def headline(path: Path) -> dict[str, Any]:
    """The numbers and targets of one benchmark JSON that the summary repeats."""
    if not path.is_file():
        return {"report": "missing"}
    document = json.loads(path.read_text())
    keys = ("targets_met", "best_end_to_end", "batch1_latency_ms", "projected_full_run", "render_seconds")
    found = {key: document[key] for key in keys if key in document}
    if "runs" in document and isinstance(document["runs"], dict):  # clustering: seconds and memory per size
        found["stage_seconds"] = {size: run["best_s"] for size, run in document["runs"].items()}
        found["peak_memory_gb"] = {size: run["peak_memory_gb"] for size, run in document["runs"].items()}
    if "stages" in document:
        found["stages"] = document["stages"]
    return found


def engine_versions() -> dict[str, str]:
    """Which optional engines this interpreter imports, and their versions (the wheels' effect)."""
    found = {}
    for module in ENGINE_MODULES:
        try:
            found[module] = getattr(__import__(module), "__version__", "installed")
        except Exception as error:  # noqa: BLE001 - a broken build is reported, not fatal
            found[module] = f"not importable: {type(error).__name__}: {error}"
    return found


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU: checks the wiring")
    parser.add_argument("--results", type=Path, help="folder for the JSON (default benchmarks/results; "
                                                     "a temporary folder for --dry-run)")
    parser.add_argument("--copy-to", type=Path, help="also copy the suite's files here (e.g. $OUT)")
    parser.add_argument("--budget", type=float, help=f"seconds for all steps together (default {TOTAL_BUDGET_S}; "
                                                      "--dry-run: the sum of its steps' limits)")
    parser.add_argument("--only", nargs="+", help="run only these steps (tests, extract, clustering, train)")
    args = parser.parse_args(argv)

    results = args.results or (Path(tempfile.mkdtemp(prefix="gpu-suite-")) if args.dry_run else RESULTS_DIR)
    results.mkdir(parents=True, exist_ok=True)
    log = results / "gpu_suite.log"
    log.write_text("")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS",
                                                                                     str(os.cpu_count() or 1)),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    selected = [step for step in steps(results, args.dry_run) if not args.only or step.name in args.only]
    budget = args.budget or (sum(step.budget_s for step in selected) if args.dry_run else TOTAL_BUDGET_S)
    deadline = time.perf_counter() + budget
    report: dict[str, Any] = {"dry_run": args.dry_run, "budget_s": budget, "engines": engine_versions(),
                              "wheels": os.environ.get("REID_GPU_WHEELS", "").split(), "steps": {}}
    path = write_results("gpu_suite", report, results / "gpu_suite.json")
    for step in selected:
        remaining = deadline - time.perf_counter()
        if remaining < MIN_STEP_S:
            report["steps"][step.name] = {"skipped": f"{remaining:.0f} s of the suite's budget left"}
            continue
        status = run_step(step, min(step.budget_s, remaining), log, env)
        report["steps"][step.name] = {**status, "output": step.output}
        print(f"gpu_suite: {step.name}: exit {status['returncode']}{' (time limit)' if status['timed_out'] else ''}"
              f" after {status['seconds']:.0f} s", flush=True)
        if status["returncode"] != 0:
            print(step_output_tail(log, step), flush=True)
        report[step.name] = junit_counts(results / step.output) if step.name == "tests" else headline(
            results / step.output)
        path = write_results("gpu_suite", report, results / "gpu_suite.json")
        if args.copy_to:  # after every step: a machine taken back mid-run still returns what was done
            copy_files(results, args.copy_to, ["gpu_suite.json", "gpu_suite.log", *(s.output for s in selected)])
    print(f"gpu_suite: wrote {path}" + (f", copied to {args.copy_to}" if args.copy_to else ""))
    return path


def copy_files(source: Path, target: Path, names: list[str]) -> None:
    """Copy the named files that exist from ``source`` to ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def step_output_tail(log: Path, step: Step, lines: int = 40) -> str:
    """The last ``lines`` lines that ``step`` wrote to the suite's log."""
    section = log.read_text(errors="replace").rsplit(f"===== {step.name}: ", 1)[-1]
    return "\n".join(section.splitlines()[-lines:])


if __name__ == "__main__":
    main()
