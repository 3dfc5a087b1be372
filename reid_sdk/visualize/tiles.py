"""The tile every picture is built from (BGR images): a crop with a verdict border and captions, rows and titles.

Every picture here is built from the same tile: the crop, a border that says whether the match is right (green,
with a check mark), wrong (red, with a cross) or unknown (grey), and two caption lines (identity and camera,
then the score). The query's tile has a blue border. Rows stack into one image; the sizes are chosen so the
captions read at 100% zoom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np


TILE_SIZE = (160, 80)  # crop area of a tile (height, width)
WHITE = (255, 255, 255)
_BORDER = 4
_CAPTION = 34  # two caption lines
_GAP, _QUERY_GAP = 4, 16
_FONT, _FONT_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.42
_COLOURS = {True: (40, 160, 40), False: (40, 40, 210), None: (150, 150, 150), "query": (200, 120, 30)}


@dataclass(frozen=True)
class Tile:
    """One crop (None: unreadable, drawn grey) with its caption and verdict (True right, False wrong, None unknown;
    "query" for the query)."""

    image: np.ndarray | None
    caption: tuple[str, str]
    verdict: bool | str | None = None


def label(identity: Any, camera: Any) -> str:
    """``identity / camera`` as a caption line; unknowns are ``?``, integer cameras read ``c3``."""
    who = "?" if identity is None else str(identity)
    where = "?" if camera is None else (f"c{camera}" if isinstance(camera, (int, np.integer)) else str(camera))
    return f"{who} / {where}"


def _fit(text: str, width: int) -> str:
    while text and cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] > width:
        text = text[:-3] + ".." if len(text) > 3 else text[:-1]
    return text


def _mark(tile: np.ndarray, verdict: bool | str | None) -> None:
    """A check mark (right) or a cross (wrong) on a white disc in the tile's top-right corner."""
    if verdict not in (True, False):
        return
    centre = (tile.shape[1] - 14, 14)
    cv2.circle(tile, centre, 10, WHITE, -1, cv2.LINE_AA)
    colour = _COLOURS[verdict]
    x, y = centre
    if verdict:
        cv2.polylines(tile, [np.array([(x - 6, y), (x - 2, y + 5), (x + 6, y - 5)])], False, colour, 2, cv2.LINE_AA)
    else:
        cv2.line(tile, (x - 5, y - 5), (x + 5, y + 5), colour, 2, cv2.LINE_AA)
        cv2.line(tile, (x - 5, y + 5), (x + 5, y - 5), colour, 2, cv2.LINE_AA)


def render_tile(tile: Tile) -> np.ndarray:
    """The tile as an image: bordered crop over two caption lines."""
    height, width = TILE_SIZE
    crop = cv2.resize(tile.image, (width, height)) if tile.image is not None else np.full((height, width, 3), 160,
                                                                                         np.uint8)
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    framed = cv2.copyMakeBorder(crop, _BORDER, _BORDER, _BORDER, _BORDER, cv2.BORDER_CONSTANT,
                                value=_COLOURS[tile.verdict])
    _mark(framed, tile.verdict)
    out = np.full((framed.shape[0] + _CAPTION, framed.shape[1], 3), 255, np.uint8)
    out[: framed.shape[0]] = framed
    for line, text in enumerate(tile.caption):
        cv2.putText(out, _fit(text, framed.shape[1] - 2), (1, framed.shape[0] + 14 + 15 * line), _FONT, _FONT_SCALE,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return out


def render_row(query: Tile, tiles: Sequence[Tile]) -> np.ndarray:
    """The query tile, a wider gap, then the ranked tiles left to right."""
    images = [render_tile(query)] + [render_tile(tile) for tile in tiles]
    parts = [images[0]]
    for index, image in enumerate(images[1:]):
        parts.append(np.full((image.shape[0], _QUERY_GAP if index == 0 else _GAP, 3), 255, np.uint8))
        parts.append(image)
    return np.concatenate(parts, axis=1)


def verdict(query_identity: Any, identity: Any) -> bool | None:
    """Whether a match is the query's person: unknown (None) when either identity is."""
    return None if query_identity is None or identity is None else identity == query_identity


def with_note(row: np.ndarray, text: str) -> np.ndarray:
    """``row`` with ``text`` written to its right, vertically centred."""
    width = cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)[0][0] + 2 * _QUERY_GAP
    panel = np.full((row.shape[0], width, 3), 255, np.uint8)
    cv2.putText(panel, text, (_QUERY_GAP, row.shape[0] // 2), _FONT, _FONT_SCALE, (90, 90, 90), 1, cv2.LINE_AA)
    return np.concatenate([row, panel], axis=1)


def stack_rows(images: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Images one under the other, left-aligned on white, ``gap`` pixels apart."""
    width = max(image.shape[1] for image in images)
    rows = [cv2.copyMakeBorder(image, 0, gap, 0, width - image.shape[1], cv2.BORDER_CONSTANT, value=WHITE)
            for image in images]
    return np.concatenate(rows, axis=0)


def _wrap(text: str, width: int, scale: float) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and cv2.getTextSize(f"{lines[-1]} {word}", _FONT, scale, 1)[0][0] <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(_fit(word, width))
    return lines


def with_title(image: np.ndarray, title: str, min_width: int = 560) -> np.ndarray:
    """``image`` (widened with white to ``min_width``) under ``title``, wrapped to its width (22 pixels per line)."""
    if image.shape[1] < min_width:
        image = cv2.copyMakeBorder(image, 0, 0, 0, min_width - image.shape[1], cv2.BORDER_CONSTANT, value=WHITE)
    lines = _wrap(title, image.shape[1] - 4, 0.5)
    band = np.full((22 * len(lines) + 2, image.shape[1], 3), 255, np.uint8)
    for number, line in enumerate(lines):
        cv2.putText(band, line, (2, 17 + 22 * number), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, image], axis=0)


def write_image(image: np.ndarray, path: Path) -> Path:
    """Write ``image`` to ``path`` (format from the suffix); ValueError when OpenCV cannot."""
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"cannot write {path}")
    return path
