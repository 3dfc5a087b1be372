"""reid-index build / search, called through main(argv) with a tiny checkpoint."""

from __future__ import annotations

import cv2
import pytest

from reid_sdk.gallery import Gallery
from reid_sdk.cli.index import main
from tests.helpers import random_crops, tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from reid_sdk.model import save_checkpoint

    return save_checkpoint(tiny_model(), tmp_path_factory.mktemp("model") / "tiny.pt")


def write_market_folder(folder, crops):
    folder.mkdir()
    names = []
    for i, crop in enumerate(crops):
        name = f"{i // 2:04d}_c{i % 3 + 1}s1_{i:06d}_01.jpg"
        cv2.imwrite(str(folder / name), crop, [cv2.IMWRITE_JPEG_QUALITY, 100])
        names.append(name)
    return names


def test_build_then_search(checkpoint, tmp_path, capsys):
    crops = random_crops(8, seed=2, min_size=40)
    names = write_market_folder(tmp_path / "images", crops)
    assert main(["build", "--model", str(checkpoint), "--images", str(tmp_path / "images"),
                 "--out", str(tmp_path / "g"), "--device", "cpu"]) == 0
    assert "gallery of 8 entries" in capsys.readouterr().out
    gallery = Gallery.open(tmp_path / "g")
    assert len(gallery) == 8
    best = gallery.search(gallery.vectors([5])[0], k=1)[0]
    assert (best.identity, best.camera, best.metadata["path"].endswith(names[5])) == (2, 3, True)

    strip = tmp_path / "strip.png"
    assert main(["search", "--model", str(checkpoint), "--gallery", str(tmp_path / "g"),
                 str(tmp_path / "images" / names[5]), "-k", "3", "--strip", str(strip), "--device", "cpu"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "score", "identity", "camera", "entry", "path"]
    first = table[1].split()
    assert first[0] == "1" and float(first[1]) == pytest.approx(1.0, abs=1e-3) and first[2:5] == ["2", "3", "5"]
    image = cv2.imread(str(strip))
    assert image is not None and image.shape[1] == 4 * 88 + 16 + 2 * 4  # query + 3 bordered tiles with gaps


def test_build_from_csv_and_errors(checkpoint, tmp_path, capsys):
    crops = random_crops(3, seed=5, min_size=40)
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, crop in enumerate(crops):
        cv2.imwrite(str(folder / f"person{i}.png"), crop)
    (tmp_path / "list.csv").write_text("path,identity,camera,timestamp\n"
                                       "person0.png,alice,north,10\nperson1.png,bob,south,\nperson2.png,alice,south,12.5\n")
    assert main(["build", "--model", str(checkpoint), "--csv", str(tmp_path / "list.csv"), "--images", str(folder),
                 "--out", str(tmp_path / "g"), "--device", "cpu"]) == 0
    gallery = Gallery.open(tmp_path / "g")
    matches = gallery.search(gallery.vectors([2])[0], k=3)
    assert {(m.identity, m.camera, m.timestamp) for m in matches} == {
        ("alice", "north", 10.0), ("bob", "south", None), ("alice", "south", 12.5)}

    assert main(["build", "--model", str(checkpoint), "--images", str(folder), "--out", str(tmp_path / "h")]) == 2
    assert "not a Market-1501 style name" in capsys.readouterr().err
    assert main(["search", "--model", str(checkpoint), "--gallery", str(tmp_path / "missing"),
                 str(folder / "person0.png")]) == 2
    assert "no gallery" in capsys.readouterr().err
    assert main(["search", "--model", str(checkpoint), "--gallery", str(tmp_path / "g"), str(folder / "nope.jpg")]) == 2
    assert "cannot read image" in capsys.readouterr().err
