"""``reid-eval``: rank-1/5/10, mAP and mINP of a model on a labelled dataset (Market protocol).

Features come from :class:`reid_sdk.extractor.FeatureExtractor`, so any backend it accepts works; a tracklet's
feature is the mean of its frame features (at most ``--max-frames`` evenly spaced frames), L2-normalised.
Images that cannot be decoded are left out of the evaluation and counted.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from reid_sdk.cli.common import EXIT_OK, configure_logging, fail, make_parser
from reid_sdk.model_evaluation import evaluate_model

PROG = "reid-eval"
LABELLED_FORMATS = ("market1501", "dukemtmc", "mars", "dukevideo")


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-eval`` argument parser."""
    parser = make_parser(PROG, __doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="dataset root")
    parser.add_argument("--format", required=True, choices=LABELLED_FORMATS, help="dataset layout")
    parser.add_argument("--checkpoint", required=True, type=Path, help="model checkpoint (or exported model)")
    parser.add_argument("--out", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=64, help="crops per forward pass")
    parser.add_argument("--max-frames", type=int, default=32, help="frames per tracklet, evenly spaced (video)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-eval``."""
    args = build_parser().parse_args(argv)
    configure_logging()
    if args.max_frames < 1:
        return fail(PROG, "--max-frames must be >= 1")
    from reid_sdk.extractor import FeatureExtractor

    start = time.perf_counter()
    try:
        extractor = FeatureExtractor(args.checkpoint, device=args.device, batch_size=args.batch_size)
        result, details = evaluate_model(extractor, args.data, args.format, args.max_frames)
    except (OSError, ValueError) as error:
        return fail(PROG, error)
    metrics = result.as_dict()
    print(" | ".join(f"{name} {metrics[name]:.2%}" for name in ("rank1", "rank5", "rank10", "mAP", "mINP")
                     if name in metrics))
    if args.out is not None:
        report = {**details, "checkpoint": str(args.checkpoint), **metrics,
                  "cmc": result.cmc.tolist(), "seconds": round(time.perf_counter() - start, 3)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
