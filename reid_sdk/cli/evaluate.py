"""``reid-eval``: rank-1/5/10, mAP and mINP of a model on a labelled dataset (Market protocol).

Features come from :class:`reid_sdk.inference.extractor.FeatureExtractor`, so any backend it accepts works; a tracklet's
feature is the mean of its frame features (every frame, or ``--max-frames`` evenly spaced ones), L2-normalised.
Images that cannot be decoded are left out of the evaluation and counted. ``--rerank`` scores k-reciprocal
re-ranked distances (Zhong et al. 2017), ``--query-expansion K`` average query expansion over K neighbours, and
``--visualize N`` draws the rank lists of N queries (PNG per query). Beside the plain metrics it reports them on
camera-standardised features (each camera's mean feature removed, shrunk towards the global mean by
``--camera-shrinkage`` features' worth): ``mAP_camstd`` and ``rank1_camstd``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from reid_sdk.cli.common import (EXIT_OK, add_device_option, add_json_option, add_model_option, configure_logging, fail,
                                 make_parser, print_json, require_model)
from reid_sdk.evaluation.camera_standardisation import DEFAULT_SHRINKAGE
from reid_sdk.evaluation.on_dataset import retrieve
from reid_sdk.evaluation.protocol import camera_standardised_summary
from reid_sdk.visualize.rank_lists import write_rank_lists
from reid_sdk.search.reranking import RerankConfig

PROG = "reid-eval"
LABELLED_FORMATS = ("market1501", "dukemtmc", "mars", "dukevideo")


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-eval`` argument parser."""
    parser = make_parser(PROG, __doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="dataset root")
    parser.add_argument("--format", required=True, choices=LABELLED_FORMATS, help="dataset layout")
    add_model_option(parser, "checkpoint (.pt) or exported model (ONNX, OpenVINO, TensorRT)", old_spelling="--checkpoint")
    parser.add_argument("--out", type=Path, help="write the metrics as JSON here")
    add_device_option(parser)
    add_json_option(parser)
    parser.add_argument("--batch-size", type=int, default=64, help="crops per forward pass")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="frames per tracklet, evenly spaced (video; default: every frame, as the paper)")
    ranking = parser.add_argument_group("re-ranking")
    ranking.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking of the distances")
    ranking.add_argument("--k1", type=int, default=RerankConfig.k1, help="re-ranking k1 (k-reciprocal neighbours)")
    ranking.add_argument("--k2", type=int, default=RerankConfig.k2, help="re-ranking k2 (local query expansion)")
    ranking.add_argument("--lambda", dest="lambda_value", type=float, default=RerankConfig.lambda_value,
                         help="re-ranking weight of the original distance")
    ranking.add_argument("--query-expansion", type=int, default=0, metavar="K",
                         help="average query expansion over K gallery neighbours (0: off)")
    parser.add_argument("--camera-shrinkage", type=float, default=DEFAULT_SHRINKAGE, metavar="S",
                        help="camera-standardised metrics: a camera's mean counts S features at the global mean")
    pictures = parser.add_argument_group("rank-list pictures")
    pictures.add_argument("--visualize", type=int, default=0, metavar="N", help="draw the rank lists of N queries")
    pictures.add_argument("--visualize-dir", type=Path, default=Path("ranklists"), help="folder for those PNGs")
    pictures.add_argument("--visualize-k", type=int, default=10, help="gallery entries per rank list")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-eval``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    require_model(parser, args)
    configure_logging(args.log_level)
    if args.max_frames is not None and args.max_frames < 1:
        return fail(PROG, "--max-frames must be >= 1")
    if not args.camera_shrinkage >= 0 or args.camera_shrinkage == float("inf"):
        return fail(PROG, f"--camera-shrinkage must be a finite number >= 0, got {args.camera_shrinkage}")
    from reid_sdk.inference.extractor import FeatureExtractor

    start = time.perf_counter()
    try:
        rerank = RerankConfig(args.k1, args.k2, args.lambda_value) if args.rerank else None
        extractor = FeatureExtractor(args.model, device=args.device, batch_size=args.batch_size)
        retrieval = retrieve(extractor, args.data, args.format, args.max_frames, rerank, args.query_expansion,
                             args.camera_shrinkage)
        if args.visualize:
            pictures = write_rank_lists(retrieval, args.visualize_dir, args.visualize, args.visualize_k)
    except (OSError, ValueError, ImportError) as error:  # ImportError: an engine the model needs is missing
        return fail(PROG, error)
    result, details = retrieval.result, retrieval.details
    metrics = {**result.as_dict(), **camera_standardised_summary(retrieval.standardised)}
    report = {**details, "model": str(args.model), **metrics, "cmc": result.cmc.tolist(),
              "seconds": round(time.perf_counter() - start, 3)}
    if args.json:
        print_json(report)
    else:
        _print_metrics(metrics, result)
        if args.visualize:
            print(f"{len(pictures)} rank lists written to {args.visualize_dir}")
    if args.out is not None:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as error:
            return fail(PROG, f"cannot write the report {args.out}: {error}")
    return EXIT_OK


def _print_metrics(metrics: dict, result) -> None:
    print(" | ".join(f"{name} {metrics[name]:.2%}" for name in ("rank1", "rank5", "rank10", "mAP", "mINP")
                     if name in metrics))
    print(f"camera-standardised: rank1 {metrics['rank1_camstd']:.2%} | mAP {metrics['mAP_camstd']:.2%}")
    print(f"over {result.num_valid_queries} queries; {result.num_skipped_queries} skipped: no true match seen by "
          f"another camera")


if __name__ == "__main__":
    raise SystemExit(main())
