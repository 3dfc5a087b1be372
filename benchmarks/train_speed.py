"""Training speed of reid-train on a synthetic Market-style set: images/s and seconds per stage by step.

Each stage's time is split into train / extract / cluster / eval (from the run's
metrics rows). On a GPU, the paper's network on a Market-sized set:

    python -m benchmarks.train_speed --size market --device cuda --stages 3
    python -m benchmarks.train_speed                       # CPU: small set, ResNet-18 at 128 x 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_results
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.training.config import load_config
from reid_sdk.training.trainer import Trainer

CPU_OVERRIDES = ["model.depth=18", "model.input_size=[128, 64]", "model.embedding_dim=256", "train.batch_size=32",
                 "train.first_stage_epochs=1", "train.later_stage_epochs=1", "data.num_workers=2"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(PRESETS), default="small", help="synthetic preset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stages", type=int, default=2, help="stages to run (clustering.max_stages)")
    parser.add_argument("--paper-network", action="store_true",
                        help="NL-ResNet-50 at 256 x 128 with the paper schedule (default on CUDA)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    parser.add_argument("--data", type=Path, help="reuse a rendered dataset instead of rendering one")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/train_speed_<device>.json)")
    args = parser.parse_args(argv)

    paper = args.paper_network or args.device.startswith("cuda")
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or Path(scratch) / "data"
        if args.data is None:
            start = time.perf_counter()
            generate("market1501", data, SyntheticConfig(sizes=PRESETS[args.size]))
            print(f"rendered the {args.size} set in {time.perf_counter() - start:.1f} s")
        overrides = [f"data.root={data}", "data.format=market1501", "model.pretrained=null",
                     f"train.device={args.device}", f"clustering.max_stages={args.stages}"]
        overrides += ([] if paper else CPU_OVERRIDES) + args.overrides
        config = load_config(None, overrides)
        start = time.perf_counter()
        trainer = Trainer(config, Path(scratch) / "run")
        rows = trainer.run()
        total = time.perf_counter() - start
    stages = [{key: row[key] for key in ("stage", "clusters_before", "clusters_after", "train_seconds",
                                         "extract_seconds", "merge_seconds", "eval_seconds", "train_samples_per_s",
                                         "mAP", "rank1") if key in row} for row in rows]
    for row in stages:
        print(f"stage {row['stage']}: {row['train_samples_per_s']:.1f} train images/s; train {row['train_seconds']:.1f} s,"
              f" extract {row['extract_seconds']:.1f} s, cluster {row['merge_seconds']:.2f} s, "
              f"eval {row['eval_seconds']:.1f} s")
    path = write_results(f"train_speed_{trainer.device.type}", {
        "dataset": f"synthetic market1501 '{args.size}' ({len(trainer.splits.train)} training images)",
        "config": config.to_dict(), "total_seconds": total, "stages": stages,
    }, args.out)
    print(f"wrote {path} ({total:.1f} s in all)")


if __name__ == "__main__":
    main()
