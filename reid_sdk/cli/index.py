"""``reid-index``: build a gallery from a folder of crops, search it with a query image; ingest and match the
tracks of camera videos (see :mod:`reid_sdk.cli.tracks`).

    reid-index build --model model.pt --images bounding_box_test/ --out gallery/
    reid-index search --model model.pt --gallery gallery/ query.jpg -k 10 --strip matches.png
    reid-index ingest --model model.onnx --video c1.avi --tracks c1.txt --camera c1 --gallery gallery/
    reid-index match --model model.onnx --video c2.avi --tracks c2.txt --camera c2 --gallery gallery/ --out m.csv

Identity and camera come from Market-1501 style names (``0002_c1s1_000451_03.jpg``)
or from a CSV with rows ``path,identity,camera[,timestamp]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reid_sdk.cli.common import EXIT_OK, add_subparser, configure_logging, fail, make_parser
from reid_sdk.cli.tracks import add_track_commands
from reid_sdk.datasets.market import parse_image_name
from reid_sdk.gallery import GalleryConfig
from reid_sdk.gallery.config import INDEX_TYPES
from reid_sdk.index import ReIDIndex
from reid_sdk.index_build import add_images, read_crop, records_from_csv, records_from_names
from reid_sdk.visualize import render_strip, write_image

PROG = "reid-index"


def _extractor(args: argparse.Namespace):
    from reid_sdk.extractor import FeatureExtractor  # the backend picks torch or ONNX Runtime from the model file

    return FeatureExtractor(args.model, device=args.device, batch_size=args.batch_size)


def build(args: argparse.Namespace) -> int:
    records = records_from_csv(args.csv, args.images) if args.csv else records_from_names(args.images)
    config = GalleryConfig(nlist=args.nlist) if args.nlist else None
    index = ReIDIndex.create(_extractor(args), index=args.index, config=config)
    add_images(index, records, args.batch_size)
    index.save(args.out)
    print(f"gallery of {len(index)} entries ({args.index}, {index.gallery.dim}-d) written to {args.out}")
    return EXIT_OK


def search(args: argparse.Namespace) -> int:
    query = read_crop(args.query)
    index = ReIDIndex.load(_extractor(args), args.gallery)
    matches = index.search(query, k=args.k, exclude_camera=args.exclude_camera)
    print(f"{'rank':>4}  {'score':>6}  {'identity':>10}  {'camera':>6}  {'entry':>7}  path")
    for rank, match in enumerate(matches, start=1):
        print(f"{rank:>4}  {match.score:6.3f}  {match.identity!s:>10}  {match.camera!s:>6}  {match.entry_id:>7}  "
              f"{match.metadata.get('path', '')}")
    strip = args.strip or Path(f"{args.query.stem}_matches.png")
    identity, camera = parse_image_name(args.query.name) or (None, None)  # a Market-style name tells who it is
    write_image(render_strip(query, matches, identity, camera), strip)
    print(f"strip written to {strip}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-index`` argument parser."""
    parser = make_parser(PROG, "Build and search a re-ID gallery.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, help_text in (("build", build, "embed a folder of crops into a new gallery"),
                                     ("search", search, "find a query crop's best matches in a gallery")):
        sub = add_subparser(commands, name, help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--model", required=True, help="checkpoint (.pt) or exported ONNX model")
        sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
        sub.add_argument("--batch-size", type=int, default=64, help="crops per forward pass")
    build_parser, search_parser = commands.choices["build"], commands.choices["search"]
    build_parser.add_argument("--images", type=Path, help="folder of crops (Market-1501 names unless --csv)")
    build_parser.add_argument("--csv", type=Path, help="rows path,identity,camera[,timestamp]; paths relative to --images")
    build_parser.add_argument("--out", type=Path, required=True, help="gallery directory to write")
    build_parser.add_argument("--index", choices=INDEX_TYPES, default="flat", help="FAISS index type")
    build_parser.add_argument("--nlist", type=int, help="IVF cells (default: from the gallery size)")
    search_parser.add_argument("query", type=Path, help="query crop image")
    search_parser.add_argument("--gallery", type=Path, required=True, help="gallery directory")
    search_parser.add_argument("-k", type=int, default=10, help="matches to return")
    search_parser.add_argument("--exclude-camera", help="leave out matches from this camera")
    search_parser.add_argument("--strip", type=Path, help="PNG of the query and its matches (default QUERY_matches.png)")
    add_track_commands(commands)  # ingest, match: videos and their MOT tracks
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-index``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "build" and not (args.images or args.csv):
        parser.error("build needs --images DIR or --csv FILE")
    configure_logging()
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as error:
        return fail(PROG, error)


if __name__ == "__main__":
    sys.exit(main())
