"""The GPU check in one short window: every part under its own time limit, about 8 minutes in all.

Run through ``bash benchmarks/gpu_suite.sh [WHEEL_DIR] [COPY_DIR]`` (it installs the wheels first). Parts, in
priority order (a part that does not fit what is left of the budget is skipped, and says so):

1. ``extract`` (``benchmarks.gpu_extract``): NL-ResNet-50 256 x 128 crops/s at batch 256 and batch-1 latency,
   fp16 and bf16, eager (channels_last), the memory-format A/B, then ``torch.compile`` and CUDA graphs;
2. ``clustering`` (``benchmarks.clustering_speed``): one exact merge stage at N = 12,936 and 100,000 against
   one Gram product, peak memory, whether TF32 would change the merges;
3. ``train`` (``benchmarks.train_steps``): reid-train's SGD step on the paper's network in AMP (bf16, fp16)
   at batch 16 and 64, images/s;
4. ``tests``: ``pytest -m cuda`` (two-stage reid-train with AMP, merge_stage CUDA = CPU, engine parity, FAISS
   GPU threads; each test needing a missing engine skips).

``stages`` (``benchmarks.train_speed``: whole stages of the paper's network on a rendered Market-sized set and
the 19-stage run projected) takes longer than the window allows; it runs only when named in ``--only``.

Each part runs in its own process group and is stopped (group and all) at its limit; the benchmarks rewrite
their JSON after every measurement, so a stopped part keeps what it measured. ``gpu_suite.json`` gathers the
parts' exit codes and times, the modules found, the test counts and every target; it and the parts' files
are copied to ``--copy-to`` after every part. ``--dry-run`` runs the same parts at toy sizes on the CPU, to
check the wiring where no GPU is (in well under a minute).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
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
TOTAL_BUDGET_S = 480  # all parts, stops included: the 15-minute window also holds the machine's start and a rerun
# Reported with their versions: the engines the parts can use, and what the tests and benchmarks import.
MODULES = ("torch", "torchvision", "triton", "onnxruntime", "faiss", "tensorrt", "openvino", "pytest", "scipy",
           "yaml", "cv2")
MIN_STEP_S = 20  # a part is not started with less time than this left
# --dry-run checks the wiring on toy sizes, not the timing: its limits only stop a hung part, so a loaded CPU
# (CI beside other jobs) can never time a part out and fail the check.
DRY_RUN_LIMIT_S = 900
DEFAULT_STEPS = ("extract", "clustering", "train", "tests")


@dataclasses.dataclass(frozen=True)
class Step:
    """One part of the suite: its time limit, its command, the result file it writes (relative to the results
    folder) and the modules it cannot run without (a part missing one is skipped, saying which)."""

    name: str
    budget_s: int
    args: tuple[str, ...]
    output: str
    requires: tuple[str, ...] = ()


def steps(results: Path, dry_run: bool) -> list[Step]:
    """The suite's parts in priority order: full size on CUDA, or toy sizes on the CPU for ``dry_run``."""
    python = (sys.executable,)
    device = "cpu" if dry_run else "cuda"
    tests = Step("tests", 110, (*python, "-m", "pytest", "-p", "no:cacheprovider", "-m", "cuda", "-q", "-rs",
                                "--continue-on-collection-errors", f"--junitxml={results / 'gpu_tests.xml'}",
                                *cuda_test_files()), "gpu_tests.xml", ("pytest",))
    if dry_run:
        return [dataclasses.replace(step, budget_s=DRY_RUN_LIMIT_S) for step in [
            Step("extract", 180, (*python, "-m", "benchmarks.gpu_extract", "--device", "cpu", "--precisions", "fp32",
                                  "--backbone", "resnet18", "--input-size", "64", "32", "--batch-sizes", "2", "1",
                                  "--batches", "2", "--engines", "eager", "eager-nchw", "tensorrt",
                                  "--seconds", "0.02", "--out", str(results / "gpu_extract_cpu.json")),
                 "gpu_extract_cpu.json"),
            Step("clustering", 100, (*python, "-m", "benchmarks.clustering_speed", "--sizes-on-cpu", "--gpu-sizes",
                                     "1500", "--dim", "32", "--repeats", "1", "--out-dir", str(results)),
                 "clustering_speed_cpu_sizes.json"),
            Step("train", 80, (*python, "-m", "benchmarks.train_steps", "--device", "cpu", "--backbone", "resnet18",
                               "--input-size", "64", "32", "--embedding-dim", "32", "--batch-sizes", "2",
                               "--steps", "1", "--warmup", "1", "--rounds", "1",
                               "--out", str(results / "train_steps_cpu.json")), "train_steps_cpu.json"),
            tests,
            Step("stages", 300, (*python, "-m", "benchmarks.train_speed", "--size", "tiny", "--device", device,
                                 "--stages", "1", "--epochs", "1", "--set", "model.input_size=[64, 32]",
                                 "--set", "data.num_workers=0", "--out", str(results / "train_speed_cpu.json")),
                 "train_speed_cpu.json"),
        ]]
    workers = str(max(2, min(12, (os.cpu_count() or 4) - 2)))
    return [
        Step("extract", 180, (*python, "-m", "benchmarks.gpu_extract", "--seconds", "1.5",
                              "--out", str(results / "gpu_extract_cuda.json")), "gpu_extract_cuda.json"),
        Step("clustering", 100, (*python, "-m", "benchmarks.clustering_speed", "--device", "cuda", "--gpu-sizes",
                                 "12936", "100000", "--repeats", "2", "--out-dir", str(results)),
             "clustering_speed_cuda.json"),
        Step("train", 80, (*python, "-m", "benchmarks.train_steps", "--device", "cuda", "--steps", "10",
                           "--rounds", "2", "--out", str(results / "train_steps_cuda.json")), "train_steps_cuda.json"),
        tests,
        Step("stages", 300, (*python, "-m", "benchmarks.train_speed", "--size", "market", "--device", device,
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
    keys = ("targets_met", "best_end_to_end", "batch1_latency_ms", "projected_full_run", "render_seconds",
            "train_gflop_per_image")
    found = {key: document[key] for key in keys if key in document}
    if isinstance(document.get("runs"), dict):  # clustering: seconds, memory and ratio to a Gram product per size
        found["stage_seconds"] = {size: run["best_s"] for size, run in document["runs"].items()}
        found["peak_memory_gb"] = {size: run["peak_memory_gb"] for size, run in document["runs"].items()}
        found["stage_over_gram"] = {size: run.get("stage_over_gram") for size, run in document["runs"].items()}
    if isinstance(document.get("runs"), list):  # extraction: what channels_last buys the network alone
        found["channels_last_speedup"] = {f"{run['precision']} batch {run['batch_size']}": run["channels_last_speedup"]
                                          for run in document["runs"] if "channels_last_speedup" in run}
    if "settings" in document:  # training steps
        found["images_per_s"] = {row["setting"]: row.get("images_per_s") for row in document["settings"]}
    if "stages" in document:
        found["stages"] = document["stages"]
    return found


def module_versions() -> dict[str, str]:
    """Which of MODULES this interpreter imports, and their versions (what the wheels added shows here)."""
    found = {}
    for module in MODULES:
        try:
            found[module] = getattr(__import__(module), "__version__", "installed")
        except Exception as error:  # noqa: BLE001 - a broken build is reported, not fatal
            found[module] = f"not importable: {type(error).__name__}: {error}"
    return found


def missing_modules(step: Step) -> list[str]:
    """The modules ``step`` requires that this interpreter cannot find."""
    return [module for module in step.requires if importlib.util.find_spec(module) is None]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU: checks the wiring")
    parser.add_argument("--results", type=Path, help="folder for the JSON (default benchmarks/results; "
                                                     "a temporary folder for --dry-run)")
    parser.add_argument("--copy-to", type=Path, help="also copy the suite's files here (e.g. $OUT)")
    parser.add_argument("--budget", type=float, help=f"seconds for all parts together (default {TOTAL_BUDGET_S}; "
                                                      "--dry-run: the sum of its parts' limits)")
    parser.add_argument("--only", nargs="+", choices=(*DEFAULT_STEPS, "stages"),
                        help=f"run these parts, in priority order (default: {' '.join(DEFAULT_STEPS)})")
    args = parser.parse_args(argv)

    results = args.results or (Path(tempfile.mkdtemp(prefix="gpu-suite-")) if args.dry_run else RESULTS_DIR)
    results.mkdir(parents=True, exist_ok=True)
    log = results / "gpu_suite.log"
    log.write_text("")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS",
                                                                                     str(os.cpu_count() or 1)),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    if args.dry_run:  # a CI machine is often shared: OpenMP threads spinning at barriers would slow it many times
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    chosen = args.only or DEFAULT_STEPS
    selected = [step for step in steps(results, args.dry_run) if step.name in chosen]
    budget = args.budget or (sum(step.budget_s for step in selected) if args.dry_run else TOTAL_BUDGET_S)
    deadline = time.perf_counter() + budget
    report: dict[str, Any] = {"dry_run": args.dry_run, "budget_s": budget, "modules": module_versions(),
                              "wheels": os.environ.get("REID_GPU_WHEELS", "").split(), "steps": {}}
    path = write_results("gpu_suite", report, results / "gpu_suite.json")
    for step in selected:
        remaining = deadline - time.perf_counter()
        missing = missing_modules(step)
        if remaining < MIN_STEP_S or missing:
            reason = f"needs {', '.join(missing)}" if missing else f"{remaining:.0f} s of the suite's budget left"
            report["steps"][step.name] = {"skipped": reason}
            print(f"gpu_suite: {step.name}: skipped ({reason})", flush=True)
        else:
            status = run_step(step, min(step.budget_s, remaining), log, env)
            report["steps"][step.name] = {**status, "output": step.output}
            print(f"gpu_suite: {step.name}: exit {status['returncode']}"
                  f"{' (time limit)' if status['timed_out'] else ''} after {status['seconds']:.0f} s", flush=True)
            if status["returncode"] != 0:
                print(step_output_tail(log, step), flush=True)
            report[step.name] = junit_counts(results / step.output) if step.name == "tests" else headline(
                results / step.output)
        path = write_results("gpu_suite", report, results / "gpu_suite.json")
        if args.copy_to:  # after every part: a machine taken back mid-run still returns what was done
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
