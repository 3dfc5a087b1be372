"""reid-adapt's memory and time on a CPU box (issue 38): peak resident memory of one training step per setting, the
memory plan's estimate beside it, and a whole ``reid-adapt`` run on a rendered site.

    PYTHONPATH=. python -m benchmarks.adapt_memory steps            # one step per setting, each in its own process
    PYTHONPATH=. python -m benchmarks.adapt_memory site             # the issue's site: 3 cameras, 40 + 8 walkers,
                                                                    # 900 frames a camera, seed 7 (about 30 min quiet)
    PYTHONPATH=. python -m benchmarks.adapt_memory site --walkers 12 --passers-by 2 --frames 300   # a smaller site
    PYTHONPATH=. python -m benchmarks.adapt_memory scaling --tracks 100 400   # sites of about 100 / 400 / 1,600
                                                                    # tracks (SCALING), shipped defaults
    PYTHONPATH=. python -m benchmarks.adapt_memory summary          # the issue's targets against the rows

Peak resident memory (``ru_maxrss``) does not depend on the machine's load; the seconds do, and on a shared box they
are upper bounds: the JSON records the load average and the CPU next to them. Each run merges its part into
``benchmarks/results/adapt_memory_cpu.json``.
"""

from __future__ import annotations

import argparse
import contextlib
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
#: (name, frames per clip, micro-batch (None: the whole batch), trunk checkpointed, frozen trunk stages, CPU autocast
#: dtype name or None); 16 clips, MobileNetV2 256 x 128.
SETTINGS = (
    ("old default: 16 frames, one pass", 16, None, False, 0, None),
    ("16 frames, trunk checkpointed", 16, None, True, 0, None),
    ("16 frames, micro-batches of 4", 16, 4, False, 0, None),
    ("8 frames, one pass", 8, None, False, 0, None),
    ("8 frames, trunk checkpointed", 8, None, True, 0, None),
    ("8 frames, micro-batches of 8, trunk checkpointed", 8, 8, True, 0, None),
    ("8 frames, stride-8 stage frozen, one pass", 8, None, False, 1, None),
    ("4 frames, one pass", 4, None, False, 0, None),
    ("4 frames, stride-8 stage frozen, one pass", 4, None, False, 1, None),
    ("4 frames, stride-8 stage frozen, one pass, bf16 autocast", 4, None, False, 1, "bfloat16"),
)
SITE = dict(num_cameras=3, walkers=40, passers_by=8, cameras_per_walker=(2, 3), frames=900)
#: The growth benchmark's sites by planned track count: (walkers, passers-by, frames a camera), walkers and frames
#: grown together so the crowd's density stays the issue site's (its 48 people gave 108 tracks).
SCALING = {100: (40, 8, 900), 400: (160, 32, 3600), 1600: (640, 128, 14400)}


def one_step(frames: int, micro_batch: int | None, checkpointed: bool, frozen: int = 0, autocast: str | None = None,
             clips: int = 16) -> dict[str, Any]:
    """One reid-adapt training step (MobileNetV2 256 x 128, camera proxies) in this process: its peak resident
    memory, its seconds (the step after a first, warm-up step), and what the memory plan expects of it."""
    import torch

    from reid_sdk.model import ModelConfig, ReIDNet
    from reid_sdk.training.distributed import Distributed
    from reid_sdk.training.memory import CameraProxyMemory
    from reid_sdk.training.memory_budget import RUN_MARGIN, ActivationCost, measure_activation_cost, plan_step
    from reid_sdk.training.stage_sgd import TrainingPass

    torch.manual_seed(0)
    model = ReIDNet(ModelConfig(backbone="mobilenet_v2", input_size=(256, 128), pretrained=None))
    model = model.to(memory_format=torch.channels_last).train()
    model.freeze_trunk(frozen)
    cost = measure_activation_cost(model)
    model.checkpoint_trunk = checkpointed
    memory = CameraProxyMemory.from_members(torch.randn(clips, model.config.embedding_dim), torch.arange(clips) // 2,
                                            torch.arange(clips) % 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = TrainingPass(model, torch.device("cpu"), None, Distributed(), clips, micro_batch)
    images = torch.randint(0, 256, (clips, frames, 3, 256, 128), dtype=torch.uint8)
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    with torch.autocast("cpu", dtype=getattr(torch, autocast)) if autocast else contextlib.nullcontext():
        step._step(images, memory.sample_targets, memory, optimizer, scaler)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        step._step(images, memory.sample_targets, memory, optimizer, scaler)
        seconds = time.perf_counter() - start
    per_image = cost.checkpointed if checkpointed else cost.full
    # the plan's estimate of this setting: what it adds to the resident memory before the step (its run margin aside)
    unlimited = plan_step(clips, frames, ActivationCost(per_image, per_image), resident, 1 << 62)
    micro = micro_batch or clips
    expected = unlimited.expected_peak - RUN_MARGIN - int(per_image * (clips - micro) * frames)
    return {"frames": frames, "micro_batch": micro, "trunk_checkpointed": checkpointed, "frozen_stages": frozen,
            "autocast": autocast,
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
    for name, frames, micro, checkpointed, frozen, autocast in SETTINGS:
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
                                 str(micro or 0), str(int(checkpointed)), str(frozen), autocast or "none"],
                                capture_output=True, text=True)
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
                            "fp32 unless autocast says; peak_rss is the step's process's ru_maxrss (load-independent); "
                            "step_seconds: the step after a first (warm-up) step, beside the load average when it "
                            "started (rows at a load above 2 shared the 2 cores: upper bounds)", "rows": rows}})


