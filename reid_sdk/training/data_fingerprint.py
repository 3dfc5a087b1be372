"""The training set's fingerprint: every sample's files (relative path, count, bytes, modification time), in order.

A run stores its pseudo-labels per sample index, so ``--resume`` is only sound on the data the run started on:
the same samples, in the same order, with the same files. A run records the fingerprint when it starts and a
resume compares it with the data it finds (a ``stat`` per file: no image is read).
"""

from __future__ import annotations

import os
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from reid_sdk.datasets.records import DatasetSplits, ImageRecord, TrackletRecord

FINGERPRINT_FORMAT = "reid-sdk-data-fingerprint"


@dataclass(frozen=True)
class SampleStamp:
    """One training sample's files: its first file's path relative to the data root, how many files (frames),
    their total size in bytes and the newest modification time (ns; -1 for a file that vanished)."""

    path: str
    files: int
    size: int
    mtime_ns: int

    def describe_change(self, before: SampleStamp) -> str:
        """What changed from ``before`` (the same sample when the run started), for a one-line error."""
        if before.path != self.path:
            return f"sample {before.path} is now {self.path} (labels follow the sample order)"
        if self.size < 0:
            return f"{self.path} (missing)"
        parts = []
        if before.files != self.files:
            parts.append(f"{before.files} -> {self.files} frames")
        if before.size != self.size:
            parts.append(f"size {before.size} -> {self.size}")
        if before.mtime_ns != self.mtime_ns:
            parts.append(f"modified {_clock(before.mtime_ns)} -> {_clock(self.mtime_ns)}")
        return f"{self.path} ({', '.join(parts)})"


@dataclass(frozen=True)
class DataFingerprint:
    """The stamps of a training set's samples, in the loader's order."""

    samples: tuple[SampleStamp, ...]

    @classmethod
    def of(cls, splits: DatasetSplits) -> DataFingerprint:
        """The fingerprint of ``splits.train`` (paths relative to ``splits.root``)."""
        return cls(tuple(_stamp(record, splits.root) for record in splits.train))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FINGERPRINT_FORMAT, "samples": [list(astuple(stamp)) for stamp in self.samples]}

    @classmethod
    def from_dict(cls, data: Any) -> DataFingerprint:
        """Read :meth:`to_dict`'s form; ValueError when ``data`` is not a fingerprint."""
        if not isinstance(data, dict) or data.get("format") != FINGERPRINT_FORMAT:
            raise ValueError(f"not a {FINGERPRINT_FORMAT}")
        try:
            return cls(tuple(SampleStamp(str(path), int(files), int(size), int(mtime))
                             for path, files, size, mtime in data["samples"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"a damaged {FINGERPRINT_FORMAT}: {error}") from error

    def changes_since(self, start: DataFingerprint) -> str | None:
        """How the data differs from ``start`` (its fingerprint when the run started); None when it does not."""
        changed = [(before, now) for before, now in zip(start.samples, self.samples) if before != now]
        example = changed[0][1].describe_change(changed[0][0]) if changed else None
        if len(self.samples) != len(start.samples):
            if example is None:
                extra = self.samples[len(start.samples):] or start.samples[len(self.samples):]
                example = f"{'added' if len(self.samples) > len(start.samples) else 'missing'}: {extra[0].path}"
            return (f"the training set has {len(self.samples)} samples but had {len(start.samples)} when the run "
                    f"started, e.g. {example}")
        if not changed:
            return None
        return f"{len(changed)} training sample(s) changed since the run started, e.g. {example}"


def _stamp(record: ImageRecord | TrackletRecord, root: Path) -> SampleStamp:
    files = record.frames if isinstance(record, TrackletRecord) else (record.path,)
    size, newest = 0, -1
    for file in files:
        try:
            status = os.stat(file)
        except OSError:
            return SampleStamp(_relative(files[0], root), len(files), -1, -1)
        size, newest = size + status.st_size, max(newest, status.st_mtime_ns)
    return SampleStamp(_relative(files[0], root), len(files), size, newest)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _clock(mtime_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime_ns / 1e9))
