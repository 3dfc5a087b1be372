"""``reid-export``: a reid-sdk checkpoint -> ONNX (fp32 / fp16 / INT8 Q/DQ) or a TensorRT engine, optionally verified.

--input float32 writes ONNX that takes ImageNet-normalised float RGB (BoxMOT, DeepStream, Triton) plus the
DeepStream nvinfer config and Triton config.pbtxt beside it.

--verify compares the result with the torch fp32 network crop by crop (cosine, max |diff|) and by retrieval
mAP on a query/gallery set, and exits 1 beyond the tolerances of reid_sdk.export.verify (INT8: uniform-noise
crops reported as "info", not gating; its real crops are held out from the calibration folder when one is given).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from reid_sdk.cli.common import (ALIASES_REMOVED_IN, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, add_json_option,
                                 add_model_option, configure_logging, fail, make_parser, print_json)
from reid_sdk.datasets.files import image_files, read_image
from reid_sdk.export.calibration import DEFAULT_MAX_IMAGES
from reid_sdk.export.formats import DEFAULT_ENGINE_PRECISION, DEFAULT_OPSET, FORMATS, INPUTS, InputContract
from reid_sdk.export.int8_recipe import CALIBRATION_METHODS, FLOAT_GROUPS, Int8Recipe
from reid_sdk.export.tensorrt_build import DEFAULT_BATCH_PROFILE, ENGINE_PRECISIONS, parse_batch_profile
from reid_sdk.export.verify import Tolerance, verify_parity, verify_retrieval

PROG = "reid-export"
EXIT_VERIFY_FAILED = EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-export`` argument parser."""
    parser = make_parser(PROG, __doc__)
    add_model_option(parser, "the checkpoint to export, written by reid-train / save_checkpoint", required=False)
    parser.add_argument("checkpoint", nargs="?", type=Path, help=argparse.SUPPRESS)  # the old positional spelling
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="artefact to write")
    parser.add_argument("--out", type=Path, required=True, help="output file (.onnx or .engine)")
    parser.add_argument("--batch", default=":".join(map(str, DEFAULT_BATCH_PROFILE)),
                        help="TensorRT batch profile MIN:OPT:MAX")
    parser.add_argument("--precision", choices=ENGINE_PRECISIONS,
                        help=f"TensorRT engine precision (default: {DEFAULT_ENGINE_PRECISION}); "
                             "each ONNX format names its own")
    parser.add_argument("--calibration", type=Path,
                        help="folder of real crops for INT8 calibration (default: rendered synthetic pedestrians)")
    parser.add_argument("--calibration-images", type=int, default=DEFAULT_MAX_IMAGES,
                        help="at most this many calibration crops")
    parser.add_argument("--int8-float", metavar="GROUPS",
                        help=f"INT8: layer groups kept float, comma-separated from {', '.join(FLOAT_GROUPS)}, or "
                             "none (default: the backbone's measured recipe, e.g. stride4,last_stage with entropy "
                             "calibration for mobilenet_v2, none for ResNets; the pooling head is always float)")
    parser.add_argument("--calibration-method", choices=CALIBRATION_METHODS,
                        help="INT8 activation calibration (default: the backbone's measured recipe's)")
    parser.add_argument("--input", choices=INPUTS, default="uint8",
                        help="ONNX input: uint8 pixels normalised inside (reid-sdk's own), or float32 RGB normalised "
                             "outside with the ImageNet mean / std (BoxMOT, DeepStream, Triton; their config files "
                             "are written beside the model)")
    parser.add_argument("--fixed-batch", type=int, metavar="N", help="ONNX: fix the batch size at N (default: dynamic)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset version")
    parser.add_argument("--verify", action="store_true", help="compare with torch fp32; exit 1 beyond tolerance")
    parser.add_argument("--verify-images", type=Path,
                        help="folder of real crops for --verify (default: INT8 with --calibration, that folder's "
                             "crops beyond --calibration-images; else rendered synthetic pedestrians)")
    parser.add_argument("--verify-data", type=Path,
                        help="labelled dataset for the mAP check of --verify (default: rendered query/gallery set)")
    parser.add_argument("--verify-format", default="market1501", help="layout of --verify-data")
    parser.add_argument("--verify-backend", choices=("auto", "onnxruntime", "openvino"), default="auto",
                        help="runtime that runs an ONNX file for --verify")
    add_json_option(parser)
    return parser


