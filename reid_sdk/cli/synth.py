"""``reid-synth``: render a synthetic pedestrian dataset in a real dataset layout (or camera videos).

``--layout videos`` writes a set of camera videos with MOTChallenge ground-truth tracks and track identities
(:mod:`reid_sdk.synthetic.video`); ``--seed`` applies, the image-set options do not.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from reid_sdk.cli.common import EXIT_OK, configure_logging, fail, make_parser
from reid_sdk.synthetic.layouts import PRESETS, WRITERS, SyntheticConfig, generate
from reid_sdk.synthetic.video import VideoSetConfig, render_videos

PROG = "reid-synth"


def _image_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 128x64, got {text!r}") from error
    return height, width


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-synth`` argument parser."""
    parser = make_parser(PROG, __doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("out", type=Path, help="output folder (one sub-folder per layout when several are asked)")
    parser.add_argument("--layout", action="append", choices=[*WRITERS, "all", "videos"],
                        help="layout(s) to write (repeatable; default market1501)")
    parser.add_argument("--size", choices=sorted(PRESETS), default="small", help="size preset")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--image-size", type=_image_size, default=(128, 64), help="crop size HxW")
    parser.add_argument("--train-ids", type=int, help="override the preset's number of train identities")
    parser.add_argument("--test-ids", type=int, help="override the preset's number of test identities")
    parser.add_argument("--workers", type=int, default=None, help="rendering threads (none: min(4, CPUs))")
    parser.add_argument("--overwrite", action="store_true", help="delete what the output folder holds first")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-synth``."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    sizes = PRESETS[args.size]
    overrides = {k: v for k, v in (("train_ids", args.train_ids), ("test_ids", args.test_ids)) if v is not None}
    try:
        config = SyntheticConfig(seed=args.seed, image_size=args.image_size,
                                 sizes=dataclasses.replace(sizes, **overrides))
    except ValueError as error:
        return fail(PROG, error)
    layouts = list(WRITERS) if "all" in (args.layout or []) else (args.layout or ["market1501"])
    for layout in layouts:
        target = args.out / layout if len(layouts) > 1 else args.out
        try:
            if layout == "videos":
                videos = render_videos(target, VideoSetConfig(seed=args.seed), overwrite=args.overwrite)
                count = 3 * len(videos)  # a video, its tracks and its identities per camera
            else:
                count = generate(layout, target, config, workers=args.workers, overwrite=args.overwrite)
        except ValueError as error:
            return fail(PROG, error)
        print(f"{layout}: {count} files in {target}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
