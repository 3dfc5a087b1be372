"""benchmarks/gpu_suite.sh, the one-command GPU check: its wiring runs here at toy sizes on the CPU."""

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from benchmarks.gpu_suite import DRY_RUN_LIMIT_S, Step, run_step

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_suite.sh"


def _probe_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, standing in for onnxruntime-gpu and friends."""
    folder.mkdir(parents=True)
    wheel = folder / "reid_probe-0.1-py3-none-any.whl"
    files = {"reid_probe/__init__.py": "VALUE = 42\n",
             "reid_probe-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: reid-probe\nVersion: 0.1\n",
             "reid_probe-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                               "Tag: py3-none-any\n"}
    record = "".join(f"{name},,\n" for name in files) + "reid_probe-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in {**files, "reid_probe-0.1.dist-info/RECORD": record}.items():
            archive.writestr(name, text)
    return wheel


def test_the_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def _blocked_modules(folder: Path, names: tuple[str, ...]) -> Path:
    """Packages that refuse to import, put first on PYTHONPATH: the GPU machine has no FAISS nor OpenVINO."""
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} is not on this machine')\n")
    return folder


def test_dry_run_installs_the_wheels_runs_every_part_without_faiss_and_copies_the_json(tmp_path):
    _probe_wheel(tmp_path / "wheels")
    blocked = _blocked_modules(tmp_path / "blocked", ("faiss", "openvino", "tensorrt"))
    env = {**os.environ, "PYTHON": sys.executable, "REID_GPU_SITE": str(tmp_path / "site"), "OUT": "",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(blocked), os.environ.get("PYTHONPATH"))))}
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(tmp_path / "wheels"), str(tmp_path / "copy")],
                            capture_output=True, text=True, env=env, timeout=4 * DRY_RUN_LIMIT_S + 300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reid_probe" / "__init__.py").is_file()
    report = json.loads((tmp_path / "copy" / "gpu_suite.json").read_text())
    assert report["dry_run"] and report["wheels"] == ["reid_probe-0.1-py3-none-any.whl"]
    assert report["modules"]["faiss"].startswith("not importable") and report["modules"]["torch"]
    assert list(report["steps"]) == ["extract", "clustering", "train", "tests"]  # priority order
    for name, step in report["steps"].items():
        assert step["returncode"] == 0 and not step["timed_out"], (name, (tmp_path / "copy" / "gpu_suite.log").read_text())
        assert (tmp_path / "copy" / step["output"]).is_file()
    assert report["tests"]["failed"] == report["tests"]["errors"] == 0 and report["tests"]["skipped"] + \
        report["tests"]["passed"] >= 10
    assert report["extract"]["best_end_to_end"]["eager fp32"]["crops_per_s"] > 0
    assert set(report["extract"]["channels_last_speedup"]) == {"fp32 batch 2"}
    extract = json.loads((tmp_path / "copy" / "gpu_extract_cpu.json").read_text())
    assert {run["engine"] for run in extract["runs"] if "skipped" in run} == {"tensorrt"}
    assert set(report["clustering"]["stage_seconds"]) == set(report["clustering"]["stage_over_gram"]) == {"1500"}
    assert list(report["train"]["images_per_s"]) == ["batch 2, fp32, channels_last"]  # reid-train's layout
    assert report["train"]["train_gflop_per_image"] > 0


def test_a_part_missing_a_module_is_skipped_and_named(tmp_path, monkeypatch):
    from benchmarks import gpu_suite

    probe = Step("needs-nothing-here", 5, (sys.executable, "-c", "pass"), "none.json", ("reid_no_such_module",))
    monkeypatch.setattr(gpu_suite, "steps", lambda results, dry_run: [probe])
    monkeypatch.setattr(gpu_suite, "DEFAULT_STEPS", ("needs-nothing-here",))
    report = json.loads(gpu_suite.main(["--dry-run", "--results", str(tmp_path)]).read_text())
    assert report["steps"]["needs-nothing-here"] == {"skipped": "needs reid_no_such_module"}


def test_a_step_past_its_limit_is_stopped_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
            f"time.sleep(120)']); open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(120)")
    start = time.perf_counter()
    status = run_step(Step("sleepy", 8, (sys.executable, "-c", code), "none.json"), 8, tmp_path / "log",
                      dict(os.environ))
    assert status["timed_out"] and status["returncode"] != 0 and time.perf_counter() - start < 60
    child = int(pid_file.read_text())
    deadline = time.perf_counter() + 10
    while Path(f"/proc/{child}").exists() and time.perf_counter() < deadline:
        time.sleep(0.1)  # the grandchild was signalled with its group; wait for the kernel to reap it
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text().lower()
    assert "===== sleepy" in (tmp_path / "log").read_text()
