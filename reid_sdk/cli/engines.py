"""What ``reid-index build`` and ``reid-index ingest`` share: where the work runs (``--engine local``, this
process, or ``--engine ray``, a Ray cluster), ``--resume``, and how a run's stop or bad units are reported."""

from __future__ import annotations

from dataclasses import asdict

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from reid_sdk.cli.common import EXIT_BAD_INPUT, EXIT_OK
from reid_sdk.gallery.location import parse_location
from reid_sdk.search.gallery_writer import GalleryTarget, IngestInterrupted, IngestSummary, ingest_units
from reid_sdk.search.units import WorkUnit

ENGINES = ("local", "ray")
_RAY_ONLY = ("address", "workers", "gpus_per_worker")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine``, the Ray options and ``--resume``."""
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: in this process; ray: decode on CPU tasks and extract on an actor pool of a "
                             "Ray cluster (pip install 'reid-sdk[ray]')")
    parser.add_argument("--address", help="Ray cluster to join, e.g. ray://head:10001 or auto (default: start a "
                                          "local one); --engine ray")
    parser.add_argument("--workers", type=int, help="extraction actors, one model each (default 1); --engine ray")
    parser.add_argument("--gpus-per-worker", type=float,
                        help="GPUs each actor reserves (default 0: CPU extraction); --engine ray")
    parser.add_argument("--resume", action="store_true",
                        help="add only what the gallery lacks (the same command again after a stop)")


def check_engine_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse the Ray options without ``--engine ray`` (they would be ignored)."""
    given = [f"--{name.replace('_', '-')}" for name in _RAY_ONLY if getattr(args, name) is not None]
    if given and args.engine != "ray":
        parser.error(f"{', '.join(given)} need --engine ray")


def run(args: argparse.Namespace, units: list[WorkUnit], target: GalleryTarget, progress: str) -> IngestSummary:
    """Run ``units`` into ``target`` on the engine the command line chose; a Ctrl-C is always an
    :class:`IngestInterrupted` saying what was saved (nothing, before the writer started)."""
    try:
        return _run(args, units, target, progress)
    except IngestInterrupted:
        raise
    except KeyboardInterrupt as interrupt:  # opening the model or the gallery, joining Ray: nothing added yet
        raise IngestInterrupted(IngestSummary()) from interrupt


def _run(args: argparse.Namespace, units: list[WorkUnit], target: GalleryTarget, progress: str) -> IngestSummary:
    if args.engine == "ray":
        from reid_sdk.scale import ingest  # Ray is imported only here

        _quiet_ray_data_logs()
        ray_options: dict[str, Any] = {name: getattr(args, name) for name in _RAY_ONLY
                                       if getattr(args, name) is not None}
        return ingest(units, args.model, target, extractor_options={"device": args.device},
                      batch_size=args.batch_size, progress=progress, **ray_options)
    from reid_sdk.inference.extractor import FeatureExtractor  # the backend: torch or ONNX Runtime, from the file

    extractor = FeatureExtractor(args.model, device=args.device, batch_size=args.batch_size)
    return ingest_units(units, extractor, target, args.batch_size, progress)


def _quiet_ray_data_logs() -> None:
    """Ray Data logs each dataset's start and end at INFO: the command reports progress and the result itself."""
    try:
        import ray.data  # noqa: F401 - Ray Data sets its loggers up when imported
    except ImportError:
        return  # reid_sdk.scale.ingest says what to install
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def summary_document(summary: IngestSummary, not_started: Sequence[tuple[str, str]] = ()) -> dict:
    """``--json``: what an ingest did, as one JSON-ready document (failed units and cameras not started included)."""
    return {"location": summary.location, "entries": summary.entries, "dim": summary.dim, "model_id": summary.model_id,
            "added": summary.added, "already_present": summary.already_present, "duplicates": summary.duplicates,
            "crops": summary.crops, "seconds": round(summary.seconds, 3), "skipped_files": summary.skipped_files,
            "videos": [{"video": str(unit.video), "camera": unit.camera, **asdict(report)}
                       for unit, report in summary.videos],
            "failed": [{"unit": name, "reason": reason} for name, reason in [*not_started, *summary.failed]]}


def kept_after_stop(target: GalleryTarget, summary: IngestSummary) -> str:
    """What a stopped run leaves at ``target``: what it saved, and how to add the rest."""
    location = target.location
    if summary.saved:
        return (f"{summary.saved} entries of this run are saved in {location}: run the same command with --resume "
                "to add the rest")
    as_it_was = target.overwrite or parse_location(location).backend == "faiss"  # nothing was written there
    where = "is as it was" if as_it_was else "has none of this run's entries"
    return f"nothing saved, {location} {where}"


def report_failed_units(prog: str, summary: IngestSummary, not_started: Sequence[tuple[str, str]] = ()) -> int:
    """List the units that failed, and ``not_started`` ones (``(name, reason)``: a site's camera skipped for a
    missing file), on stderr; the exit code (2 when any: their input is bad, as for one camera's missing file)."""
    failed = [*not_started, *summary.failed]
    for name, reason in failed:
        print(f"{prog}: {name}: {reason}", file=sys.stderr)
    if failed:
        print(f"{prog}: {len(failed)} of {summary.units + len(not_started)} units failed and were skipped (the others "
              "were added): fix them and run the same command with --resume", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK
