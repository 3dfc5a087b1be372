"""``reid-index``: build a gallery from a folder of crops, search it with a query image.

    reid-index build --model model.pt --images bounding_box_test/ --out gallery/
    reid-index search --model model.pt --gallery gallery/ query.jpg -k 10 --strip matches.png

Identity and camera come from Market-1501 style names (``0002_c1s1_000451_03.jpg``)
or from a CSV with rows ``path,identity,camera[,timestamp]``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from reid_sdk.datasets.files import image_files, read_image
from reid_sdk.datasets.market import parse_image_name
from reid_sdk.gallery import GalleryConfig
from reid_sdk.gallery.config import INDEX_TYPES
from reid_sdk.index import Match, ReIDIndex

_TILE = (128, 64)  # strip tile (height, width)


def _records_from_names(folder: Path) -> list[tuple[Path, int, int, float | None]]:
    paths = image_files(folder, recursive=True)
    if not paths:
        raise ValueError(f"no images under {folder}")
    records = []
    for path in paths:
        labels = parse_image_name(path.name)
        if labels is None:
            raise ValueError(f"{path.name} is not a Market-1501 style name (PID_cCAM...): pass --csv path,identity,camera")
        records.append((path, *labels, None))
    return records


def _records_from_csv(csv_path: Path, folder: Path | None) -> list[tuple[Path, str, str, float | None]]:
    base = folder or csv_path.parent
    records = []
    with open(csv_path, newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].startswith("#") or (line == 1 and row[0].strip().lower() == "path"):
                continue
            if len(row) not in (3, 4):
                raise ValueError(f"{csv_path}:{line}: expected path,identity,camera[,timestamp], got {row}")
            timestamp = float(row[3]) if len(row) == 4 and row[3].strip() else None
            records.append((base / row[0].strip(), row[1].strip(), row[2].strip(), timestamp))
    if not records:
        raise ValueError(f"{csv_path} lists no images")
    return records


def _read_image(path: Path) -> np.ndarray:
    image = read_image(path)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image


def _extractor(args: argparse.Namespace):
    from reid_sdk.extractor import FeatureExtractor  # the backend picks torch or ONNX Runtime from the model file

    return FeatureExtractor(args.model, device=args.device, batch_size=args.batch_size)


def build(args: argparse.Namespace) -> int:
    records = _records_from_csv(args.csv, args.images) if args.csv else _records_from_names(args.images)
    config = GalleryConfig(nlist=args.nlist) if args.nlist else None
    index = ReIDIndex.create(_extractor(args), index=args.index, config=config)
    for start in range(0, len(records), args.batch_size):
        chunk = records[start : start + args.batch_size]
        index.add([_read_image(path) for path, *_ in chunk], identity=[r[1] for r in chunk],
                  camera=[r[2] for r in chunk], timestamp=[r[3] for r in chunk],
                  metadata=[{"path": str(path.resolve())} for path, *_ in chunk])
        print(f"\r{min(start + args.batch_size, len(records))}/{len(records)} images", end="", file=sys.stderr)
    print(file=sys.stderr)
    index.save(args.out)
    print(f"gallery of {len(index)} entries ({args.index}, {index.gallery.dim}-d) written to {args.out}")
    return 0


def _tile(image: np.ndarray | None, caption: str) -> np.ndarray:
    height, width = _TILE
    tile = np.full((height + 18, width, 3), 255, np.uint8)
    tile[:height] = cv2.resize(image, (width, height)) if image is not None else 160
    cv2.putText(tile, caption, (2, height + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def render_strip(query: np.ndarray, matches: Sequence[Match]) -> np.ndarray:
    """The query then its matches left to right, each captioned with its score and identity (BGR image)."""
    tiles = [_tile(query, "query")]
    for match in matches:
        tiles.append(_tile(read_image(str(match.metadata.get("path", ""))), f"{match.score:.3f} {match.identity}"))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)


def write_image(image: np.ndarray, path: Path) -> None:
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"cannot write {path}")


def search(args: argparse.Namespace) -> int:
    query = _read_image(args.query)
    index = ReIDIndex.load(_extractor(args), args.gallery)
    matches = index.search(query, k=args.k, exclude_camera=args.exclude_camera)
    print(f"{'rank':>4}  {'score':>6}  {'identity':>10}  {'camera':>6}  {'entry':>7}  path")
    for rank, match in enumerate(matches, start=1):
        print(f"{rank:>4}  {match.score:6.3f}  {match.identity!s:>10}  {match.camera!s:>6}  {match.entry_id:>7}  "
              f"{match.metadata.get('path', '')}")
    strip = args.strip or Path(f"{args.query.stem}_matches.png")
    write_image(render_strip(query, matches), strip)
    print(f"strip written to {strip}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reid-index", description="Build and search a re-ID gallery.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, help_text in (("build", build, "embed a folder of crops into a new gallery"),
                                     ("search", search, "find a query crop's best matches in a gallery")):
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--model", required=True, help="checkpoint (.pt) or exported ONNX model")
        sub.add_argument("--device", default="auto")
        sub.add_argument("--batch-size", type=int, default=64)
    build_parser, search_parser = commands.choices["build"], commands.choices["search"]
    build_parser.add_argument("--images", type=Path, help="folder of crops (Market-1501 names unless --csv)")
    build_parser.add_argument("--csv", type=Path, help="rows path,identity,camera[,timestamp]; paths relative to --images")
    build_parser.add_argument("--out", type=Path, required=True, help="gallery directory to write")
    build_parser.add_argument("--index", choices=INDEX_TYPES, default="flat")
    build_parser.add_argument("--nlist", type=int, help="IVF cells (default: from the gallery size)")
    search_parser.add_argument("query", type=Path, help="query crop image")
    search_parser.add_argument("--gallery", type=Path, required=True)
    search_parser.add_argument("-k", type=int, default=10)
    search_parser.add_argument("--exclude-camera", help="leave out matches from this camera")
    search_parser.add_argument("--strip", type=Path, help="PNG of the query and its matches (default QUERY_matches.png)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "build" and not (args.images or args.csv):
        parser.error("build needs --images DIR or --csv FILE")
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as error:
        print(f"reid-index: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
