"""The usual per-split statistics table (identities, images or tracklets, cameras)."""

from __future__ import annotations

import logging

from .records import UNKNOWN_CAMERA, UNKNOWN_PID, DatasetSplits, TrackletRecord

logger = logging.getLogger(__name__)


def split_statistics(records: list) -> dict[str, int]:
    """Known identities, samples, known cameras (and frames for tracklets) of one split."""
    stats = {
        "ids": len({r.pid for r in records} - {UNKNOWN_PID}),
        "samples": len(records),
        "cameras": len({r.camera for r in records} - {UNKNOWN_CAMERA}),
    }
    if records and isinstance(records[0], TrackletRecord):
        stats["frames"] = sum(len(r.frames) for r in records)
    return stats


def statistics_table(splits: DatasetSplits) -> str:
    """A fixed-width table of :func:`split_statistics` for train, query and gallery."""
    unit = "tracklets" if splits.is_video else "images"
    header = f"{'split':<8} | {'ids':>6} | {unit:>9} | {'cameras':>7}"
    if splits.is_video:
        header += f" | {'frames':>8}"
    lines = [f"{splits.name} statistics ({splits.root})", header, "-" * len(header)]
    for name in ("train", "query", "gallery"):
        stats = split_statistics(splits.split(name))
        line = f"{name:<8} | {stats['ids']:>6} | {stats['samples']:>9} | {stats['cameras']:>7}"
        if splits.is_video:
            line += f" | {stats.get('frames', 0):>8}"
        lines.append(line)
    if splits.skipped_files:
        lines.append(f"skipped files: {splits.skipped_files}")
    return "\n".join(lines)


def log_statistics(splits: DatasetSplits) -> None:
    """Log the statistics table at INFO level."""
    logger.info("%s", statistics_table(splits))
