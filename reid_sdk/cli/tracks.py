"""``reid-index ingest`` and ``reid-index match``: a camera's video and its MOTChallenge tracks file in.

    reid-index ingest --model model.onnx --video c1.avi --tracks c1.txt --camera c1 --gallery gallery/
    reid-index match --model model.onnx --video c2.avi --tracks c2.txt --camera c2 --gallery gallery/ \\
                     --out matches.csv --picture matches.png

    reid-index ingest --model model.onnx --site site/ --gallery http://milvus:19530 --engine ray --workers 8 \\
                      --gpus-per-worker 1 --resume
    reid-index match --model model.onnx --site site/ --gallery gallery/ --out matches.csv --picture pictures/

``ingest`` adds one gallery entry per track (its quality-weighted mean feature, camera, first / last time,
track id), creating the gallery when there is none; ``--site`` ingests every camera of a site (see
:mod:`reid_sdk.tracks.site`), ``--resume`` only the tracks the gallery lacks. ``match`` writes, for every
track, its best matches in other cameras scoring at least ``--threshold``; a track without any gets one row with
empty match fields; ``--site`` matches every camera of a site into one CSV (a camera it cannot read is named,
the others are written, and the exit status is 2). ``--tracks-format`` / ``--person-class`` say how the tracks
files are laid out (see :mod:`reid_sdk.tracks.mot`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reid_sdk.cli import engines
from reid_sdk.cli.common import (EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, add_camera_standardise_option, add_device_option,
                                 add_json_option, add_progress_option, add_subparser, add_top_k_option, print_json)
from reid_sdk.gallery.config import INDEX_TYPES
from reid_sdk.search.gallery_writer import GalleryTarget, IngestInterrupted
from reid_sdk.search.index import ReIDIndex, TrackMatches
from reid_sdk.search.units import VideoUnit
from reid_sdk.tracks import FrameQuality, read_track_identities
from reid_sdk.tracks.match_table import MatchedTrack, write_match_table
from reid_sdk.tracks.mot import FORMATS, MotFormat
from reid_sdk.tracks.site import SiteCamera, find_site
from reid_sdk.visualize.matches import render_track_matches
from reid_sdk.visualize.tiles import write_image


def _index(args: argparse.Namespace) -> ReIDIndex:
    from reid_sdk.inference.extractor import FeatureExtractor  # torch or ONNX Runtime, from the model file

    return ReIDIndex.load(FeatureExtractor(args.model, device=args.device, batch_size=args.batch_size), args.gallery,
                          getattr(args, "camera_standardise", None))


def _quality(args: argparse.Namespace) -> FrameQuality:
    return FrameQuality(min_height=args.min_height, max_frames=args.max_frames)


def _tracks_format(args: argparse.Namespace) -> MotFormat:
    return MotFormat(args.tracks_format, args.person_class)


def _start_time(args: argparse.Namespace, camera: SiteCamera) -> float:
    """A site camera's own start time (manifest, or its video's name), else ``--start-time``."""
    return camera.start_time if camera.start_time is not None else args.start_time


def _video_options(args: argparse.Namespace) -> dict:
    return {"fps": args.fps, "start_time": args.start_time, "progress": args.progress != "none",
            "quality": _quality(args)}


def video_units(args: argparse.Namespace) -> tuple[list[VideoUnit], list[tuple[str, str]]]:
    """The videos to ingest: every camera of ``--site``, or the one ``--video`` / ``--tracks`` / ``--camera``; and
    the site's cameras skipped for missing files, as ``(name, reason)`` (reported like a unit that failed)."""
    options = {"fps": args.fps, "start_time": args.start_time, "quality": _quality(args)}
    if args.site is None:
        return [VideoUnit(args.video, args.tracks, args.camera, args.identities, tracks_format=_tracks_format(args),
                          **options)], []
    site = find_site(args.site, _tracks_format(args))
    return ([VideoUnit(camera.video, camera.tracks, camera.name, camera.identities,
                       **{**options, "start_time": _start_time(args, camera)}, tracks_format=camera.tracks_format,
                       track_id_offset=camera.track_id_offset) for camera in site.cameras],
            [(f"camera {name} of {site.root}", reason) for name, reason in site.skipped])


