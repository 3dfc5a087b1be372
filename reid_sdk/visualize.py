"""Pictures of search results: a query and its matches as one strip of captioned tiles (BGR images)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from reid_sdk.datasets.files import read_image
from reid_sdk.gallery import Match

TILE_SIZE = (128, 64)  # strip tile (height, width)
WHITE = (255, 255, 255)


def _tile(image: np.ndarray | None, caption: str) -> np.ndarray:
    height, width = TILE_SIZE
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


def stack_rows(images: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Images one under the other, left-aligned on white, ``gap`` pixels apart."""
    width = max(image.shape[1] for image in images)
    rows = [cv2.copyMakeBorder(image, 0, gap, 0, width - image.shape[1], cv2.BORDER_CONSTANT, value=WHITE)
            for image in images]
    return np.concatenate(rows, axis=0)


def write_image(image: np.ndarray, path: Path) -> Path:
    """Write ``image`` to ``path`` (format from the suffix); ValueError when OpenCV cannot."""
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"cannot write {path}")
    return path
