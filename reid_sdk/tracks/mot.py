"""Tracker text files: the boxes with track ids a detector + tracker writes, one line per box.

Three layouts are read (:class:`MotFormat`, ``--tracks-format``):

- ``mot`` (MOTChallenge): ``frame, id, left, top, width, height[, conf, class, visibility]``; the class column
  is ``-1`` (unset) in a tracker's output and 1 for a pedestrian in MOT ground truth;
- ``boxmot`` (BoxMOT's ``--save-txt``): ``frame id left top width height conf class det_index`` separated by
  spaces (or commas), classes numbered as COCO's (0 = person); its confidences are written as integers, so they
  say nothing about the box and are kept but never read as a mark;
- ``ultralytics`` (``yolo track ... save_txt=True``): a folder of one label file per frame,
  ``<video>_<frame>.txt`` (frames from 1), each line ``class x_centre y_centre width height [conf] id``
  normalised to the frame (so the video's frame size is needed), COCO classes; a line without an id is a box no
  tracker claimed.

Separators may be commas, spaces or both; a UTF-8 byte-order mark, blank lines and ``#`` comment lines (in any
encoding) are skipped. Frames count from 1; a file holding a frame 0 counts from 0 and is shifted by one.

Rows read but not used, counted in :attr:`MotTracks.left_out` and logged with the first lines they were on:
boxes of another class than ``person_class`` (a multi-class tracker's cars), boxes without a track id (id < 0),
coasting rows (``mot``: confidence 0 or visibility 0, the tracker's predicted position of a person it lost, or
a ground-truth box to ignore; they are in no crop, no span and no cannot-link constraint), and boxes whose
coordinates are not finite or beyond :data:`MAX_COORDINATE`. Anything else malformed, and a frame number
beyond :data:`MAX_FRAME`, raises ValueError naming the file and line.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

#: The largest frame number read: 10**9 frames are over a year at 30 fps; beyond is a corrupt or foreign file.
MAX_FRAME = 10**9
#: The largest |coordinate| or box side read, in pixels: 1000 times an 8K frame's width.
MAX_COORDINATE = 1e7
_SEPARATORS = re.compile(r"\s*,\s*|\s+")
_BOM = b"\xef\xbb\xbf"
_LABEL_FILE = re.compile(r"(.+)_(\d+)\.txt")  # ultralytics: <video stem>_<frame>.txt
_LINES_NAMED = 3  # lines named per reason in the log: enough to find the rows, short enough to read


@dataclass(frozen=True)
class MotFormat:
    """How a tracker's text file is laid out (see the module docstring) and which class is a person.

    Example:
        ```python
        from reid_sdk.tracks.mot import MotFormat

        assert MotFormat("mot").person == 1 and MotFormat("boxmot").person == 0
        assert MotFormat("mot", person_class=2).person == 2
        ```
    """

    name: str = "mot"
    person_class: int | None = None  # None: the layout's own (mot 1, boxmot and ultralytics 0)

    def __post_init__(self) -> None:
        if self.name not in FORMATS:
            raise ValueError(f"unknown tracks format {self.name!r}; expected one of {', '.join(FORMATS)}")

    @property
    def person(self) -> int:
        """The class id of a person in this file."""
        return FORMATS[self.name].person if self.person_class is None else self.person_class

    @property
    def marks_coasting(self) -> bool:
        """Whether confidence / visibility 0 marks a predicted (coasting) row."""
        return FORMATS[self.name].marks_coasting

    @property
    def fields(self) -> str:
        """The layout's columns, for messages."""
        return FORMATS[self.name].fields


@dataclass(frozen=True)
class _Layout:
    """One layout: its columns (for messages), its person class, and whether conf / visibility 0 marks coasting."""

    fields: str
    person: int
    marks_coasting: bool


#: The layouts read. mot and boxmot share their columns (frame, id, left, top, width, height, conf, class, then
#: visibility or BoxMOT's detection index); ultralytics' are its own (see the module docstring).
FORMATS = {"mot": _Layout("frame,id,left,top,width,height[,conf,class,visibility]", 1, True),
           "boxmot": _Layout("frame id left top width height conf class det_index", 0, False),
           "ultralytics": _Layout("class x_centre y_centre width height [conf] id (normalised)", 0, False)}