def check_video_source(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """ingest and match read ``--site`` or one ``--video`` / ``--tracks`` / ``--camera``, never both."""
    single = {"--video": args.video, "--tracks": args.tracks, "--camera": args.camera}
    if args.site is not None:
        given = [name for name, value in {**single, "--identities": args.identities}.items() if value is not None]
        if given:
            parser.error(f"--site lists the cameras itself: it does not combine with {', '.join(given)}")
    elif None in single.values():
        parser.error(f"{args.command} needs --site DIR, or {', '.join(single)} of one camera "
                     f"(missing: {', '.join(name for name, value in single.items() if value is None)})")


def ingest(args: argparse.Namespace) -> int:
    target = GalleryTarget(args.gallery, index_type=args.index, append=True, resume=args.resume)
    units, skipped = video_units(args)
    try:
        summary = engines.run(args, units, target, args.progress)
    except IngestInterrupted as stop:
        print(f"reid-index: interrupted after adding {stop.summary.added} entries: "
              f"{engines.kept_after_stop(target, stop.summary)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print_json(engines.summary_document(summary, skipped))
        return engines.report_failed_units("reid-index", summary, skipped)
    lines = [f"{report.used} of {report.tracks} tracks of {unit.video} (camera {unit.camera}) added{report.left_out()}"
             for unit, report in summary.videos]
    holds = f"{summary.location} holds {summary.entries} entries"
    print(f"{lines[0]}; {holds}" if len(lines) == 1 else "\n".join([*lines, holds]))
    return engines.report_failed_units("reid-index", summary, skipped)


def _match_camera(args: argparse.Namespace, index: ReIDIndex, camera: SiteCamera, identities: dict[int, str],
                  picture: Path | None) -> tuple[list[MatchedTrack], str]:
    """One camera's tracks and their matches >= ``--threshold`` in other cameras, and a line saying how many matched;
    its picture written to ``picture`` when given."""
    results = index.search_tracks(camera.video, camera.read_tracks(), camera.name, k=args.top_k, rerank=args.rerank,
                                  **{**_video_options(args), "start_time": _start_time(args, camera)})
    results.sort(key=lambda result: result.track.track_id)
    kept = [TrackMatches(r.track, [m for m in r.matches if m.score >= args.threshold]) for r in results]
    matched = sum(bool(result.matches) for result in kept)
    if picture is not None and kept:
        write_image(render_track_matches(kept, camera.name, identities, args.threshold), picture)
    return ([MatchedTrack.of(camera.name, r.track, identities.get(r.track.track_id), r.matches) for r in kept],
            f"{len(results)} tracks of camera {camera.name}, {matched} with a match >= {args.threshold} in another "
            f"camera")


def match(args: argparse.Namespace) -> int:
    if not -1.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold is a cosine similarity in [-1, 1], got {args.threshold}")
    index = _index(args)
    if args.site is None:
        identities = read_track_identities(args.identities) if args.identities else {}
        camera = SiteCamera(args.camera, args.video, args.tracks, args.identities, _tracks_format(args))
        rows, line = _match_camera(args, index, camera, identities, args.picture)
        write_match_table(args.out, rows)
        if args.json:
            print_json(_match_document(args, rows, [line], []))
            return EXIT_OK
        print(f"{line}; written to {args.out}")
        if args.picture:
            print(f"picture written to {args.picture}")
        return EXIT_OK
    site = find_site(args.site, _tracks_format(args))
    skipped, rows, matched, lines = list(site.skipped), [], set(), []
    if args.picture:
        args.picture.mkdir(parents=True, exist_ok=True)
    for camera in site.cameras:
        name = camera.name if camera.segments == 1 else f"{camera.name}_{camera.segment + 1}"  # one per segment
        try:
            camera_rows, line = _match_camera(args, index, camera, camera.labels(),
                                              args.picture / f"matches_{name}.png" if args.picture else None)
        except (OSError, ValueError) as error:  # this camera's files: the others are still matched
            skipped.append((camera.name if camera.segments == 1 else f"{camera.name}/{camera.video.name}",
                            str(error)))
            continue
        rows, matched = rows + camera_rows, matched | {camera.name}
        lines.append(line if camera.segments == 1 else f"{line} (segment {camera.video.name})")
        if not args.json:
            print(lines[-1])
    if not rows:
        raise ValueError(f"no camera of {site.root} could be matched: "
                         f"{'; '.join(f'{name} ({reason})' for name, reason in skipped)}")
    write_match_table(args.out, rows)
    if args.json:
        print_json(_match_document(args, rows, lines, skipped))
    else:
        print(f"{len(rows)} tracks of {len(matched)} cameras written to {args.out}"
              f"{f'; pictures in {args.picture}' if args.picture else ''}")
    for name, reason in skipped:
        print(f"reid-index: camera {name} skipped: {reason}", file=sys.stderr)
    return EXIT_BAD_INPUT if skipped else EXIT_OK


def _match_document(args: argparse.Namespace, rows: list[MatchedTrack], lines: list[str],
                    skipped: list[tuple[str, str]]) -> dict:
    """``match --json``: the CSV written, each camera's line, the cameras skipped and their reasons."""
    return {"out": str(args.out), "tracks": len(rows), "matched": sum(bool(row.matches) for row in rows),
            "cameras": lines, "skipped": [{"camera": name, "reason": reason} for name, reason in skipped]}


def add_track_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``ingest`` and ``match`` on reid-index's sub-command parser."""
    ingest_parser = add_subparser(commands, "ingest", "add every track of a video (MOT tracks file) to a gallery")
    match_parser = add_subparser(commands, "match", "find each track's best matches in other cameras (CSV)")
    for sub, handler in ((ingest_parser, ingest), (match_parser, match)):
        sub.set_defaults(handler=handler)
        sub.add_argument("--model", required=True, help="checkpoint (.pt) or exported ONNX model")
        sub.add_argument("--video", type=Path, help="the camera's video file (read with OpenCV)")
        sub.add_argument("--tracks", type=Path, help="MOTChallenge tracks file of that video")
        sub.add_argument("--tracks-format", choices=tuple(FORMATS), default="mot",
                         help="layout of the tracks files: mot (MOTChallenge), boxmot (BoxMOT's --save-txt) or "
                              "ultralytics (yolo track save_txt=True: --tracks is its labels folder)")
        sub.add_argument("--person-class", type=int,
                         help="class id of a person in the tracks files' class column (default: mot 1, boxmot and "
                              "ultralytics 0); rows of other classes are left out")
        sub.add_argument("--camera", help="camera name stored with (or excluded from) the matches")
        sub.add_argument("--gallery", required=True,
                         help="gallery directory, milvus-lite:FILE.db or http://host:19530")
        sub.add_argument("--identities", type=Path, help="CSV track_id,identity of tracks whose person is known")
        sub.add_argument("--fps", type=float, help="frame rate when the video does not state it")
        sub.add_argument("--start-time", type=float, default=0.0, help="timestamp (s) of the video's first frame")
        sub.add_argument("--max-frames", type=int, default=FrameQuality.max_frames, help="frames used per track")
        sub.add_argument("--min-height", type=int, default=FrameQuality.min_height, help="smallest usable box (px)")
        add_device_option(sub)
        sub.add_argument("--batch-size", type=int, default=64, help="crops per forward pass")
        add_progress_option(sub, old_no_progress=True)
        add_json_option(sub)
        sub.add_argument("--site", type=Path,
                         help="every camera of a site instead of one --video: one folder per camera, video + MOT "
                              "file pairs (c1.avi + c1.txt) or a manifest.json (reid-synth --layout videos)")
    ingest_parser.add_argument("--index", choices=INDEX_TYPES, default="flat", help="index of a new gallery")
    engines.add_engine_options(ingest_parser)
    match_parser.add_argument("--out", type=Path, required=True, help="CSV of the matches to write")
    add_top_k_option(match_parser, 5, "matches per track")
    match_parser.add_argument("--threshold", type=float, default=0.5, help="smallest cosine score written")
    match_parser.add_argument("--rerank", action="store_true",
                              help="k-reciprocal re-ranking of each track's candidates")
    match_parser.add_argument("--picture", type=Path,
                              help="PNG of each track and its matches (with --site: a folder, one PNG per camera)")
    add_camera_standardise_option(match_parser)
