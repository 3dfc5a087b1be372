"""Thumbnails of gallery entries, cut from the files their metadata names, only inside the allowed media folders.

A thumbnail URL carries an entry id, never a path: the file comes from the entry's metadata (``path``: an image
file, or ``video`` + ``best_frame`` + ``best_box``: a track's best crop), is resolved (symbolic links followed) and
served only when it lies under one of the service's media roots. What goes out is always a freshly encoded JPEG of
decoded pixels, never the file's bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

THUMBNAIL_HEIGHT = 128


def confined(path: Any, roots: Sequence[Path]) -> Path | None:
    """``path`` resolved, when it is a string naming a file under one of ``roots`` (resolved too); else None."""
    if not isinstance(path, str) or not path or "\x00" in path:
        return None
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots) or not resolved.is_file():
        return None
    return resolved


def _video_crop(video: Path, frame: Any, box: Any) -> np.ndarray | None:
    if not isinstance(frame, int) or not (isinstance(box, list) and len(box) == 4):
        return None
    capture = cv2.VideoCapture(str(video))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, max(0, frame - 1))  # MOT frames count from 1
        ok, image = capture.read()
    finally:
        capture.release()
    if not ok:
        return None
    left, top, width, height = (int(v) for v in box)
    crop = image[max(0, top) : max(0, top + height), max(0, left) : max(0, left + width)]
    return crop if crop.size else None


def entry_image(metadata: dict[str, Any], roots: Sequence[Path]) -> np.ndarray | None:
    """The BGR picture of an entry (its image, or its track's best crop), or None when it has none under ``roots``."""
    image_path = confined(metadata.get("path"), roots)
    if image_path is not None:
        return cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    video = confined(metadata.get("video"), roots)
    if video is not None:
        return _video_crop(video, metadata.get("best_frame"), metadata.get("best_box"))
    return None


def thumbnail_jpeg(image: np.ndarray, height: int = THUMBNAIL_HEIGHT) -> bytes:
    """``image`` scaled to ``height`` rows (never up), as JPEG bytes."""
    if image.shape[0] > height:
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("the thumbnail could not be encoded")
    return encoded.tobytes()
