"""``reid-export``: a reid-sdk checkpoint -> ONNX (fp32 / fp16) or a TensorRT engine, optionally verified."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from reid_sdk.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, configure_logging, fail, make_parser
from reid_sdk.datasets.files import image_files, read_image
from reid_sdk.export.verify import Tolerance, verify_parity

PROG = "reid-export"
FORMATS = ("onnx", "onnx-fp16", "tensorrt")
EXIT_VERIFY_FAILED = EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-export`` argument parser."""
    parser = make_parser(PROG, __doc__)
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by reid-train / save_checkpoint")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="artefact to write")
    parser.add_argument("--out", type=Path, required=True, help="output file (.onnx or .engine)")
    parser.add_argument("--batch", default="1:32:256", help="TensorRT batch profile MIN:OPT:MAX")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16", help="TensorRT precision")
    parser.add_argument("--calibration", type=Path, help="folder of crops for INT8 calibration")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version")
    parser.add_argument("--verify", action="store_true", help="compare with torch fp32; exit 1 beyond tolerance")
    parser.add_argument("--verify-images", type=Path,
                        help="folder of real crops for --verify (default: rendered synthetic pedestrians)")
    return parser


def verification_crops(folder: Path | None, count: int = 32) -> list[np.ndarray]:
    """Real crops from ``folder``, or synthetic pedestrians rendered on the fly."""
    if folder is None:
        from reid_sdk.synthetic.layouts import sample_crops

        return sample_crops(count)
    crops = [image for image in map(read_image, image_files(folder, recursive=True)[:count]) if image is not None]
    if not crops:
        raise ValueError(f"no readable images in {folder}")
    return crops


def export(args: argparse.Namespace) -> tuple[Path, str]:
    """Write the requested artefact; returns its path and the precision it runs at."""
    from reid_sdk.export.onnx_export import export_onnx

    if args.format != "tensorrt":
        precision = "fp16" if args.format == "onnx-fp16" else "fp32"
        return export_onnx(args.checkpoint, args.out, precision, args.opset), precision

    from reid_sdk.backends.tensorrt_backend import require_tensorrt
    from reid_sdk.backends.model_contract import ModelMetadata
    from reid_sdk.export.tensorrt_build import build_engine, parse_batch_profile
    from reid_sdk.model import read_checkpoint

    profile = parse_batch_profile(args.batch)
    require_tensorrt()
    onnx_precision = "fp16" if args.precision == "fp16" else "fp32"
    onnx_path = export_onnx(args.checkpoint, args.out.with_suffix(".onnx"), onnx_precision, args.opset)
    metadata = ModelMetadata.from_checkpoint(read_checkpoint(args.checkpoint), args.precision)
    engine = build_engine(onnx_path, args.out, metadata, profile, args.precision, args.calibration)
    return engine, args.precision


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``reid-export``."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        path, precision = export(args)
        print(f"wrote {path} ({args.format}, {precision})")
        if not args.verify:
            return EXIT_OK
        crops = verification_crops(args.verify_images)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        return fail(PROG, exc, EXIT_BAD_INPUT)
    tolerance = Tolerance.for_precision(precision)
    checks = verify_parity(path, args.checkpoint, crops)
    for check in checks:
        print(("ok    " if check.passes(tolerance) else "FAIL  ") + check.describe())
    failed = [check for check in checks if not check.passes(tolerance)]
    if failed:
        print(f"{PROG}: verification failed: {len(failed)} of {len(checks)} checks beyond tolerance "
              f"(min cosine {tolerance.min_cosine}, max |diff| {tolerance.max_abs_diff})", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    print(f"verified: {len(checks)} checks within tolerance")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
