"""Label-free model choice against the oracle (the best stage by mAP) and the last stage, over several seeds.

    PYTHONPATH=. python -m benchmarks.label_free_selection                       # seeds 10-14, setting "demo"
    PYTHONPATH=. python -m benchmarks.label_free_selection --setting past-peak --seeds 0 1 2 3 4

Each seed renders a synthetic Market-style set with that seed and runs reid-train (the demo's CPU network and
schedule, every stage of Algorithm 1) with evaluation on, so every stage has both its mAP and its label-free
score; the label-free choice is the stage ``train.select_by=label_free`` keeps (read from the rows, which carry
both). Training sets differ by setting (below); every setting evaluates on 200 test identities (about 500
queries, 1,600 gallery crops) so that the mAP of one stage is not a coin toss between neighbours. Target:
within 1 mAP point of the oracle on average and never below the last stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_results
from reid_sdk.demo.settings import demo_settings
from reid_sdk.synthetic.layouts import generate
from reid_sdk.training.model_choice import model_choice_rule
from reid_sdk.training.trainer import Trainer

#: Training identities among the demo's 600 training images, and what that does to Algorithm 1's schedule
#: (10 % merges per stage, so the last model learns from 120 clusters and the last merge leaves 60).
SETTINGS = {
    "demo": (60, "the demo's set: 10 images per identity; the last model learns from 2 clusters per identity"),
    "dense": (120, "5 images per identity; the last model learns from as many clusters as identities"),
    "past-peak": (200, "3 images per identity; the last two stages learn from fewer clusters than identities"),
}
TEST_IDS, GALLERY_IMAGES = 200, 1600


def run_seed(setting: str, seed: int, workdir: Path) -> dict:
    """Train one seed of ``setting``; the per-stage rows and the three choices."""
    settings = demo_settings("cpu", "cpu")
    sizes = dataclasses.replace(settings.synthetic.sizes, train_ids=SETTINGS[setting][0], test_ids=TEST_IDS,
                                gallery_images=GALLERY_IMAGES)
    data = workdir / f"data-{setting}-{seed}"
    generate("market1501", data, dataclasses.replace(settings.synthetic, seed=seed, sizes=sizes))
    run = settings.run
    config = dataclasses.replace(
        run, data=dataclasses.replace(run.data, root=str(data)),
        clustering=dataclasses.replace(run.clustering, max_stages=None),
        train=dataclasses.replace(run.train, seed=seed, select_by="map", keep_checkpoints=1))
    start = time.perf_counter()
    results = Trainer(config, workdir / f"run-{setting}-{seed}").run()
    oracle = max(results, key=lambda result: result.mAP)
    label_free = model_choice_rule("label_free", has_eval_split=False, cameras_known=True).choose(results)
    return {
        "seed": seed, "seconds": round(time.perf_counter() - start, 1),
        "stages": [{key: getattr(result, key) for key in ("stage", "clusters_after", "mAP", "rank1", "label_free_score",
                                                           "cross_camera_share", "fit_silhouette", "merge_silhouette",
                                                           "pairwise_f")} for result in results],
        "oracle_stage": oracle.stage, "oracle_mAP": oracle.mAP,
        "label_free_stage": label_free.stage, "label_free_mAP": label_free.mAP,
        "last_stage": results[-1].stage, "last_mAP": results[-1].mAP,
    }


def summarise(seeds: list[dict]) -> dict:
    """Means over seeds, the mean gap to the oracle and the worst margin over the last stage (mAP points)."""
    gaps = [s["oracle_mAP"] - s["label_free_mAP"] for s in seeds]
    versus_last = [s["label_free_mAP"] - s["last_mAP"] for s in seeds]
    return {
        "mean_oracle_mAP": statistics.mean(s["oracle_mAP"] for s in seeds),
        "mean_label_free_mAP": statistics.mean(s["label_free_mAP"] for s in seeds),
        "mean_last_mAP": statistics.mean(s["last_mAP"] for s in seeds),
        "mean_gap_to_oracle_points": 100 * statistics.mean(gaps),
        "mean_last_gap_to_oracle_points": 100 * statistics.mean(s["oracle_mAP"] - s["last_mAP"] for s in seeds),
        "worst_label_free_minus_last_points": 100 * min(versus_last),
        "target_met": 100 * statistics.mean(gaps) <= 1.0 and min(versus_last) >= 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="demo")
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    args = parser.parse_args()
    seeds = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in args.seeds:
            seeds.append(run_seed(args.setting, seed, Path(workdir)))
            result = seeds[-1]
            print(f"seed {seed}: oracle stage {result['oracle_stage']} mAP {result['oracle_mAP']:.3f} | label-free "
                  f"stage {result['label_free_stage']} mAP {result['label_free_mAP']:.3f} | last stage "
                  f"{result['last_stage']} mAP {result['last_mAP']:.3f} ({result['seconds']} s)", flush=True)
    summary = summarise(seeds)
    print(summary)
    path = write_results(f"label_free_selection_{args.setting}", {
        "setting": args.setting, "training_set": SETTINGS[args.setting][1],
        "network": "demo cpu: ResNet-18 + non-local at 128 x 64, random init",
        "evaluation": f"{TEST_IDS} test identities, {GALLERY_IMAGES} gallery crops", "seeds": seeds,
        "summary": summary})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
