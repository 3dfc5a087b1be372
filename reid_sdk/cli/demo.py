"""``reid-demo [--out DIR] [--device auto|cpu|cuda] [--quick] [--compare]``: the product end to end on synthetic data.

1 render a synthetic Market-style dataset; 2 train the camera-aware variant of the paper's method (camera
proxies + centering) from ImageNet weights, and with ``--compare`` the paper's IMD/CPD method as published from
the same weights; 3 evaluate them and the untrained network in one table; 4 export the camera-aware model to
ONNX and verify parity; 5 build a gallery with the ONNX model and search it; 6 print a summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from reid_sdk.cli.common import EXIT_FAILED, EXIT_OK, add_device_option, configure_logging, fail, make_parser

PROG = "reid-demo"


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-demo`` argument parser."""
    parser = make_parser(PROG, __doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder")
    add_device_option(parser)  # a CUDA device runs the paper's full network on a larger set
    parser.add_argument("--quick", action="store_true", help="tiny data and two stages: every step in seconds")
    parser.add_argument("--compare", action="store_true",
                        help="also train the paper's method as published, side by side (twice the training time)")
    return parser


def _configure_logging(level: str) -> None:
    """Progress from reid_sdk at ``level``. Every step reloads the dataset, so its statistics table is printed
    once by the demo instead of logged at each load."""
    configure_logging(level, timestamps=True)
    logging.getLogger("reid_sdk.datasets.statistics").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-demo``."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    try:
        from reid_sdk.demo.run import prepare_output, run_demo
        from reid_sdk.demo.settings import demo_settings
        from reid_sdk.model.device import resolve_device
    except ImportError as error:  # the torch-free runtime install
        return fail(PROG, f"the demo trains a network and needs the training extras "
                          f"(pip install 'reid-sdk[train]'): {error}")
    try:
        resolved = resolve_device(args.device)
        device = str(resolved)  # cuda:1 trains on that card
        settings = demo_settings("quick" if args.quick else resolved.type, device, compare=args.compare)
        prepare_output(args.out)
    except ValueError as error:
        return fail(PROG, error)
    return EXIT_OK if run_demo(settings, args.out, device) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
