"""reid-index build / search, called through main(argv) with a tiny checkpoint."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from pathlib import Path

import cv2
import pytest

from reid_sdk.cli.index import main
from reid_sdk.gallery import Gallery
from tests.helpers import (BROKEN_ONNX_ERRORS, broken_onnx_models, ctrl_c_at_gallery_add, random_crops, refuse_writes_under,
                           tiny_model)
from tests.test_gallery_contract import damage_milvus_lite_file, forget_milvus_lite_server
from tests.test_gallery_persistence import damage_lock_folder, damage_readers_lock


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
    # camera-standardised (the names give cameras): the query's camera 3 is typed, as the names store it (an int)
    assert run("search", "--gallery", str(tmp_path / "g"), str(tmp_path / "images" / names[5]), "-k", "3",
               "--query-camera", "3", checkpoint=checkpoint) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == f"query 1/1: {tmp_path / 'images' / names[5]}"
    assert table[1].split() == ["rank", "score", "identity", "camera", "entry", "path"]
    first = table[2].split()
    assert first[0] == "1" and float(first[1]) == pytest.approx(1.0, abs=1e-3) and first[2:5] == ["2", "3", "5"]
    assert not list(tmp_path.glob("*.png"))  # no strip unless asked for
    scores = {}
    for flag in ("--camera-standardise", "--no-camera-standardise"):  # without --query-camera: the global mean
        assert run("search", "--gallery", str(tmp_path / "g"), str(tmp_path / "images" / names[5]), "-k", "3", flag,
                   checkpoint=checkpoint) == 0
        first = capsys.readouterr().out.splitlines()[2].split()
        assert first[2:5] == ["2", "3", "5"]
        scores[flag] = float(first[1])
    assert scores["--no-camera-standardise"] == pytest.approx(1.0, abs=1e-3)  # plain cosine of itself
    assert scores["--camera-standardise"] < 0.999  # its camera's mean is not the global one

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
    # progress as log lines away from a terminal: the first unit (a folder's images), then the end; the entries
    # added, the units failed and the crops per second after each
    progress = [m for m in messages if m.startswith("adding to the gallery:")]
    assert [m.split(" (")[0] for m in progress] == [  # day1/, day2/ up to late/, day2/late/, the rest of day2/
        "adding to the gallery: 1/4 units", "adding to the gallery: 4/4 units"]
    assert progress[-1].split(") ")[1].startswith("entries=7 failed=0 crops_per_s=")


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


def test_build_resume_adds_only_what_the_gallery_lacks(checkpoint, tmp_path, capsys):
    write_market_folder(tmp_path / "images" / "a", random_crops(3, seed=12, min_size=40))
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), checkpoint=checkpoint) == 0
    before = Gallery.open(tmp_path / "g")
    kept = {int(i): before.rows([i])[int(i)].metadata["key"] for i in before.ids()}
    before.close()
    write_market_folder(tmp_path / "images" / "b", random_crops(2, seed=13, min_size=40), first_pid=7)
    capsys.readouterr()
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), "--resume",
               checkpoint=checkpoint) == 0
    assert "gallery of 5 entries" in capsys.readouterr().out.split("written to")[0]
    after = Gallery.open(tmp_path / "g")
    rows = after.rows(after.ids())
    assert {i: rows[i].metadata["key"] for i in kept} == kept  # the first three untouched, two added, no twin
    assert len({row.metadata["key"] for row in rows.values()}) == 5
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), "--resume",
               checkpoint=checkpoint) == 0
    assert capsys.readouterr().out.endswith("; 5 were there already\n")
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), "--resume",
               "--overwrite", checkpoint=checkpoint) == 2
    assert "overwrite replaces the gallery: it does not combine with append or resume" in capsys.readouterr().err


def test_build_follows_a_linked_folder_and_searches_a_loop_once(checkpoint, tmp_path, capsys):
    crops = random_crops(6, seed=7, min_size=40)
    write_market_folder(tmp_path / "images" / "cam1", crops[:3])
    write_market_folder(tmp_path / "elsewhere" / "cam2", crops[3:], first_pid=10)
    (tmp_path / "images" / "cam2").symlink_to(tmp_path / "elsewhere" / "cam2", target_is_directory=True)
    (tmp_path / "images" / "cam1" / "up").symlink_to(tmp_path / "images", target_is_directory=True)
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"),
               checkpoint=checkpoint) == 0
    assert "gallery of 6 entries" in capsys.readouterr().out


@pytest.mark.parametrize("existing", [True, False])
def test_an_interrupted_build_says_what_it_kept_without_a_traceback(checkpoint, tmp_path, capsys, monkeypatch,
                                                                    existing):
    write_market_folder(tmp_path / "images", random_crops(6, seed=8, min_size=40))
    if existing:
        assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"),
                   checkpoint=checkpoint) == 0
    ctrl_c_at_gallery_add(monkeypatch)
    capsys.readouterr()
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), "--overwrite",
               "--batch-size", "2", checkpoint=checkpoint) == 130
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.splitlines()[-1] == (
        f"reid-index: interrupted after adding 2 of 6 records: nothing saved, {tmp_path / 'g'} is as it was")
    if existing:
        assert len(Gallery.open(tmp_path / "g")) == 6
    else:
        assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())


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


@pytest.mark.parametrize("kind", sorted(BROKEN_ONNX_ERRORS))
def test_build_with_a_broken_onnx_model_exits_2_naming_it(tmp_path, capsys, kind):
    write_market_folder(tmp_path / "images", random_crops(2, seed=3, min_size=40))
    model = broken_onnx_models(tmp_path / "models")[kind]
    assert run("build", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), checkpoint=model) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    expected = f"reid-index: error: {re.escape(str(model))}{BROKEN_ONNX_ERRORS[kind]}.*"
    assert re.fullmatch(expected, error.splitlines()[-1])


def test_build_from_mars_with_an_empty_info_file_exits_2_naming_it(checkpoint, tmp_path, capsys):
    from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate

    generate("mars", tmp_path / "mars", SyntheticConfig(seed=2, image_size=(64, 32), sizes=PRESETS["tiny"]), workers=1)
    info = tmp_path / "mars" / "info" / "query_IDX.mat"
    info.write_bytes(b"")
    assert run("build", "--images", str(tmp_path / "mars"), "--format", "mars", "--out", str(tmp_path / "g"),
               checkpoint=checkpoint) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (f"reid-index: error: cannot read {info}, damaged or "
                                                        "truncated: Mat file appears to be truncated")


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


# -- a gallery's storage: damaged locks and files, a full disk, folders it may not write in ----------------------------
def build_four(checkpoint, tmp_path, out: str, *options: str) -> int:
    """``reid-index build`` of four crops into ``out``; returns the exit code."""
    if not (tmp_path / "images").exists():
        write_market_folder(tmp_path / "images", random_crops(4, seed=9, min_size=40))
    return run("build", "--images", str(tmp_path / "images"), "--out", out, *options, checkpoint=checkpoint)


def search_one(checkpoint, tmp_path, gallery: str) -> int:
    return run("search", "--gallery", gallery, str(next((tmp_path / "images").iterdir())), checkpoint=checkpoint)


def error_line(capsys) -> str:
    """The one line of reid-index's error (progress log lines come before it); there is no traceback."""
    error = capsys.readouterr().err
    assert "Traceback" not in error
    return error.splitlines()[-1]