def checkpoint_given(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """``--model``, or the positional checkpoint of earlier versions (with a deprecation line); exactly one."""
    if args.checkpoint is not None and args.model is not None:
        parser.error("give the checkpoint once, as --model")
    if args.checkpoint is not None:
        print(f"{PROG}: warning: a positional checkpoint is deprecated and goes in reid-sdk {ALIASES_REMOVED_IN}: use "
              f"--model {args.checkpoint}", file=sys.stderr)
        return args.checkpoint
    if args.model is None:
        parser.error("the following arguments are required: --model")
    return args.model


def int8_recipe(args: argparse.Namespace) -> Int8Recipe | None:
    """The recipe --int8-float / --calibration-method ask for (what is not given: the plain default); None when
    neither is given (the backbone's measured recipe)."""
    if args.int8_float is None and args.calibration_method is None:
        return None
    default = Int8Recipe()
    groups = default.keep_float if args.int8_float in (None, "none") else tuple(
        group.strip() for group in args.int8_float.split(",") if group.strip())
    return Int8Recipe(keep_float=groups, calibrate_method=args.calibration_method or default.calibrate_method)


def verification_crops(folder: Path | None, count: int = 32, skip: int = 0) -> list[np.ndarray]:
    """Real crops from ``folder`` after its first ``skip`` (those calibration used), or synthetic pedestrians
    rendered on the fly (``folder`` None, or a calibration folder with no crop left over)."""
    files = [] if folder is None else image_files(folder, recursive=True)
    if folder is None or (skip and len(files) <= skip):
        from reid_sdk.synthetic.layouts import sample_crops

        return sample_crops(count)
    crops = [image for image in map(read_image, files[skip:skip + count]) if image is not None]
    if not crops:
        raise ValueError(f"no readable images in {folder}")
    return crops


def parity_crops(args: argparse.Namespace, precision: str) -> list[np.ndarray]:
    """--verify-images; else for INT8 the calibration folder's crops that calibration did not read (held out),
    else rendered pedestrians."""
    if args.verify_images is None and args.calibration is not None and precision == "int8":
        return verification_crops(args.calibration, skip=args.calibration_images)
    return verification_crops(args.verify_images)


def verify(args: argparse.Namespace, path: Path, precision: str, document: dict | None = None) -> int:
    """Run and print the parity and retrieval checks (or add them to ``document``: ``--json``); the exit code says
    whether all passed."""
    backend = args.verify_backend
    tolerance = Tolerance.for_precision(precision)
    checks = [*verify_parity(path, args.model, parity_crops(args, precision), backend=backend),
              verify_retrieval(path, args.model, args.verify_data, args.verify_format, backend=backend)]
    failed = [check for check in checks if not check.passes(tolerance)]
    if document is not None:
        document["checks"] = [{"check": check.describe(), "passed": check.passes(tolerance),
                               "verdict": check.verdict(tolerance)} for check in checks]
        document["verified"] = not failed
        print_json(document)
        return EXIT_VERIFY_FAILED if failed else EXIT_OK
    for check in checks:
        print(f"{check.verdict(tolerance):<6}{check.describe()}")
    if failed:
        print(f"{PROG}: verification failed: {len(failed)} of {len(checks)} checks beyond tolerance "
              f"(min cosine {tolerance.min_cosine}, max |diff| {tolerance.max_abs_diff}, "
              f"max mAP drop {100 * tolerance.max_map_drop:g} points)", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    print(f"verified: {len(checks)} checks within tolerance")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``reid-export``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.model = checkpoint_given(parser, args)
    configure_logging(args.log_level)
    try:
        if args.format == "tensorrt" and args.verify_backend != "auto":
            raise ValueError(f"--verify-backend {args.verify_backend} is for ONNX files; an engine runs on TensorRT")
        from reid_sdk.export import export_model  # needs torch: a missing one is a one-line error here

        result = export_model(args.model, args.format, args.out, precision=args.precision,
                              calibration=args.calibration, calibration_images=args.calibration_images,
                              opset=args.opset, batch_profile=parse_batch_profile(args.batch),
                              contract=InputContract(args.input, args.fixed_batch), recipe=int8_recipe(args))
        if args.json:
            document = {"path": result.path, "format": result.format, "precision": result.precision,
                        "input": args.input, "configs": list(result.configs)}
            if not args.verify:
                print_json(document)
                return EXIT_OK
            return verify(args, result.path, result.precision, document)
        contract = "" if args.input == "uint8" else ", float32 input normalised outside"
        print(f"wrote {result.path} ({result.format}, {result.precision}{contract})")
        for config in result.configs:
            print(f"wrote {config}")
        return verify(args, result.path, result.precision) if args.verify else EXIT_OK
    except (ValueError, OSError, ImportError) as exc:  # OSError: missing files, no space left, no permission
        return fail(PROG, exc, EXIT_BAD_INPUT)


if __name__ == "__main__":
    sys.exit(main())
