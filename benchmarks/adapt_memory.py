"""reid-adapt's memory and time on a CPU box (issue 38): peak resident memory of one training step per setting, the
memory plan's estimate beside it, and a whole ``reid-adapt`` run on a rendered site.

    PYTHONPATH=. python -m benchmarks.adapt_memory steps            # one step per setting, each in its own process
    PYTHONPATH=. python -m benchmarks.adapt_memory site             # the issue's site: 3 cameras, 40 + 8 walkers,
                                                                    # 900 frames a camera, seed 7 (about 30 min quiet)
    PYTHONPATH=. python -m benchmarks.adapt_memory site --walkers 12 --passers-by 2 --frames 300   # a smaller site
    PYTHONPATH=. python -m benchmarks.adapt_memory summary          # the issue's targets against the rows

Peak resident memory (``ru_maxrss``) does not depend on the machine's load; the seconds do, and on a shared box they
are upper bounds: the JSON records the load average and the CPU next to them. Each run merges its part into
``benchmarks/results/adapt_memory_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import RESULTS_DIR, write_results

RESULTS = RESULTS_DIR / "adapt_memory_cpu.json"
MIB = 1 << 20
#: (name, frames per clip, micro-batch (None: the whole batch), trunk checkpointed); 16 clips, MobileNetV2 256 x 128.
SETTINGS = (
    ("old default: 16 frames, one pass", 16, None, False),
    ("16 frames, trunk checkpointed", 16, None, True),
    ("16 frames, micro-batches of 4", 16, 4, False),
    ("8 frames, one pass", 8, None, False),
    ("8 frames, trunk checkpointed", 8, None, True),
    ("8 frames, micro-batches of 8, trunk checkpointed", 8, 8, True),
)
SITE = dict(num_cameras=3, walkers=40, passers_by=8, cameras_per_walker=(2, 3), frames=900)


def one_step(frames: int, micro_batch: int | None, checkpointed: bool, clips: int = 16) -> dict[str, Any]:
    """One reid-adapt training step (MobileNetV2 256 x 128, camera proxies) in this process: its peak resident
    memory, its seconds, and what the memory plan expects of it."""
    import torch

    from reid_sdk.model import ModelConfig, ReIDNet
    from reid_sdk.training.distributed import Distributed
    from reid_sdk.training.memory import CameraProxyMemory
    from reid_sdk.training.memory_budget import RUN_MARGIN, ActivationCost, measure_activation_cost, plan_step
    from reid_sdk.training.stage_sgd import TrainingPass

    torch.manual_seed(0)
    model = ReIDNet(ModelConfig(backbone="mobilenet_v2", input_size=(256, 128), pretrained=None))
    model = model.to(memory_format=torch.channels_last).train()
    cost = measure_activation_cost(model)
    model.checkpoint_trunk = checkpointed
    memory = CameraProxyMemory.from_members(torch.randn(clips, model.config.embedding_dim), torch.arange(clips) // 2,
                                            torch.arange(clips) % 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = TrainingPass(model, torch.device("cpu"), None, Distributed(), clips, micro_batch)
    images = torch.randint(0, 256, (clips, frames, 3, 256, 128), dtype=torch.uint8)
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    step._step(images, memory.sample_targets, memory, optimizer, torch.amp.GradScaler("cuda", enabled=False))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    per_image = cost.checkpointed if checkpointed else cost.full
    # the plan's estimate of this setting: what it adds to the resident memory before the step (its run margin aside)
    unlimited = plan_step(clips, frames, ActivationCost(per_image, per_image), resident, 1 << 62)
    micro = micro_batch or clips
    expected = unlimited.expected_peak - RUN_MARGIN - int(per_image * (clips - micro) * frames)
    return {"frames": frames, "micro_batch": micro, "trunk_checkpointed": checkpointed,
            "resident_before_step_mib": round(resident / MIB), "peak_rss_mib": round(peak / MIB),
            "step_growth_mib_per_image": round((peak - resident) / MIB / (micro * frames), 1),
            "saved_activations_mib_per_image": round(per_image / MIB, 1),
            "plan_expected_peak_mib_without_margin": round(expected / MIB), "step_seconds": round(seconds, 1)}


def steps(only: list[str] | None = None) -> None:
    """Every setting of :data:`SETTINGS` (or those named in ``only``) in its own process (a fresh ``ru_maxrss``),
    saved after each."""
    import torch

    from reid_sdk.model import ModelConfig, ReIDNet
    from reid_sdk.training.memory_budget import measure_activation_cost

    model = ReIDNet(ModelConfig(backbone="mobilenet_v2", input_size=(256, 128), pretrained=None))
    cost = measure_activation_cost(model.to(memory_format=torch.channels_last))
    rows = []
    for name, frames, micro, checkpointed in SETTINGS:
        if only and name not in only:
            continue
        load, free = os.getloadavg()[0], round(psutil.virtual_memory().available / MIB)
        needs = round((cost.checkpointed if checkpointed else cost.full) * (micro or 16) * frames / MIB) + 1024
        if needs > free:  # it would be killed, and might take other people's processes with it
            rows.append({"setting": name, "frames": frames, "micro_batch": micro or 16,
                         "trunk_checkpointed": checkpointed, "not_run": f"needs about {needs} MiB, "
                         f"{free} MiB available on the shared machine", "load_average_1min": load})
            print(f"{name:52s} not run: {rows[-1]['not_run']}", flush=True)
            _save_steps(rows)
            continue
        output = subprocess.run([sys.executable, "-m", "benchmarks.adapt_memory", "_step", str(frames),
                                 str(micro or 0), str(int(checkpointed))], capture_output=True, text=True)
        if output.returncode != 0:  # -9: the kernel killed it, out of memory on this (shared) machine
            rows.append({"setting": name, "frames": frames, "micro_batch": micro or 16,
                         "trunk_checkpointed": checkpointed, "failed": f"exit {output.returncode}"
                         + (" (SIGKILL: out of memory on the shared machine)" if output.returncode == -9 else ""),
                         "free_memory_mib_before": free, "load_average_1min": load})
            print(f"{name:52s} {rows[-1]['failed']}", flush=True)
            _save_steps(rows)
            continue
        row = {"setting": name, **json.loads(output.stdout.strip().splitlines()[-1]), "free_memory_mib_before": free,
               "load_average_1min": load}
        rows.append(row)
        print(f"{name:52s} peak {row['peak_rss_mib']:6d} MiB (plan {row['plan_expected_peak_mib_without_margin']}), "
              f"{row['step_seconds']} s", flush=True)
        _save_steps(rows)


def _save_steps(rows: list[dict[str, Any]]) -> None:
    """The rows of this call replace the file's rows of the same settings; the others stay (in SETTINGS order)."""
    kept = json.loads(RESULTS.read_text()).get("steps", {}).get("rows", []) if RESULTS.is_file() else []
    merged = {row["setting"]: row for row in [*kept, *rows]}
    rows = [merged[name] for name, *_ in SETTINGS if name in merged]
    save({"steps": {"what": "one training step of 16 clips, MobileNetV2 256 x 128, camera-proxy loss, channels_last, "
                            "fp32; peak_rss is the step's process's ru_maxrss (load-independent); step_seconds were "
                            "measured on a shared machine (upper bounds)", "rows": rows}})


