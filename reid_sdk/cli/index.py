"""``reid-index``: build a gallery from crops, search it with query images; ingest and match the tracks of
camera videos (see :mod:`reid_sdk.cli.tracks`).

    reid-index build --model model.onnx --images crops/ --out gallery/
    reid-index build --model model.onnx --images Market-1501/ --format market1501 --out milvus-lite:g.db
    reid-index build --model model.onnx --images crops/ --out gallery/ --engine ray --workers 4 --resume
    reid-index search --model model.onnx --gallery gallery/ query.jpg more_queries/ list.csv -k 10 --strip strips/
    reid-index search --gallery gallery/ --track c2:7 --exclude-camera c2 --strip c2_7.png   # stored features
    reid-index ingest --model model.onnx --video c1.avi --tracks c1.txt --camera c1 --gallery gallery/
    reid-index match --model model.onnx --video c2.avi --tracks c2.txt --camera c2 --gallery gallery/ --out m.csv

``--out`` / ``--gallery`` is a directory (FAISS + SQLite), ``milvus-lite:FILE.db`` or ``http://host:19530``.
Identity and camera come from Market-1501 / DukeMTMC-reID file names, a dataset layout, or a CSV with rows
``path,identity,camera[,timestamp]``. Unreadable images are skipped and counted. ``--engine ray`` runs build and
ingest on a Ray cluster (see :mod:`reid_sdk.scale`); ``--resume`` adds only what the gallery lacks.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reid_sdk.cli import engines
from reid_sdk.cli.common import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, add_camera_standardise_option, add_device_option,
                                 add_json_option, add_progress_option, add_subparser, add_top_k_option, print_json,
                                 configure_logging, fail, make_parser)
from reid_sdk.cli.tracks import add_track_commands, check_video_source
from reid_sdk.datasets.market import parse_image_name
from reid_sdk.gallery import Gallery, GalleryConfig, Match
from reid_sdk.gallery.config import INDEX_TYPES
from reid_sdk.search.index import ReIDIndex
from reid_sdk.search.gallery_writer import GalleryTarget, IngestInterrupted
from reid_sdk.search.sources import (FOLDER, FORMATS, csv_records, dataset_records, folder_records, query_images,
                                     search_images)
from reid_sdk.search.stored import entry_matches, parse_track, track_entry
from reid_sdk.search.units import image_units
from reid_sdk.scale.errors import RayJobFailed
from reid_sdk.visualize.matches import entry_crop, render_strip
from reid_sdk.visualize.tiles import write_image

PROG = "reid-index"
STRIP_SUFFIXES = (".png", ".jpg", ".jpeg")


def _extractor(args: argparse.Namespace):
    from reid_sdk.inference.extractor import FeatureExtractor  # the backend: torch or ONNX Runtime, from the file

    return FeatureExtractor(args.model, device=args.device, batch_size=args.batch_size)


def build(args: argparse.Namespace) -> int:
    if args.csv:
        records = csv_records(args.csv, args.images)
    elif args.format == FOLDER:
        records = folder_records(args.images)
    else:
        records = dataset_records(args.images, args.format, args.split)
    config = GalleryConfig(nlist=args.nlist) if args.nlist else None
    target = GalleryTarget(args.out, index_type=args.index, config=config, overwrite=args.overwrite, resume=args.resume)
    try:
        summary = engines.run(args, image_units(records), target, args.progress)
    except IngestInterrupted as stop:
        print(f"{PROG}: interrupted after adding {stop.summary.added} of {len(records)} records: "
              f"{engines.kept_after_stop(target, stop.summary)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print_json({**engines.summary_document(summary), "index": args.index})
        return engines.report_failed_units(PROG, summary)
    skipped = f"; {len(summary.skipped_files)} unreadable images skipped" if summary.skipped_files else ""
    resumed = f"; {summary.already_present} were there already" if args.resume else ""
    print(f"gallery of {summary.entries} entries ({args.index}, {summary.dim}-d, model {summary.model_id}) "
          f"written to {summary.location}{skipped}{resumed}")
    return engines.report_failed_units(PROG, summary)


def label_forms(text: str) -> list[Any]:
    """A label typed on a command line as the gallery may store it: the text, and the int when it is one.

    File names give int cameras (``c2`` -> 2), CSVs text ones ("2"): ``--exclude-camera 2`` means either.
    """
    try:
        return [text, int(text)]
    except ValueError:
        return [text]


def stored_label(text: str, gallery: Any) -> Any:
    """The form of a typed camera the gallery's entries have (the int where it holds that, else the text)."""
    return next((form for form in reversed(label_forms(text)) if gallery.camera_statistics.count(form)), text)