@pytest.mark.parametrize("damage", [damage_readers_lock, damage_lock_folder])
def test_a_damaged_lock_is_exit_2_naming_it_and_build_overwrite_replaces_it(checkpoint, tmp_path, capsys, damage):
    out = tmp_path / "g"
    assert build_four(checkpoint, tmp_path, str(out)) == 0
    damaged = damage(out)
    assert search_one(checkpoint, tmp_path, str(out)) == 2
    assert re.fullmatch(f"reid-index: error: {re.escape(str(damaged))} .*: remove it .*", error_line(capsys))
    assert build_four(checkpoint, tmp_path, str(out), "--overwrite") == 0
    assert search_one(checkpoint, tmp_path, str(out)) == 0


def test_a_damaged_milvus_lite_gallery_is_exit_2_and_build_overwrite_replaces_it(checkpoint, tmp_path, capsys):
    pytest.importorskip("milvus_lite", reason="milvus-lite: URIs need pip install milvus-lite")
    uri = f"milvus-lite:{tmp_path / 'g.db'}"
    assert build_four(checkpoint, tmp_path, uri) == 0
    forget_milvus_lite_server(tmp_path / "g.db")
    damage_milvus_lite_file(tmp_path / "g.db", "data")
    assert search_one(checkpoint, tmp_path, uri) == 2
    assert error_line(capsys).startswith(f"reid-index: error: the Milvus Lite gallery {uri} cannot be read (")
    assert build_four(checkpoint, tmp_path, uri, "--overwrite") == 0
    assert search_one(checkpoint, tmp_path, uri) == 0