def site(args: argparse.Namespace) -> None:
    """The issue's site (or the one the arguments size) adapted once: its row joins ``sites``."""
    dims = dict(SITE, walkers=args.walkers, passers_by=args.passers_by, frames=args.frames)
    row = run_site(args.seed, dims, args.workdir, args.adapt_args, args.stop_after, args.attach)
    save({"sites": [{"label": args.label, **row}]})


def scaling(args: argparse.Namespace) -> None:
    """Sites of about ``args.tracks`` tracks each (:data:`SCALING`: more walkers over longer videos, the same crowd
    density as the issue's site), adapted with the shipped defaults; each row replaces the file's row of its size."""
    for tracks in args.tracks:
        walkers, passers_by, frames = SCALING[tracks]
        row = {"planned_tracks": tracks, **run_site(args.seed, dict(SITE, walkers=walkers, passers_by=passers_by,
                                                                     frames=frames), args.workdir, args.adapt_args,
                                                    args.stop_after, None)}
        document = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        kept = [each for each in document.get("scaling", []) if each["planned_tracks"] != tracks]
        save({"scaling": sorted([*kept, row], key=lambda each: each["planned_tracks"])})


def run_site(seed: int, dims: dict[str, Any], workdir: Path, adapt_args: list[str], stop_after: float | None,
             attach: int | None) -> dict[str, Any]:
    """Render the site, run ``reid-adapt`` on it in a child process with the shipped defaults (resuming a run an
    earlier call stopped), and return the child's peak resident memory, the seconds per step and rank-1 / mAP before
    and after; with ``stop_after``, what it reached by then."""
    from reid_sdk.synthetic.video import VideoSetConfig, render_videos

    root = workdir / f"site-{seed}-{dims['walkers']}-{dims['passers_by']}-{dims['frames']}"
    if not (root / "manifest.json").is_file():
        render_videos(root, VideoSetConfig(seed=seed, **dims), overwrite=True)
    out = workdir / f"run-{root.name}"
    load_start, start = os.getloadavg(), time.perf_counter()
    if attach:  # a run an earlier call started (its parent gone): VmHWM is the process's lifetime peak
        child = psutil.Process(attach)
    else:
        child = psutil.Popen([sys.executable, "-m", "reid_sdk.cli.adapt", str(root), "--out", str(out), "--seed", "0",
                              *adapt_args])
    peak = 0
    while child.is_running() and child.status() != psutil.STATUS_ZOMBIE:  # read while it runs: a stopped run
        peak = max(peak, _high_water_mark(child.pid))                      # keeps its peak
        if stop_after and time.perf_counter() - start > stop_after:
            child.terminate()
            break
        time.sleep(5)
    if not attach:
        child.wait()
    wall = time.perf_counter() - start
    peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
    row = {"site": {"seed": seed, **dims}, "adapt_args": adapt_args,
           "peak_rss_gib": round(peak / (1 << 30), 2),
           "wall_seconds_this_call": round(wall, 1), "load_average_at_start": load_start,
           "load_average_at_end": os.getloadavg(), "full_issue_site": dims == SITE and seed == 7,
           "finished": (out / "report.json").is_file()}
    if row["finished"]:
        report = json.loads((out / "report.json").read_text())
        row.update(tracks=report["after"].get("tracks"), step_seconds=report["seconds"],
                   total_seconds=round(sum(report["seconds"].values()), 1),
                   rank1_before=report["before"]["rank1"], mAP_before=report["before"]["mAP"],
                   rank1_after=report["after"]["rank1"], mAP_after=report["after"]["mAP"],
                   stages=report["training"].get("stages"), chosen_stage=report["training"].get("best_stage"))
    else:  # stopped: the steps it finished (this call or an earlier one) and how far training went
        seconds = out / "seconds.json"
        row.update(stopped_after_seconds=stop_after,
                   finished_step_seconds=json.loads(seconds.read_text()) if seconds.is_file() else {},
                   finished_training_stages=len(list((out / "train").glob("stages/stage_*.pt"))))
    print(json.dumps(row, indent=1), flush=True)
    return row