def _strip_paths(strip: Path | None, queries: list[Path]) -> list[Path | None]:
    """Where each query's strip goes: nowhere, the one file named, or ``<n>_<stem>_matches.png`` in a folder."""
    if strip is None:
        return [None] * len(queries)
    if strip.suffix.lower() in STRIP_SUFFIXES:
        if len(queries) > 1:
            raise ValueError(f"--strip {strip} names one image but there are {len(queries)} queries: "
                             "give a folder for their strips")
        return [strip]
    strip.mkdir(parents=True, exist_ok=True)
    return [strip / f"{number:04d}_{query.stem}_matches.png" for number, query in enumerate(queries, start=1)]


def match_document(match: Match) -> dict:
    """``--json``: one match as a JSON-ready mapping."""
    return asdict(match)


def _print_matches(number: int, total: int, query: Path | str, matches: list[Match], as_json: list | None) -> None:
    """Print one query's rank list, or add it to ``as_json`` (``--json``: printed as one document at the end)."""
    if as_json is not None:
        as_json.append({"query": str(query), "matches": [match_document(match) for match in matches]})
        return
    print(f"query {number}/{total}: {query}")
    print(f"{'rank':>4}  {'score':>6}  {'identity':>10}  {'camera':>6}  {'entry':>7}  path")
    for rank, match in enumerate(matches, start=1):
        source = match.metadata.get("path") or (f"track {match.track_id}, {match.metadata.get('video', '')}"
                                                if match.track_id is not None else "")
        print(f"{rank:>4}  {match.score:6.3f}  {match.identity!s:>10}  {match.camera!s:>6}  {match.entry_id:>7}  "
              f"{source}")


def search_stored(args: argparse.Namespace) -> int:
    """``search --track CAMERA:TRACK_ID`` / ``--entry ID``: the entry's stored feature is the query (no model)."""
    with Gallery.open(args.gallery) as gallery:
        entry = args.entry if args.entry is not None else track_entry(gallery, *parse_track(args.track))
        filters = {"exclude_camera": label_forms(args.exclude_camera) if args.exclude_camera is not None else None,
                   "camera_standardise": args.camera_standardise}
        if args.query_camera is not None:
            filters["query_camera"] = stored_label(args.query_camera, gallery)
        row, matches = entry_matches(gallery, entry, k=args.top_k, **filters)
        name = f"entry {entry} (camera {row.camera}, track {row.track_id})" if row.track_id is not None else \
            f"entry {entry} ({row.metadata.get('path', 'no path')})"
        document = [] if args.json else None
        _print_matches(1, 1, name, matches, document)
        if args.strip is not None:
            strip = _strip_paths(args.strip, [Path(f"entry{entry}")])[0]
            write_image(render_strip(entry_crop(row.metadata), matches, row.identity, row.camera), strip)
            if document is None:
                print(f"strip written to {strip}")
    if document is not None:
        print_json({"queries": document})
    return EXIT_OK


