"""reid-index build / search, called through main(argv) with a tiny checkpoint."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import pytest

from reid_sdk.cli.index import main
from reid_sdk.gallery import Gallery
from tests.helpers import random_crops, tiny_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from reid_sdk.model import save_checkpoint

    return save_checkpoint(tiny_model(), tmp_path_factory.mktemp("model") / "tiny.pt")


def write_market_folder(folder, crops, first_pid=0):
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, crop in enumerate(crops):
        name = f"{first_pid + i // 2:04d}_c{i % 3 + 1}s1_{i:06d}_01.jpg"
        cv2.imwrite(str(folder / name), crop, [cv2.IMWRITE_JPEG_QUALITY, 100])
        names.append(name)
    return names


def run(*argv, checkpoint):
    return main([*argv, "--model", str(checkpoint), "--device", "cpu"])


def test_build_then_search(checkpoint, tmp_path, capsys, monkeypatch):
    crops = random_crops(8, seed=2, min_size=40)
    names = write_market_folder(tmp_path / "images", crops)
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), checkpoint=checkpoint) == 0
    assert "gallery of 8 entries (flat, 512-d, model reid-sdk:" in capsys.readouterr().out
    gallery = Gallery.open(tmp_path / "g")
    assert len(gallery) == 8
    best = gallery.search(gallery.vectors([5])[0], k=1)[0]
    assert (best.identity, best.camera, best.metadata["path"].endswith(names[5])) == (2, 3, True)

    monkeypatch.chdir(tmp_path)
    assert run("search", "--gallery", str(tmp_path / "g"), str(tmp_path / "images" / names[5]), "-k", "3",
               checkpoint=checkpoint) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"query 1/1: {tmp_path / 'images' / names[5]}"
    assert table[1].split() == ["rank", "score", "identity", "camera", "entry", "path"]
    first = table[2].split()
    assert first[0] == "1" and float(first[1]) == pytest.approx(1.0, abs=1e-3) and first[2:5] == ["2", "3", "5"]
    assert not list(tmp_path.glob("*.png"))  # no strip unless asked for

    strip = tmp_path / "strip.png"
    assert run("search", "--gallery", str(tmp_path / "g"), str(tmp_path / "images" / names[5]), "-k", "3",
               "--strip", str(strip), "--exclude-camera", "3", checkpoint=checkpoint) == 0
    rows = capsys.readouterr().out.splitlines()[2:5]
    assert len(rows) == 3 and "3" not in [row.split()[3] for row in rows]  # "3" excluded the int camera 3 of the names
    image = cv2.imread(str(strip))
    assert image is not None and image.shape[1] == 4 * 88 + 16 + 2 * 4  # query + 3 bordered tiles with gaps


def test_build_skips_unreadable_and_junk_and_recurses(checkpoint, tmp_path, capsys, caplog):
    crops = random_crops(6, seed=3, min_size=40)
    write_market_folder(tmp_path / "images" / "day1", crops[:3])
    write_market_folder(tmp_path / "images" / "day2" / "late", crops[3:], first_pid=10)
    cv2.imwrite(str(tmp_path / "images" / "-1_c1s1_000001_01.jpg"), crops[0])  # junk
    good = cv2.imencode(".png", crops[1])[1].tobytes()
    (tmp_path / "images" / "day1" / "0100_c2s1_000001_01.png").write_bytes(good[: len(good) // 3])  # truncated
    (tmp_path / "images" / "day2" / "0101_c2s1_000002_01.jpg").write_bytes(b"")  # empty
    cv2.imwrite(str(tmp_path / "images" / "day2" / "unlabelled.jpg"), crops[2])
    with caplog.at_level(logging.INFO, logger="reid_sdk"):
        assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), "--progress", "log",
                   "--batch-size", "3", checkpoint=checkpoint) == 0
    out = capsys.readouterr().out
    assert "gallery of 7 entries" in out and "2 unreadable images skipped" in out
    gallery = Gallery.open(tmp_path / "g")
    entries = gallery.search(gallery.vectors(gallery.ids()), k=1)
    assert sorted((m[0].identity, m[0].camera) for m in entries if m[0].identity is not None) == [
        (0, 1), (0, 2), (1, 3), (10, 1), (10, 2), (11, 3)]
    assert [m[0].metadata["path"].endswith("unlabelled.jpg") for m in entries if m[0].identity is None] == [True]
    messages = [record.getMessage() for record in caplog.records]
    assert any("skipped 2 unreadable" in message for message in messages)
    # progress as log lines away from a terminal: the first batch, then the end
    assert [m.split(" (")[0] for m in messages if m.startswith("adding to the gallery:")] == [
        "adding to the gallery: 3/9 crops", "adding to the gallery: 9/9 crops"]


def test_build_output_is_reported(checkpoint, tmp_path, capsys):
    write_market_folder(tmp_path / "images", random_crops(2, seed=4, min_size=40))
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"),
               checkpoint=checkpoint) == 0
    out = capsys.readouterr().out
    assert "gallery of 2 entries" in out and "1 unreadable images skipped" in out
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), checkpoint=checkpoint) == 2
    assert "already exists" in capsys.readouterr().err and len(Gallery.open(tmp_path / "g")) == 2
    (tmp_path / "images" / "broken.jpg").unlink()
    write_market_folder(tmp_path / "more", random_crops(3, seed=5, min_size=40))
    assert run("build", "--images", str(tmp_path / "more"), "--out", str(tmp_path / "g"), "--overwrite",
               checkpoint=checkpoint) == 0
    assert len(Gallery.open(tmp_path / "g")) == 3


def test_several_queries_in_one_process(checkpoint, tmp_path, capsys):
    crops = random_crops(6, seed=6, min_size=40)
    names = write_market_folder(tmp_path / "images", crops)
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), checkpoint=checkpoint) == 0
    (tmp_path / "queries" / "sub").mkdir(parents=True)
    shutil.copy(tmp_path / "images" / names[1], tmp_path / "queries" / "a.jpg")
    shutil.copy(tmp_path / "images" / names[2], tmp_path / "queries" / "sub" / "b.jpg")
    (tmp_path / "list.csv").write_text(f"path\nimages/{names[3]}\nimages/missing.jpg\n")
    capsys.readouterr()
    assert run("search", "--gallery", str(tmp_path / "g"), str(tmp_path / "images" / names[0]),
               str(tmp_path / "queries"), str(tmp_path / "list.csv"), "-k", "1", "--strip", str(tmp_path / "strips"),
               checkpoint=checkpoint) == 0
    lines = capsys.readouterr().out.splitlines()
    headers = [line for line in lines if line.startswith("query ")]
    assert [h.split()[1] for h in headers] == ["1/5:", "2/5:", "3/5:", "4/5:"]  # the missing one is skipped
    best = [Path(lines[lines.index(h) + 2].split()[5]).name for h in headers]
    assert best == names[:4]  # each query finds its own image
    assert sorted(p.name for p in (tmp_path / "strips").iterdir()) == [
        f"0001_{names[0][:-4]}_matches.png", "0002_a_matches.png", "0003_b_matches.png",
        f"0004_{names[3][:-4]}_matches.png"]
    assert run("search", "--gallery", str(tmp_path / "g"), str(tmp_path / "queries"), "--strip",
               str(tmp_path / "one.png"), checkpoint=checkpoint) == 2
    assert "names one image but there are 2 queries" in capsys.readouterr().err


def test_build_from_a_dataset_layout_and_a_csv(checkpoint, tmp_path, capsys):
    root = tmp_path / "Market"
    crops = random_crops(10, seed=7, min_size=40)
    write_market_folder(root / "bounding_box_train", crops[:2])
    write_market_folder(root / "query", crops[2:4])
    write_market_folder(root / "bounding_box_test", crops[4:], first_pid=20)
    assert run("build", "--images", str(root), "--out", str(tmp_path / "g"), checkpoint=checkpoint) == 2
    assert "looks like a dataset root" in capsys.readouterr().err
    assert run("build", "--images", str(root), "--format", "market1501", "--out", str(tmp_path / "g"),
               checkpoint=checkpoint) == 0
    gallery = Gallery.open(tmp_path / "g")
    assert len(gallery) == 6 and {m[0].identity for m in gallery.search(gallery.vectors(gallery.ids()), k=1)} == {
        20, 21, 22}

    folder = tmp_path / "crops"
    folder.mkdir()
    for i, crop in enumerate(crops[:3]):
        cv2.imwrite(str(folder / f"person{i}.png"), crop)
    (tmp_path / "list.csv").write_text("path,identity,camera,timestamp\nperson0.png,alice,north,10\n"
                                       "person1.png,bob,south,\nperson2.png,alice,south,12.5\n")
    assert run("build", "--csv", str(tmp_path / "list.csv"), "--images", str(folder), "--out", str(tmp_path / "h"),
               checkpoint=checkpoint) == 0
    gallery = Gallery.open(tmp_path / "h")
    matches = gallery.search(gallery.vectors(gallery.ids()[2:]), k=3)[0]
    assert {(m.identity, m.camera, m.timestamp) for m in matches} == {
        ("alice", "north", 10.0), ("bob", "south", None), ("alice", "south", 12.5)}
    (tmp_path / "bad.csv").write_text("person0.png,alice,north,noon\n")
    assert run("build", "--csv", str(tmp_path / "bad.csv"), "--images", str(folder), "--out", str(tmp_path / "i"),
               checkpoint=checkpoint) == 2
    assert "bad.csv:1: timestamp 'noon' is not a number" in capsys.readouterr().err
    assert run("search", "--gallery", str(tmp_path / "missing"), str(folder / "person0.png"),
               checkpoint=checkpoint) == 2
    assert "no gallery" in capsys.readouterr().err
    assert run("search", "--gallery", str(tmp_path / "h"), str(folder / "nope.jpg"), checkpoint=checkpoint) == 2
    assert "does not exist" in capsys.readouterr().err


def test_build_and_search_on_milvus_lite(checkpoint, tmp_path, capsys):
    pytest.importorskip("milvus_lite", reason="milvus-lite: URIs need pip install milvus-lite")
    crops = random_crops(4, seed=8, min_size=40)
    names = write_market_folder(tmp_path / "images", crops)
    uri = f"milvus-lite:{tmp_path / 'g.db'}?collection=shop"
    assert run("build", "--images", str(tmp_path / "images"), "--out", uri, "--index", "hnsw",
               checkpoint=checkpoint) == 0
    assert "gallery of 4 entries (hnsw, 512-d" in capsys.readouterr().out
    assert run("search", "--gallery", uri, str(tmp_path / "images" / names[2]), "-k", "2", checkpoint=checkpoint) == 0
    best = capsys.readouterr().out.splitlines()[2].split()
    assert best[2:4] == ["1", "3"] and float(best[1]) == pytest.approx(1.0, abs=1e-3)
