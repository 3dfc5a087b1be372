"""``reid-adapt SITE --out RUN``: adapt a model to a site without labels, from its camera videos and MOT tracks.

    reid-adapt site/ --out adapted/                        # camera-aware training, cannot-link on
    reid-adapt site/ --out paper/ --set train.loss=repelled --set clustering.camera_centering=false

SITE holds one folder per camera with its video and its tracker's MOT file (or c1.avi + c1.txt pairs, or the
manifest.json reid-synth --layout videos writes); a camera with a video and no MOT file is detected and tracked
first, into RUN/tracks/ (reid-track's offline detector and ByteTrack), so a folder of videos alone works. Steps:
tracklets of every track, the ImageNet start measured on the site, camera-aware training (no labels; two tracks one
camera saw at once are never merged; the paper's method as published with the second line's settings), ONNX export
with parity checked, the adapted model measured: galleries, matches.csv and pictures before/ and after/,
report.json.
Running the same command again resumes: finished steps are skipped, training continues from its last stage;
steps that read a camera whose video or tracks changed since run again (with the steps after them). A finished
run prints its summary again without writing anything (from a read-only copy too).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from reid_sdk._utils.progress import set_default_progress
from reid_sdk.cli.common import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, add_camera_standardise_option, add_device_option,
                                 add_json_option, add_progress_option, add_top_k_option, configure_logging, fail,
                                 make_parser, print_json)
from reid_sdk.gallery.errors import NOT_WRITABLE
from reid_sdk.tracks import FrameQuality
from reid_sdk.tracks.mot import FORMATS

PROG = "reid-adapt"


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-adapt`` argument parser."""
    parser = make_parser(PROG, __doc__)
    parser.add_argument("site", type=Path,
                        help="the site folder: its cameras' videos and MOT tracks files (videos without one are "
                             "tracked here)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (created; an earlier run there resumes)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="change the training run, as reid-train --set (repeatable), e.g. "
                             "model.input_size=[128,64], clustering.cannot_link=false, train.loss=repelled")
    add_device_option(parser)
    parser.add_argument("--seed", type=int, default=0, help="seeds the start and the training")
    parser.add_argument("--min-boxes", type=int, default=3, help="tracks with fewer boxes are left out")
    parser.add_argument("--max-frames", type=int, default=FrameQuality.max_frames, help="crops kept per track")
    parser.add_argument("--min-height", type=int, default=FrameQuality.min_height, help="smallest usable box (px)")
    add_top_k_option(parser, 5, "matches per track in matches.csv")
    parser.add_argument("--threshold", type=float, default=0.5, help="score that counts a track as matched")
    parser.add_argument("--pictures", type=int, default=12, help="tracks drawn per camera in the pictures")
    parser.add_argument("--max-memory", default="4GiB", metavar="SIZE",
                        help="resident memory a CPU training step may use (train.max_memory): steps are "
                             "checkpointed or split to fit, or refused at start-up")
    parser.add_argument("--tracks-format", choices=tuple(FORMATS), default="mot",
                        help="layout of the tracks files: mot (MOTChallenge), boxmot (BoxMOT's --save-txt) or "
                             "ultralytics (yolo track save_txt=True labels folders, named in a manifest.json)")
    parser.add_argument("--person-class", type=int,
                        help="class id of a person in the tracks files (default: mot 1, boxmot and ultralytics 0)")
    parser.add_argument("--int8", action="store_true",
                        help="also write RUN/model_int8.onnx: INT8 calibrated on the site's tracklet crops and "
                             "verified on held-out ones (off by default: minutes more)")
    add_camera_standardise_option(parser)
    add_progress_option(parser)
    add_json_option(parser)  # report.json on stdout instead of the summary
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-adapt``."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, timestamps=True)
    set_default_progress(args.progress)
    try:
        from reid_sdk.adapt.pipeline import ParityFailed, adapt_site
        from reid_sdk.adapt.settings import AdaptSettings
        from reid_sdk.training.stage_sgd import TrainingDiverged
    except ImportError as error:  # the torch-free runtime install
        return fail(PROG, f"adaptation trains a network and needs the training extras "
                          f"(pip install 'reid-sdk[train,cpu]'): {error}")
    try:
        settings = AdaptSettings(overrides=tuple(args.overrides), device=args.device, seed=args.seed,
                                 min_boxes=args.min_boxes, max_frames=args.max_frames, min_height=args.min_height,
                                 top_k=args.top_k, threshold=args.threshold, picture_tracks=args.pictures,
                                 camera_standardise=args.camera_standardise, max_memory=args.max_memory,
                                 tracks_format=args.tracks_format, person_class=args.person_class, int8=args.int8)
        result = adapt_site(args.site, args.out, settings, progress=args.progress != "none")
    except (TrainingDiverged, ParityFailed) as error:
        print(f"{PROG}: stopped: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        if error.errno in NOT_WRITABLE and _inside(error.filename, args.out):
            return fail(PROG, f"cannot write in the run folder {args.out} ({error.strerror}): a finished run "
                              f"prints its summary from it as it is; to resume or change it, copy it somewhere "
                              f"writable and run there")
        return fail(PROG, error)
    except (ValueError, ImportError) as error:  # a bad site, option or run folder; missing weights
        return fail(PROG, error)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume (finished steps are kept)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print_json(json.loads(result.paths.report.read_text()))
    else:
        print("\n".join(result.lines()))
    return EXIT_OK


def _inside(filename: str | None, folder: Path) -> bool:
    """Whether the file an OSError names lies in ``folder`` (or is it)."""
    return filename is not None and Path(filename).resolve().is_relative_to(folder.resolve())


if __name__ == "__main__":
    sys.exit(main())