@dataclass(frozen=True)
class MotTracks:
    """Boxes sorted by (frame, track id): frames (1-based), track ids, boxes as x1, y1, x2, y2 and confidences;
    ``left_out`` counts the rows read but not used, by reason."""

    frames: np.ndarray  # int64 (N,)
    track_ids: np.ndarray  # int64 (N,)
    boxes: np.ndarray  # float64 (N, 4) x1, y1, x2, y2
    confidences: np.ndarray  # float64 (N,); 1.0 where the file has none
    source: str = "tracks"
    left_out: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def with_id_offset(self, offset: int) -> MotTracks:
        """The same boxes with ``offset`` added to every track id (a camera's later segment: ids of its own)."""
        return replace(self, track_ids=self.track_ids + offset) if offset else self

    def tracks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(track id, row indices in frame order) for every track, by increasing id."""
        order = np.lexsort((self.frames, self.track_ids))
        ids, starts = np.unique(self.track_ids[order], return_index=True)
        for track_id, rows in zip(ids, np.split(order, starts[1:])):
            yield int(track_id), rows


def _number(text: str, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} is {text.strip()}")
    return value


def _integer(text: str, name: str, where: str, limit: int = 2**62) -> int:
    value = _number(text, name, where)
    if abs(value) > limit:
        raise ValueError(f"{where}: {name} {text.strip()} is beyond {limit:.0e}: not a tracker's {name}")
    if value != int(value):
        raise ValueError(f"{where}: {name} {text.strip()!r} is not a whole number")
    return int(value)


def _checked_box(left: float, top: float, width: float, height: float,
                 where: str) -> tuple[float, float, float, float] | None:
    """The box, or None when a value is not finite or beyond MAX_COORDINATE (a skipped row); ValueError for an
    empty one."""
    if not all(math.isfinite(value) and abs(value) <= MAX_COORDINATE for value in (left, top, width, height)):
        return None
    if width <= 0 or height <= 0:
        raise ValueError(f"{where}: box width and height must be > 0, got {width:g} x {height:g}")
    return left, top, width, height


def _floats(texts: list[str], names: tuple[str, ...], where: str) -> list[float]:
    """Numbers that may be non-finite (a box's: skipped, not an error); ValueError for text that is no number."""
    values = []
    for text, name in zip(texts, names):
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"{where}: {name} {text.strip()!r} is not a number") from None
    return values


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the data lines: BOM, blank and ``#`` comment lines (any encoding) skipped."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
            raw = raw.strip()
            if not raw or raw.startswith(b"#"):
                continue
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"{path}:{number}: not text (a MOT row is numbers; comment lines start with #)") \
                    from None


class _Row(NamedTuple):
    """One box as a layout gives it: where it was read (for messages), its frame, track id (< 0: none), box
    (left, top, width, height; None: not finite or absurd), confidence, and class and visibility when given."""

    where: str
    line: str
    frame: int
    track: int
    box: tuple[float, float, float, float] | None
    confidence: float
    cls: float | None
    visibility: float | None


def _mot_rows(path: Path, tracks_format: MotFormat) -> Iterator[_Row]:
    """The rows of a ``mot`` or ``boxmot`` file."""
    for line, text in _lines(path):
        fields = _SEPARATORS.split(text)
        where = f"{path}:{line}"
        if len(fields) < 6:
            raise ValueError(f"{where}: expected at least 6 fields {tracks_format.fields}, got {fields}")
        frame = _integer(fields[0], "frame", where, MAX_FRAME)
        if frame < 0:
            raise ValueError(f"{where}: frame {frame}: frames count from 1 (MOTChallenge) or from 0")
        track = _integer(fields[1], "id", where)
        box = _checked_box(*_floats(fields[2:6], ("left", "top", "width", "height"), where), where)
        extra = [_number(text, name, where) for text, name in zip(fields[6:9], ("conf", "class", "visibility"))]
        yield _Row(where, str(line), frame, track, box, extra[0] if extra else 1.0,
                   extra[1] if len(extra) > 1 else None, extra[2] if len(extra) > 2 else None)


def _ultralytics_rows(folder: Path, frame_size: tuple[int, int] | None) -> Iterator[_Row]:
    """The rows of ultralytics' per-frame label files ``<video>_<frame>.txt`` (frames from 1), each line ``class
    x_centre y_centre width height [conf] [id]`` normalised to the frame."""
    if frame_size is None:
        raise ValueError(f"{folder}: ultralytics labels are normalised to the frame: the video's frame size is needed")
    height, width = frame_size
    files = [(path, _LABEL_FILE.fullmatch(path.name)) for path in sorted(folder.iterdir()) if path.suffix == ".txt"]
    files = [(path, found) for path, found in files if found]
    videos = sorted({found[1] for _, found in files})
    if not files:
        raise ValueError(f"{folder} holds no ultralytics label files <video>_<frame>.txt "
                         f"(yolo track ... save_txt=True)")
    if len(videos) > 1:
        raise ValueError(f"{folder} holds the labels of {len(videos)} videos ({', '.join(videos)}): give one video's "
                         f"labels folder")
    for path, found in files:
        frame = _integer(found[2], "frame", str(path), MAX_FRAME)
        for line, text in _lines(path):
            fields, where = text.split(), f"{path}:{line}"
            if len(fields) not in (5, 6, 7):
                raise ValueError(f"{where}: expected {FORMATS['ultralytics'].fields}, got {fields}")
            cls = _number(fields[0], "class", where)
            centre_x, centre_y, box_width, box_height = _floats(fields[1:5], ("x", "y", "width", "height"), where)
            box = _checked_box((centre_x - box_width / 2) * width, (centre_y - box_height / 2) * height,
                               box_width * width, box_height * height, where)
            track = _integer(fields[-1], "id", where) if len(fields) > 5 else -1
            confidence = _number(fields[5], "conf", where) if len(fields) == 7 else 1.0
            yield _Row(where, f"{path.name}:{line}", frame, track, box, confidence, cls, None)


