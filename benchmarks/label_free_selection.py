"""Label-free model choice against the oracle (the best stage by mAP) and the last stage, over several seeds.

    PYTHONPATH=. python -m benchmarks.label_free_selection                  # 5 seeds of the demo's CPU set
    PYTHONPATH=. python -m benchmarks.label_free_selection --seeds 0 1 2 --max-stages 6

Each seed renders the demo's synthetic Market-style set with that seed and runs reid-train (the demo's CPU
network and schedule, every stage of Algorithm 1) with evaluation on, so every stage has both its mAP and
its label-free score. The label-free choice is the stage with the highest label-free score: the JSON
compares its mAP with the oracle's and with the last stage's. Target: within 1 mAP point of the oracle on
average and never below the last stage.
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
from reid_sdk.training.trainer import Trainer


def run_seed(seed: int, max_stages: int | None, workdir: Path) -> dict:
    """Train one seed of the demo's CPU setting; the per-stage rows and the three choices."""
    settings = demo_settings("cpu", "cpu")
    data = workdir / f"data-{seed}"
    generate("market1501", data, dataclasses.replace(settings.synthetic, seed=seed))
    run = settings.run
    config = dataclasses.replace(
        run, data=dataclasses.replace(run.data, root=str(data)),
        clustering=dataclasses.replace(run.clustering, max_stages=max_stages),
        train=dataclasses.replace(run.train, seed=seed, select_by="map", keep_checkpoints=1))
    start = time.perf_counter()
    rows = Trainer(config, workdir / f"run-{seed}").run()
    oracle = max(rows, key=lambda row: row["mAP"])
    label_free = max(rows, key=lambda row: row["label_free_score"])
    return {
        "seed": seed, "seconds": round(time.perf_counter() - start, 1),
        "stages": [{key: row[key] for key in ("stage", "clusters_after", "mAP", "rank1", "label_free_score",
                                               "merge_silhouette", "pairwise_f")} for row in rows],
        "oracle_stage": oracle["stage"], "oracle_mAP": oracle["mAP"],
        "label_free_stage": label_free["stage"], "label_free_mAP": label_free["mAP"],
        "last_stage": rows[-1]["stage"], "last_mAP": rows[-1]["mAP"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--max-stages", type=int, default=None, help="cut Algorithm 1 short (default: all stages)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        seeds = []
        for seed in args.seeds:
            seeds.append(run_seed(seed, args.max_stages, Path(workdir)))
            result = seeds[-1]
            print(f"seed {seed}: oracle stage {result['oracle_stage']} mAP {result['oracle_mAP']:.3f} | label-free "
                  f"stage {result['label_free_stage']} mAP {result['label_free_mAP']:.3f} | last stage "
                  f"{result['last_stage']} mAP {result['last_mAP']:.3f} ({result['seconds']} s)", flush=True)
    gaps = [s["oracle_mAP"] - s["label_free_mAP"] for s in seeds]
    versus_last = [s["label_free_mAP"] - s["last_mAP"] for s in seeds]
    summary = {
        "mean_oracle_mAP": statistics.mean(s["oracle_mAP"] for s in seeds),
        "mean_label_free_mAP": statistics.mean(s["label_free_mAP"] for s in seeds),
        "mean_last_mAP": statistics.mean(s["last_mAP"] for s in seeds),
        "mean_gap_to_oracle_points": 100 * statistics.mean(gaps),
        "worst_label_free_minus_last_points": 100 * min(versus_last),
        "target_met": 100 * statistics.mean(gaps) <= 1.0 and min(versus_last) >= 0.0,
    }
    print(summary)
    path = write_results("label_free_selection", {"setting": "demo cpu (ResNet-18 NL 128x64, random init)",
                                                  "seeds": seeds, "summary": summary})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
