"""Image files on disk: extensions, content sniffing, decoding with OpenCV and natural sorting."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"})

# Leading bytes of the formats OpenCV decodes; the content, not the extension, decides the decoder.
_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"BM",  # BMP
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"P5",  # PGM
    b"P6",  # PPM
)

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``frame2`` before ``frame10``."""
    parts = _DIGITS.split(text)
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in parts)


def has_image_extension(path: Path) -> bool:
    """True when the file name ends in one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def looks_like_image(path: Path) -> bool:
    """Cheap content check: a non-empty file whose first bytes are a known image signature."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return True
    return any(head.startswith(signature) for signature in _SIGNATURES)


def read_image(path: str | Path) -> np.ndarray | None:
    """Decode an image file as H x W x 3 uint8 BGR (grey and alpha are converted); None when unreadable."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    return image


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Files with an image extension directly in ``folder`` (or below it, through folder links too), naturally
    sorted by relative path."""
    candidates = _files_below(folder) if recursive else folder.glob("*")
    files = [p for p in candidates if p.is_file() and has_image_extension(p)]
    return sorted(files, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def _files_below(folder: Path) -> list[Path]:
    """Every file below ``folder``, following folder links (sites link camera folders in); a folder reached a
    second time (a link to an ancestor, or two links to one folder) is searched once, and the skipped links are
    counted in one warning."""
    seen = {_folder_identity(folder)}
    files: list[Path] = []
    repeated: list[Path] = []
    for parent, subfolders, names in os.walk(folder, followlinks=True):
        unique = []
        for name in sorted(subfolders, key=natural_key):  # the first path to a folder wins, in a fixed order
            identity = _folder_identity(Path(parent, name))
            if identity in seen:
                repeated.append(Path(parent, name))
            else:
                seen.add(identity)
                unique.append(name)
        subfolders[:] = unique
        files.extend(Path(parent, name) for name in names)
    if repeated:
        logger.warning("%s: skipped %d linked folder(s) already searched through another path (a link to a folder "
                       "above it, or a second link to one folder), e.g. %s", folder, len(repeated), repeated[0])
    return files


def _folder_identity(folder: Path) -> tuple[int, int]:
    status = folder.stat()
    return status.st_dev, status.st_ino


def keep_readable(paths: Iterable[Path], skipped: list[Path]) -> list[Path]:
    """The paths that pass :func:`looks_like_image`; the others are appended to ``skipped``."""
    kept = []
    for path in paths:
        (kept if looks_like_image(path) else skipped).append(path)
    return kept


def warn_skipped(skipped: list[Path], what: str) -> None:
    """Emit ONE warning that counts the skipped files and names the first few."""
    if not skipped:
        return
    examples = ", ".join(str(p) for p in skipped[:3])
    logger.warning("%s: skipped %d unreadable, empty or misnamed file(s), e.g. %s", what, len(skipped), examples)


def readable_images(folder: Path, skipped: list[Path], recursive: bool = False) -> list[Path]:
    """Naturally sorted image files of ``folder`` that pass the content check; the rest go to ``skipped``."""
    return keep_readable(image_files(folder, recursive=recursive), skipped)


def sorted_subfolders(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` in natural order (``track2`` before ``track10``)."""
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