def site(args: argparse.Namespace) -> None:
    """Render the site, run ``reid-adapt`` on it in a child process with the shipped defaults (resuming a run an
    earlier call stopped), and record the child's peak resident memory, the seconds per step and rank-1 / mAP before
    and after; with ``--stop-after``, what it reached by then."""
    from reid_sdk.synthetic.video import VideoSetConfig, render_videos

    dims = dict(SITE, walkers=args.walkers, passers_by=args.passers_by, frames=args.frames)
    root = args.workdir / f"site-{args.seed}-{args.walkers}-{args.passers_by}-{args.frames}"
    if not (root / "manifest.json").is_file():
        render_videos(root, VideoSetConfig(seed=args.seed, **dims), overwrite=True)
    out = args.workdir / f"run-{root.name}"
    load_start, start = os.getloadavg(), time.perf_counter()
    if args.attach:  # a run an earlier call started (its parent gone): VmHWM is the process's lifetime peak
        child = psutil.Process(args.attach)
    else:
        child = psutil.Popen([sys.executable, "-m", "reid_sdk.cli.adapt", str(root), "--out", str(out), "--seed", "0",
                              *args.adapt_args])
    peak = 0
    while child.is_running() and child.status() != psutil.STATUS_ZOMBIE:  # read while it runs: a stopped run
        peak = max(peak, _high_water_mark(child.pid))                      # keeps its peak
        if args.stop_after and time.perf_counter() - start > args.stop_after:
            child.terminate()
            break
        time.sleep(5)
    if not args.attach:
        child.wait()
    wall = time.perf_counter() - start
    peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    row = {"site": {"seed": args.seed, **dims}, "adapt_args": args.adapt_args,
           "peak_rss_gib": round(peak / (1 << 30), 2),
           "wall_seconds_this_call": round(wall, 1), "load_average_at_start": load_start,
           "load_average_at_end": os.getloadavg(), "full_issue_site": dims == SITE and args.seed == 7,
           "finished": (out / "report.json").is_file()}
    if row["finished"]:
        report = json.loads((out / "report.json").read_text())
        row.update(tracks=report["after"].get("tracks"), step_seconds=report["seconds"],
                   rank1_before=report["before"]["rank1"], mAP_before=report["before"]["mAP"],
                   rank1_after=report["after"]["rank1"], mAP_after=report["after"]["mAP"],
                   stages=report["training"].get("stages"), chosen_stage=report["training"].get("best_stage"))
    else:  # stopped: the steps it finished (this call or an earlier one) and how far training went
        seconds = out / "seconds.json"
        row.update(stopped_after_seconds=args.stop_after,
                   finished_step_seconds=json.loads(seconds.read_text()) if seconds.is_file() else {},
                   finished_training_stages=len(list((out / "train").glob("stages/stage_*.pt"))))
    print(json.dumps(row, indent=1), flush=True)
    save({"sites": [row]})


