"""``reid-track VIDEOS... --out TRACKS``: detect and track people in videos, one MOTChallenge file per video.

    reid-track cam1.mp4 cam2.mp4 --out tracks/                          # offline: background subtraction
    reid-track recordings/*.mp4 --out tracks/ --detector yolo11n.onnx    # a YOLO-family ONNX detector you bring
    reid-track long.mp4 --out tracks/ --stride 2 --max-side 960          # every 2nd frame, shrunk to 960 px

The default detector needs no download and suits fixed cameras (people are what moves); a YOLO-family ONNX file
(ultralytics' export: yolo export model=yolo11n.pt format=onnx; or --layout yolov5) finds people a background model
cannot (moving cameras, people standing still). ByteTrack (supervision) follows them; rows are
frame,id,left,top,width,height,conf,class,visibility with frames of the original video counted from 1, class 1
(person). The MOT files and the videos make a site for reid-adapt.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reid_sdk.cli.common import (EXIT_INTERRUPTED, EXIT_OK, add_device_option, add_json_option, add_progress_option,
                                 configure_logging, fail, make_parser, print_json)

PROG = "reid-track"


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-track`` argument parser."""
    from reid_sdk.detection.engine import ENGINES
    from reid_sdk.detection.yolo import YOLO_LAYOUTS

    parser = make_parser(PROG, __doc__)
    parser.add_argument("videos", type=Path, nargs="+", help="video files (one MOT file each, named after the video)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the MOT files (created)")
    parser.add_argument("--detector", default="background",
                        help="background (offline, fixed cameras) or the path of a YOLO-family .onnx person detector")
    parser.add_argument("--layout", choices=YOLO_LAYOUTS, default=None,
                        help="the ONNX detector's output layout (default ultralytics): ultralytics = YOLOv8 / YOLO11 "
                             "[N, 4+classes, boxes]; yolov5 = YOLOv5 / YOLOv7 / YOLOX [N, boxes, 5+classes]")
    parser.add_argument("--person-class", type=int, default=None, help="the ONNX detector's person class (COCO: 0)")
    parser.add_argument("--engine", choices=ENGINES, default=None, help="what runs the ONNX detector "
                                                                         "(default onnxruntime)")
    add_device_option(parser, default=None)
    parser.add_argument("--stride", type=int, default=1, help="read every Nth frame (long recordings)")
    parser.add_argument("--max-side", type=int, default=None,
                        help="shrink frames so their longer side is at most this many pixels before detection")
    parser.add_argument("--batch", type=int, default=8, help="frames per detector call")
    add_progress_option(parser)
    add_json_option(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-track``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    from reid_sdk.detection import TrackingOptions, open_detector, track_videos
    from reid_sdk.detection.frames import FrameSampling

    onnx_only = {"layout": args.layout, "person_class": args.person_class, "engine": args.engine,
                 "device": args.device}
    given = {name: value for name, value in onnx_only.items() if value is not None}
    try:
        options = TrackingOptions(sampling=FrameSampling(args.stride, args.max_side), batch=args.batch)
        detector = open_detector(args.detector, **given)
        results = track_videos(args.videos, args.out, detector, options, progress=args.progress)
    except (ValueError, OSError, ImportError) as error:  # a bad video, detector file, option; a missing extra
        return fail(PROG, error)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the MOT files written so far are complete", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print_json([vars(result) for result in results])
    else:
        print("\n".join(result.line() for result in results))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
