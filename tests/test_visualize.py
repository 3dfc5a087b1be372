"""Match strips: captioned tiles whose border says right (green), wrong (red) or unknown (grey)."""

from __future__ import annotations

import cv2
import numpy as np

from reid_sdk.gallery import Match
from reid_sdk.visualize.matches import render_strip
from reid_sdk.visualize.tiles import TILE_SIZE, with_title

GREEN, RED, GREY, BLUE = (40, 160, 40), (40, 40, 210), (150, 150, 150), (200, 120, 30)
TILE_WIDTH = TILE_SIZE[1] + 8  # crop plus a 4-pixel border each side


def matches(tmp_path, identities):
    found = []
    for entry, identity in enumerate(identities):
        path = tmp_path / f"{entry}.png"
        cv2.imwrite(str(path), np.full((64, 32, 3), 30 * entry, np.uint8))
        found.append(Match(identity, 2, 0.9 - 0.1 * entry, entry, None, None, {"path": str(path)}))
    return found


def border_colours(strip, count):
    """The colour of each tile's left border, query first."""
    lefts = [0] + [TILE_WIDTH + 16 + i * (TILE_WIDTH + 4) for i in range(count)]
    return [tuple(int(v) for v in strip[TILE_SIZE[0] // 2, left + 1]) for left in lefts]


def test_strip_marks_right_and_wrong_matches_when_the_query_is_known(tmp_path):
    query = np.full((128, 64, 3), 90, np.uint8)
    strip = render_strip(query, matches(tmp_path, ["p1", "p2", None]), query_identity="p1", query_camera=1)
    assert strip.shape == (TILE_SIZE[0] + 8 + 34, 4 * TILE_WIDTH + 16 + 2 * 4, 3)
    assert border_colours(strip, 3) == [BLUE, GREEN, RED, GREY]
    unknown = render_strip(query, matches(tmp_path, ["p1", "p2"]))
    assert border_colours(unknown, 2) == [BLUE, GREY, GREY]


def test_titles_wrap_and_widen_narrow_pictures():
    image = np.zeros((50, 100, 3), np.uint8)
    titled = with_title(image, "a title long enough to need more than one line at this width " * 3)
    assert titled.shape[1] == 560 and (titled.shape[0] - 50) % 22 == 2 and titled.shape[0] - 50 > 22