class _LeftOut:
    """Rows read but not used: counts and the first lines, by reason."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}

    def add(self, reason: str, line: str) -> None:
        self.lines.setdefault(reason, []).append(line)

    def counts(self) -> dict[str, int]:
        return {reason: len(lines) for reason, lines in self.lines.items()}

    def log(self, path: Path) -> None:
        for reason, lines in self.lines.items():
            named = ", ".join(lines[:_LINES_NAMED]) + (", ..." if len(lines) > _LINES_NAMED else "")
            logger.warning("%s: skipped %d rows: %s (lines %s)", path, len(lines), reason, named)


def read_mot(path: str | Path, tracks_format: MotFormat = MotFormat(),
             frame_size: tuple[int, int] | None = None) -> MotTracks:
    """Parse a tracker's text file, or ultralytics' folder of label files (see the module docstring; it needs the
    video's ``frame_size`` (height, width)); ValueError on malformed lines, a duplicate (frame, id) or no usable
    tracked box."""
    path = Path(path)
    folder = tracks_format.name == "ultralytics"
    if not (path.is_dir() if folder else path.is_file()):
        raise FileNotFoundError(f"{'labels folder' if folder else 'tracks file'} not found: {path}")
    person, fields_named = tracks_format.person, tracks_format.fields
    of_files = "" if tracks_format.person_class is not None else f" of {tracks_format.name} files"
    rows: list[tuple[int, int, float, float, float, float, float]] = []
    left_out = _LeftOut()
    for row in _ultralytics_rows(path, frame_size) if folder else _mot_rows(path, tracks_format):
        if row.box is None:
            left_out.add(f"box not finite or beyond {MAX_COORDINATE:.0e} pixels", row.line)
        elif row.cls is not None and row.cls != -1 and row.cls != person:
            left_out.add(f"class other than {person} (the person class{of_files})", row.line)
        elif row.track < 0:
            left_out.add("no track id (id < 0)", row.line)
        elif tracks_format.marks_coasting and (row.confidence == 0 or row.visibility == 0):
            left_out.add("coasting (confidence or visibility 0: the tracker's prediction, not a detection)", row.line)
        else:
            left, top, width, height = row.box
            rows.append((row.frame, row.track, left, top, left + width, top + height, row.confidence))
    left_out.log(path)
    if not rows:
        why = "; ".join(f"{count} {reason}" for reason, count in left_out.counts().items())
        raise ValueError(f"{path} holds no usable tracked boxes ({fields_named}"
                         f"{f'; skipped: {why}' if why else ''})")
    table = np.array(rows, dtype=np.float64)
    table = table[np.lexsort((table[:, 1], table[:, 0]))]
    frames, track_ids = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    if frames[0] == 0:
        logger.info("%s holds frame 0: its frames count from 0 and are read as frame + 1", path)
        frames += 1
    repeated = np.flatnonzero((np.diff(frames) == 0) & (np.diff(track_ids) == 0))
    if repeated.size:
        raise ValueError(f"{path}: track {track_ids[repeated[0]]} has two boxes in frame {frames[repeated[0]]}")
    return MotTracks(frames, track_ids, table[:, 2:6].copy(), table[:, 6].copy(), str(path), left_out.counts())


def write_mot(path: str | Path, frames: np.ndarray, track_ids: np.ndarray, boxes_xyxy: np.ndarray,
              confidences: np.ndarray | None = None) -> Path:
    """Write boxes in the MOTChallenge tracker-output format (``x, y, z`` left at -1)."""
    path = Path(path)
    confidences = np.ones(len(frames)) if confidences is None else confidences
    with open(path, "w") as handle:
        for frame, track, (x1, y1, x2, y2), confidence in zip(frames, track_ids, boxes_xyxy, confidences):
            handle.write(f"{int(frame)},{int(track)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                         f"{confidence:.3f},-1,-1,-1\n")
    return path


def read_track_identities(path: str | Path) -> dict[int, str]:
    """Rows ``track_id,identity`` (an optional header line): known identities of some tracks."""
    path = Path(path)
    identities: dict[int, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for line, fields in enumerate(csv.reader(handle), start=1):
            if not fields or (line == 1 and fields[0].strip().lower() == "track_id"):
                continue
            if len(fields) != 2 or not fields[1].strip():
                raise ValueError(f"{path}:{line}: expected track_id,identity, got {fields}")
            track = _integer(fields[0], "track_id", f"{path}:{line}")
            if track in identities:
                raise ValueError(f"{path}:{line}: track {track} is listed twice")
            identities[track] = fields[1].strip()
    return identities


def write_track_identities(path: str | Path, identities: dict[int, str]) -> Path:
    """Write ``track_id,identity`` rows, the file :func:`read_track_identities` reads."""
    path = Path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["track_id", "identity"])
        writer.writerows(sorted(identities.items()))
    return path