def search(args: argparse.Namespace) -> int:
    if args.track is not None or args.entry is not None:
        return search_stored(args)
    queries = query_images(args.queries)
    strips = _strip_paths(args.strip, queries)
    index = ReIDIndex.load(_extractor(args), args.gallery, args.camera_standardise)
    exclude = label_forms(args.exclude_camera) if args.exclude_camera is not None else None
    query_camera = None if args.query_camera is None else stored_label(args.query_camera, index.gallery)
    searched, document = 0, [] if args.json else None
    for result in search_images(index, queries, k=args.top_k, batch_size=args.batch_size, exclude_camera=exclude,
                                query_camera=query_camera):
        searched += 1
        _print_matches(result.position + 1, len(queries), result.path, result.matches, document)
        if strips[result.position] is not None:
            identity, camera = parse_image_name(result.path.name) or (None, None)  # a Market-style name
            write_image(render_strip(result.crop, result.matches, identity, camera), strips[result.position])
    if not searched:
        return fail(PROG, f"none of the {len(queries)} query images could be read")
    if document is not None:
        print_json({"queries": document})
    elif args.strip is not None:
        print(f"strips written to {args.strip}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-index`` argument parser."""
    parser = make_parser(PROG, __doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, help_text in (("build", build, "embed crops into a new gallery"),
                                     ("search", search, "find query crops' best matches in a gallery")):
        sub = add_subparser(commands, name, help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--model", required=name == "build",
                         help="checkpoint (.pt), ONNX model or TensorRT engine" +
                              ("" if name == "build" else " (query images need it; --track / --entry do not)"))
        add_device_option(sub)
        sub.add_argument("--batch-size", type=int, default=64, help="crops per forward pass")
        add_json_option(sub)
    build_parser, search_parser = commands.choices["build"], commands.choices["search"]
    build_parser.add_argument("--images", type=Path, help="folder of crops (any depth) or dataset root (--format)")
    build_parser.add_argument("--format", choices=FORMATS, default=FOLDER,
                              help="folder: crops labelled by Market-1501/Duke names; else a dataset layout")
    build_parser.add_argument("--split", choices=("gallery", "query", "train"), default="gallery",
                              help="split of a dataset layout to embed")
    build_parser.add_argument("--csv", type=Path,
                              help="rows path,identity,camera[,timestamp]; paths relative to --images")
    build_parser.add_argument("--out", required=True,
                              help="gallery directory, milvus-lite:FILE.db or http://host:19530")
    build_parser.add_argument("--overwrite", action="store_true", help="replace a gallery already at --out")
    build_parser.add_argument("--index", choices=INDEX_TYPES, default="flat", help="index type")
    build_parser.add_argument("--nlist", type=int, help="IVF cells (default: from the gallery size)")
    add_progress_option(build_parser)
    engines.add_engine_options(build_parser)
    search_parser.add_argument("queries", nargs="*", type=Path,
                               help="query images, folders of them, or CSVs (path first)")
    search_parser.add_argument("--track", metavar="CAMERA:TRACK_ID",
                               help="search with a track the gallery holds (its stored feature), e.g. c2:7")
    search_parser.add_argument("--entry", type=int, metavar="ID", help="search with the gallery entry of this id")
    search_parser.add_argument("--gallery", required=True, help="gallery directory or Milvus URI")
    add_top_k_option(search_parser, 10, "matches per query")
    search_parser.add_argument("--exclude-camera",
                               help="leave out matches from this camera (a number matches it stored as number or text)")
    search_parser.add_argument("--query-camera",
                               help="the camera that took the queries, whose mean camera standardisation removes "
                                    "(default: the gallery's global mean)")
    add_camera_standardise_option(search_parser)
    search_parser.add_argument("--strip", type=Path,
                               help="write the query and its matches as an image: a .png for one query, else a folder")
    add_track_commands(commands)  # ingest, match: videos and their MOT tracks
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-index``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "build" and not (args.images or args.csv):
        parser.error("build needs --images DIR or --csv FILE")
    if args.command == "build" and args.csv and args.format != FOLDER:
        parser.error("--csv lists the images itself: it does not combine with --format")
    if args.command == "search":
        given = [name for name, value in (("query images", args.queries), ("--track", args.track),
                                          ("--entry", args.entry is not None)) if value]
        if len(given) != 1:
            parser.error(f"search needs one of query images, --track CAMERA:TRACK_ID or --entry ID, got "
                         f"{' and '.join(given) or 'none'}")
        if args.queries and not args.model:
            parser.error("search needs --model to embed query images (--track and --entry use stored features)")
    if args.command in ("ingest", "match"):
        check_video_source(parser, args)
    if args.command in ("build", "ingest"):
        engines.check_engine_options(parser, args)
    configure_logging(args.log_level)
    try:
        return args.handler(args)
    except (ValueError, OSError, ImportError) as error:  # OSError: a full disk, a folder it may not write in, ...
        return fail(PROG, error)
    except RayJobFailed as error:  # a worker's error: the input may be fine, so not exit 2
        return fail(PROG, error, EXIT_FAILED)
    except KeyboardInterrupt:  # where a command has nothing more precise to say (a save is atomic either way)
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