def summary() -> None:
    """The issue's targets against the file's rows of the issue's site (no measurement): each True / False where a
    row measured it, else the reason it was not measured."""
    document = json.loads(RESULTS.read_text())
    full = [row for row in document.get("sites", []) if row.get("full_issue_site")]
    finished = [row for row in full if row["finished"]]
    not_measured = ("not measured: " + "; ".join(
        f"the run was stopped after {row['wall_seconds_this_call']:.0f} s on a shared machine (load "
        f"{row['load_average_at_start'][0]:.1f} at its start) with {row['finished_training_stages']} training "
        f"stage(s) done" for row in full if not row["finished"])
    ) if full else "not measured: no run of the issue's site"
    peaks = [row["peak_rss_gib"] for row in full]
    targets = {
        "peak_rss_at_most_4_gib": (max(peaks) <= 4.0) if peaks else not_measured,
        "peak_rss_note": "a stopped run's peak covers the steps it ran (tracklets, before, the training it reached)",
        "adapted_in_at_most_10_min": (
            f"not measured on 2 quiet cores: {min(sum(row['step_seconds'].values()) for row in finished) / 60:.1f} "
            f"min on the shared machine (an upper bound)") if finished else not_measured,
        "rank1_after_at_least_0.61": (max(row["rank1_after"] for row in finished) >= 0.61) if finished
        else not_measured,
        "scaling_100_400_1600_tracks": "not measured: no time left on the shared machine this round",
    }
    save({"targets": targets})


def _high_water_mark(pid: int) -> int:
    """Peak resident bytes of a running process so far (Linux: VmHWM), 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_step":  # the child process of `steps`
        frames, micro, checkpointed = map(int, argv[1:4])
        print(json.dumps(one_step(frames, micro or None, bool(checkpointed))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("steps", "site", "summary"))
    parser.add_argument("--seed", type=int, default=7, help="the site's seed (the issue's: 7)")
    parser.add_argument("--walkers", type=int, default=SITE["walkers"])
    parser.add_argument("--passers-by", type=int, default=SITE["passers_by"])
    parser.add_argument("--frames", type=int, default=SITE["frames"], help="frames per camera")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/adapt_memory"))
    parser.add_argument("--attach", type=int, metavar="PID",
                        help="site: follow a reid-adapt process already running on the site instead of starting one")
    parser.add_argument("--settings", nargs="+", choices=[name for name, *_ in SETTINGS], metavar="NAME",
                        help="steps: only these settings (their rows replace the file's)")
    parser.add_argument("--stop-after", type=float, help="stop the run after this many seconds (a shared machine): "
                                                          "its peak so far and finished steps are recorded")
    parser.add_argument("--adapt-args", nargs=argparse.REMAINDER, default=[], help="more reid-adapt arguments")
    args = parser.parse_args(argv)
    if args.what == "steps":
        steps(args.settings)
    elif args.what == "site":
        site(args)
    else:
        summary()


def save(part: dict[str, Any]) -> None:
    """Merge ``part`` into the results file, read now (another part may have been written meanwhile)."""
    document = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    document.pop("machine", None)
    sites = document.get("sites", [])
    document.update(part, sites=sites + part.get("sites", []), load_average_at_write=os.getloadavg())
    print(f"wrote {write_results('adapt_memory_cpu', document, RESULTS)}", flush=True)


if __name__ == "__main__":
    main()