def summary() -> None:
    """The issue's targets against the file's finished run of the issue's site with the shipped defaults (no
    measurement): True / False with the figure, or why it was not measured."""
    document = json.loads(RESULTS.read_text())
    shipped = next((row for row in document.get("sites", []) if row.get("full_issue_site") and row["finished"]
                    and row.get("label") == "shipped defaults"), None)
    scaled = {row["planned_tracks"]: row for row in document.get("scaling", []) if row["finished"]}
    if shipped is None:
        targets: dict[str, Any] = {"issue_site": "not measured: no finished run of the issue's site with the "
                                                 "shipped defaults"}
    else:
        targets = {
            "peak_rss_at_most_4_gib": {"met": shipped["peak_rss_gib"] <= 4.0, "gib": shipped["peak_rss_gib"]},
            "adapted_in_at_most_10_min": {"met": shipped["total_seconds"] <= 600,
                                          "minutes": round(shipped["total_seconds"] / 60, 1),
                                          "load_average_at_start": shipped["load_average_at_start"][0]},
            "rank1_after_at_least_0.61": {"met": shipped["rank1_after"] >= 0.61, "rank1": shipped["rank1_after"]},
        }
    targets["scaling_100_400_1600_tracks"] = {
        str(tracks): (f"measured: {scaled[tracks]['tracks']} tracks" if tracks in scaled
                      else "measured: the issue's site (sites[label=shipped defaults])" if tracks == 100 and shipped
                      else "not measured")
        for tracks in SCALING}
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
        frames, micro, checkpointed, frozen = map(int, argv[1:5])
        print(json.dumps(one_step(frames, micro or None, bool(checkpointed), frozen,
                                  None if argv[5] == "none" else argv[5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("steps", "site", "scaling", "summary"))
    parser.add_argument("--seed", type=int, default=7, help="the site's seed (the issue's: 7)")
    parser.add_argument("--walkers", type=int, default=SITE["walkers"])
    parser.add_argument("--passers-by", type=int, default=SITE["passers_by"])
    parser.add_argument("--frames", type=int, default=SITE["frames"], help="frames per camera")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/adapt_memory"))
    parser.add_argument("--attach", type=int, metavar="PID",
                        help="site: follow a reid-adapt process already running on the site instead of starting one")
    parser.add_argument("--settings", nargs="+", choices=[name for name, *_ in SETTINGS], metavar="NAME",
                        help="steps: only these settings (their rows replace the file's)")
    parser.add_argument("--label", default="shipped defaults", help="site: what the row measures (its key in the docs)")
    parser.add_argument("--tracks", type=int, nargs="+", choices=sorted(SCALING), default=sorted(SCALING),
                        help="scaling: the sites to adapt, by planned track count")
    parser.add_argument("--stop-after", type=float, help="stop the run after this many seconds (a shared machine): "
                                                          "its peak so far and finished steps are recorded")
    parser.add_argument("--adapt-args", nargs=argparse.REMAINDER, default=[], help="more reid-adapt arguments")
    args = parser.parse_args(argv)
    if args.what == "steps":
        steps(args.settings)
    elif args.what == "site":
        site(args)
    elif args.what == "scaling":
        scaling(args)
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