@pytest.mark.parametrize("backend", ["faiss", "milvus-lite"])
def test_a_full_disk_is_exit_2_naming_the_file_and_keeps_the_gallery(checkpoint, tmp_path, capsys, monkeypatch,
                                                                     backend):
    import faiss

    if backend == "faiss":  # the build replaces the gallery, which stays as it was
        previous = out = str(tmp_path / "g")
        failing, full, written = faiss, "write_index", tmp_path / "g" / "g000002.vectors.faiss"
    else:  # Milvus replaces a gallery by dropping it first: the build makes another one in the same file
        pytest.importorskip("milvus_lite", reason="milvus-lite: URIs need pip install milvus-lite")
        failing = pytest.importorskip("pyarrow.parquet")
        previous, out = f"milvus-lite:{tmp_path / 'g.db'}", f"milvus-lite:{tmp_path / 'g.db'}?collection=second"
        full, written = "write_table", tmp_path / "g.db"
    assert build_four(checkpoint, tmp_path, previous) == 0

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(failing, full, no_space)
    assert build_four(checkpoint, tmp_path, out, "--overwrite") == 2
    assert error_line(capsys) == f"reid-index: error: no space left on device writing {written}"
    monkeypatch.undo()
    assert search_one(checkpoint, tmp_path, previous) == 0


@pytest.mark.parametrize("backend, code", [("faiss", errno.EACCES), ("milvus-lite", errno.EACCES),
                                           ("milvus-lite", errno.EROFS)])
def test_a_folder_it_may_not_write_in_is_exit_2_naming_it_and_why(checkpoint, tmp_path, capsys, monkeypatch,
                                                                  backend, code):
    folder = tmp_path / "gallery"
    folder.mkdir()
    milvus = f"milvus-lite:{folder / 'g.db'}"
    if backend == "milvus-lite":
        pytest.importorskip("milvus_lite", reason="milvus-lite: URIs need pip install milvus-lite")
        assert build_four(checkpoint, tmp_path, milvus) == 0
        forget_milvus_lite_server(folder / "g.db")
    refuse_writes_under(monkeypatch, folder, code)
    reason = os.strerror(code).lower()
    if backend == "milvus-lite":  # Milvus Lite writes in its folder even to search
        assert search_one(checkpoint, tmp_path, milvus) == 2
        assert error_line(capsys) == (f"reid-index: error: [Errno {code}] cannot write in {folder / 'g.db'}: {reason} "
                                      "(Milvus Lite writes a lock in its folder even to search: copy the gallery to a "
                                      "folder it may write in, or serve a FAISS gallery, which opens read-only)")
    out = str(folder) if backend == "faiss" else f"milvus-lite:{folder / 'new.db'}"
    assert build_four(checkpoint, tmp_path, out) == 2
    assert error_line(capsys) == f"reid-index: error: [Errno {code}] cannot write in {folder}: {reason}"
