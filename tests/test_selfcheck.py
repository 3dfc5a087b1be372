"""``python -m reid_sdk``, the README's first command until the demo lands, really extracts features."""

import re

from reid_sdk.__main__ import draw_pedestrian, main


def test_drawn_pedestrian_is_a_bgr_crop():
    crop = draw_pedestrian()
    assert crop.shape == (128, 64, 3) and crop.dtype.name == "uint8"
    assert (draw_pedestrian(seed=1) != crop).any()


def test_selfcheck_prints_unit_norm_features(capsys):
    main(["--device", "cpu", "--depth", "18"])
    out = capsys.readouterr().out
    assert "NL-ResNet-18" in out and "features of dimension 512" in out
    assert re.search(r"norms \[1\.0, 1\.0, 1\.0, 1\.0\]", out)
