"""Gallery save/open in one process: round trips, crash safety, integrity checks, overwrite rules, merges."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import faiss
import numpy as np
import pytest

from reid_sdk.gallery import CorruptGalleryError, Gallery, GalleryChangedError, GalleryConfig
from reid_sdk.gallery.faiss_sqlite import directory_locks
from reid_sdk.gallery.faiss_sqlite.integrity import document_checksum
from reid_sdk.gallery.faiss_sqlite.metadata import MetadataStore
from reid_sdk.gallery.faiss_sqlite.store import write_index
from reid_sdk.synthetic.vectors import clustered_features
from tests.helpers import refuse_writes_under


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def gallery_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name != ".lock")


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_round_trip_gives_identical_results(kind, tmp_path):
    x, labels = clustered_features(2100, 32, seed=2)
    gallery = Gallery(32, index_type=kind, config=GalleryConfig(pq_nbits=5), path=tmp_path / "g", model_id="m-1")
    gallery.add(x[:2000], identities=[f"p{label}" for label in labels[:2000]], cameras=np.arange(2000) % 4,
                timestamps=np.arange(2000.0), track_ids=np.arange(2000) // 10,
                metadata=[{"frame": i} for i in range(2000)])
    gallery.remove(range(0, 2000, 7))  # hnsw keeps these as tombstones, which must survive the round trip
    gallery.save()
    reopened = Gallery.open(tmp_path / "g")
    queries = x[2000:]
    assert len(reopened) == len(gallery) and reopened.config == gallery.config and reopened.model_id == "m-1"
    for filters in ({}, {"exclude_camera": 1, "since": 500.0}):
        assert reopened.search(queries, k=10, **filters) == gallery.search(queries, k=10, **filters)
    first_new = gallery.add(x[:1])[0]
    # both handles draw ids from the directory's shared counter: they never hand out the same id
    assert first_new == 2000 and reopened.add(x[:1])[0] == 2001


def test_save_generations_and_search_param_override(tmp_path):
    x, _ = clustered_features(1000, 16)
    gallery = Gallery(16, index_type="ivf")
    with pytest.raises(ValueError, match="no path"):
        gallery.save()
    gallery.add(x[:500])
    gallery.save(tmp_path)
    gallery.add(x[500:])
    gallery.save()
    assert gallery_files(tmp_path) == ["g000002.camera_statistics.json", "g000002.metadata.sqlite", "g000002.vectors.faiss", "manifest.json"]
    reopened = Gallery.open(tmp_path, nprobe=3)
    assert len(reopened) == 1000 and reopened.config.nprobe == 3


def test_interrupted_save_leaves_previous_state(tmp_path, monkeypatch):
    x, _ = clustered_features(300, 16)
    gallery = Gallery(16, path=tmp_path)
    gallery.add(x[:100])
    gallery.save()
    gallery.add(x[100:])
    real_replace = os.replace

    def crash_at_commit(source, target):
        if Path(target).name == "manifest.json":
            raise OSError("simulated power loss")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_at_commit)
    with pytest.raises(OSError, match="power loss"):
        gallery.save()
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(Gallery.open(tmp_path)) == 100  # new generation's files exist but were never committed
    gallery.save()
    assert len(Gallery.open(tmp_path)) == 300
    assert gallery_files(tmp_path) == ["g000002.camera_statistics.json", "g000002.metadata.sqlite", "g000002.vectors.faiss", "manifest.json"]


def test_leftovers_of_a_killed_save_are_removed_by_the_next(tmp_path):
    leftovers = [".g000001.vectors.faiss.0123abcd.tmp", ".manifest.json.89abcdef.tmp"]
    for name in leftovers:  # what a save killed before its cleanup leaves behind
        (tmp_path / name).write_bytes(b"half a file")
    gallery = Gallery(4)
    gallery.add(np.eye(4))
    gallery.save(tmp_path)  # leftovers are no foreign files
    assert gallery_files(tmp_path) == ["g000001.camera_statistics.json", "g000001.metadata.sqlite", "g000001.vectors.faiss", "manifest.json"]
    (tmp_path / "notes.g000001.vectors.faiss.tmp").write_text("someone else's")
    gallery.save()
    assert "notes.g000001.vectors.faiss.tmp" in gallery_files(tmp_path)


# what a first save killed in the SQLite dump leaves: a temporary's rollback journal, or this release's predecessor's
KILLED_DUMP_LEFTOVERS = [".g000001.metadata.sqlite.0123abcd.tmp-journal", ".g000001.metadata.sqlite.0123abcd.tmp-wal",
                         "g000001.metadata.sqlite.tmp", "g000001.metadata.sqlite.tmp-journal", "manifest.json.tmp"]


@pytest.mark.parametrize("leftover", KILLED_DUMP_LEFTOVERS)
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_killed_first_save_never_blocks_the_next_build(tmp_path, leftover, overwrite):
    (tmp_path / leftover).write_bytes(b"half a journal")
    gallery = Gallery(4, path=tmp_path, overwrite=overwrite)
    gallery.add(np.eye(4))
    gallery.save()
    assert gallery_files(tmp_path) == ["g000001.camera_statistics.json", "g000001.metadata.sqlite", "g000001.vectors.faiss", "manifest.json"]


def test_opening_a_gallery_removes_leftovers_unless_a_save_is_under_way(tmp_path):
    gallery = Gallery(4)
    gallery.add(np.eye(4))
    gallery.save(tmp_path)
    for name in KILLED_DUMP_LEFTOVERS:
        (tmp_path / name).write_bytes(b"litter")
    with directory_locks.save_lock(tmp_path):  # another process saving: its temporaries are no leftovers
        assert len(Gallery.open(tmp_path)) == 4
        assert set(KILLED_DUMP_LEFTOVERS) <= set(gallery_files(tmp_path))
    assert len(Gallery.open(tmp_path)) == 4
    assert gallery_files(tmp_path) == ["g000001.camera_statistics.json", "g000001.metadata.sqlite", "g000001.vectors.faiss", "manifest.json"]


@pytest.fixture()
def saved(tmp_path) -> Path:
    x, _ = clustered_features(400, 16, seed=4)
    gallery = Gallery(16, index_type="ivfpq", config=GalleryConfig(nlist=4, pq_nbits=4, min_points_per_centroid=4))
    gallery.add(x, cameras=np.arange(400) % 3, metadata=[{"i": i} for i in range(400)])
    return gallery.save(tmp_path / "g")


@pytest.mark.parametrize("role", ["vectors.faiss", "rescore.faiss", "metadata.sqlite"])
def test_flipped_bytes_are_detected(saved, role):
    path = saved / manifest_of(saved)["files"][role]["file"]
    data = bytearray(path.read_bytes())
    for offset in np.random.default_rng(0).choice(len(data), 50, replace=False):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptGalleryError, match=f"{path.name} does not match its SHA-256"):
        Gallery.open(saved)


def test_truncated_and_missing_files_are_detected(saved):
    manifest = manifest_of(saved)
    vectors = saved / manifest["files"]["vectors.faiss"]["file"]
    vectors.write_bytes(vectors.read_bytes()[:-100])
    with pytest.raises(CorruptGalleryError, match=f"{vectors.name} has .* bytes, the manifest says"):
        Gallery.open(saved)
    vectors.unlink()
    with pytest.raises(CorruptGalleryError, match=f"{vectors.name} named by the manifest is missing"):
        Gallery.open(saved)


def rewrite_manifest(root: Path, change) -> None:
    document = manifest_of(root)
    change(document)
    document["checksum"] = document_checksum(document)
    (root / "manifest.json").write_text(json.dumps(document))


@pytest.mark.parametrize("name", ["../outside.faiss", "/etc/passwd", "sub/g000001.vectors.faiss", "notes.txt", 7])
def test_manifest_names_stay_inside_the_gallery(saved, name):
    rewrite_manifest(saved, lambda d: d["files"]["vectors.faiss"].update(file=name))
    with pytest.raises(CorruptGalleryError, match="not a gallery file of this directory"):
        Gallery.open(saved)


def test_damaged_manifests_are_one_clear_error(saved):
    document = manifest_of(saved)
    (saved / "manifest.json").write_text(json.dumps({**document, "entries": 399}))  # edited without its checksum
    with pytest.raises(CorruptGalleryError, match="does not match its own checksum"):
        Gallery.open(saved)
    rewrite_manifest(saved, lambda d: d.update(entries=399))  # consistent checksum, wrong count
    with pytest.raises(CorruptGalleryError, match="inconsistent: 400 metadata rows"):
        Gallery.open(saved)
    rewrite_manifest(saved, lambda d: d.pop("next_id"))
    with pytest.raises(CorruptGalleryError, match="not a valid gallery manifest: KeyError"):
        Gallery.open(saved)
    rewrite_manifest(saved, lambda d: d.update(format=1))
    with pytest.raises(ValueError, match="unsupported gallery format 1"):
        Gallery.open(saved)
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptGalleryError, match="not valid JSON"):
        Gallery.open(saved)


def test_a_valid_file_of_the_wrong_kind_is_one_clear_error(saved):
    manifest = manifest_of(saved)
    metadata = saved / manifest["files"]["metadata.sqlite"]["file"]
    vectors = saved / manifest["files"]["vectors.faiss"]["file"]
    metadata.write_bytes(vectors.read_bytes())  # checksums updated: only the content check can catch it
    rewrite_manifest(saved, lambda d: d["files"]["metadata.sqlite"].update(
        bytes=metadata.stat().st_size, sha256=manifest["files"]["vectors.faiss"]["sha256"]))
    with pytest.raises(CorruptGalleryError, match=f"{metadata.name} is not a readable gallery metadata database"):
        Gallery.open(saved)


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Gallery.open(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        Gallery.open(tmp_path / "file")
    with pytest.raises(NotADirectoryError):
        Gallery(4).save(tmp_path / "file")
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        Gallery.open(tmp_path)
    with pytest.raises(FileExistsError, match="holds other files"):
        Gallery(4).save(tmp_path)  # a folder of someone else's files is never written into
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_saving_onto_another_gallery_needs_overwrite(tmp_path):
    other = Gallery(8)
    other.add(np.eye(8))
    other.save(tmp_path / "g")
    mine = Gallery(4)
    mine.add(np.eye(4))
    with pytest.raises(FileExistsError, match=r"holds another gallery \(8 entries, 8-d"):
        mine.save(tmp_path / "g")
    with pytest.raises(FileExistsError, match="Gallery.open"):
        Gallery(4, path=tmp_path / "g")
    assert len(Gallery.open(tmp_path / "g")) == 8
    mine.save(tmp_path / "g", overwrite=True)
    replaced = Gallery.open(tmp_path / "g")
    assert (replaced.dim, len(replaced)) == (4, 4)
    assert gallery_files(tmp_path / "g") == ["g000002.camera_statistics.json", "g000002.metadata.sqlite", "g000002.vectors.faiss", "manifest.json"]
    fresh = Gallery(4, path=tmp_path / "g", overwrite=True)  # replaces it at its first save
    fresh.save()
    assert len(Gallery.open(tmp_path / "g")) == 0
    # the gallery opened before the replacement refuses to save over the new one
    with pytest.raises(FileExistsError, match="was replaced by another gallery"):
        replaced.save()


def test_a_damaged_gallery_can_be_overwritten(saved):
    (saved / "manifest.json").write_text("{broken")
    with pytest.raises(CorruptGalleryError):
        Gallery(16).save(saved)
    Gallery(16).save(saved, overwrite=True)
    assert len(Gallery.open(saved)) == 0


def damage_readers_lock(root: Path) -> Path:
    (root / ".lock" / "readers.lock").write_bytes(b"not a lock " * 100)
    return root / ".lock" / "readers.lock"


def damage_lock_folder(root: Path) -> Path:
    shutil.rmtree(root / ".lock")
    (root / ".lock").write_text("not a folder")
    return root / ".lock"


@pytest.mark.parametrize("damage, problem", [(damage_readers_lock, "is not a lock database"),
                                             (damage_lock_folder, "should be the folder of the gallery's locks")])
def test_a_damaged_lock_is_one_clear_error_and_an_overwrite_replaces_it(saved, damage, problem):
    damaged = damage(saved)
    message = f"{re.escape(str(damaged))} {problem}.*remove it"
    with pytest.raises(CorruptGalleryError, match=message):
        Gallery.open(saved)
    with pytest.raises(CorruptGalleryError, match=message):
        Gallery(16).save(saved)
    assert manifest_of(saved)["generation"] == 1  # refused before writing anything
    replacement = Gallery(16)
    replacement.add(np.eye(16))
    replacement.save(saved, overwrite=True)
    assert len(Gallery.open(saved)) == 16
    assert gallery_files(saved) == ["g000002.camera_statistics.json", "g000002.metadata.sqlite", "g000002.vectors.faiss", "manifest.json"]


@pytest.mark.parametrize("with_gallery", [False, True])
def test_saving_into_a_read_only_folder_names_the_folder_and_the_permission(tmp_path, monkeypatch, with_gallery):
    root = tmp_path / "g"
    root.mkdir()
    if with_gallery:
        Gallery(4).save(root)
    before = sorted(p.name for p in root.rglob("*"))
    refuse_writes_under(monkeypatch, root)
    gallery = Gallery(4)
    gallery.add(np.eye(4))
    message = f"^\\[Errno 13\\] cannot write in {re.escape(str(root))}: permission denied$"
    with pytest.raises(PermissionError, match=message):
        gallery.save(root, overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in root.rglob("*")) == before
    if with_gallery:
        assert len(Gallery.open(root)) == 0


def fill_the_disk(monkeypatch, step: str) -> None:
    """The disk fills up at one step of a save: FAISS writing, the SQLite dump (a real SQLITE_FULL), or an fsync."""
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if step == "faiss":
        monkeypatch.setattr(faiss, "write_index", no_space)
    elif step == "fsync":
        monkeypatch.setattr(os, "fsync", no_space)
    else:
        real_connect = sqlite3.connect
        monkeypatch.setattr(sqlite3, "connect", lambda database, *args, **kwargs: real_connect(
            "/dev/full" if str(database).endswith(".tmp") else database, *args, **kwargs))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("step, role", [("faiss", "vectors.faiss"), ("sqlite", "metadata.sqlite"),
                                        ("fsync", "vectors.faiss")])
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_gallery(tmp_path, monkeypatch, step, role):
    gallery = Gallery(4)
    gallery.add(np.eye(4))
    gallery.save(tmp_path)
    gallery.add(np.eye(4))
    fill_the_disk(monkeypatch, step)
    target = re.escape(str(tmp_path / f"g000002.{role}"))
    with pytest.raises(OSError, match=f"^no space left on device writing {target}$"):
        gallery.save()
    monkeypatch.undo()
    assert len(Gallery.open(tmp_path)) == 4
    assert gallery_files(tmp_path) == ["g000001.camera_statistics.json", "g000001.metadata.sqlite", "g000001.vectors.faiss", "manifest.json"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_gallery_files_report_a_full_disk_that_faiss_and_sqlite_would_hide():
    """FAISS's own file writer only prints a failed close (a small index is written at close), which left a truncated
    file to commit; SQLite says "database or disk is full". Both are an OSError ENOSPC naming the file."""
    index = faiss.IndexFlatIP(4)
    index.add(np.eye(4, dtype=np.float32))
    with pytest.raises(OSError) as full:
        write_index(index, Path("/dev/full"))
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match="/dev/full") as full:
        MetadataStore().dump(Path("/dev/full"))
    assert full.value.errno == errno.ENOSPC


def test_saves_of_two_handles_merge_adds_and_removals(tmp_path):
    x, _ = clustered_features(300, 16, seed=6)
    base = Gallery(16)
    base.add(x[:100], metadata={"by": "base"})
    base.save(tmp_path)
    first, second = Gallery.open(tmp_path), Gallery.open(tmp_path)
    ids_first = first.add(x[100:200], metadata={"by": "first"})
    first.remove([0, 1])
    ids_second = second.add(x[200:], metadata={"by": "second"})
    second.remove([2])
    first.save()
    second.save()  # merges first's committed adds and removals
    final = Gallery.open(tmp_path)
    expected = np.setdiff1d(np.concatenate([np.arange(100), ids_first, ids_second]), [0, 1, 2])
    np.testing.assert_array_equal(final.ids(), expected)
    np.testing.assert_allclose(final.vectors(ids_first), x[100:200], atol=1e-6)
    np.testing.assert_allclose(final.vectors(ids_second), x[200:], atol=1e-6)
    assert [row[0].metadata["by"] for row in final.search(x[[150, 250, 50]], k=1)] == ["first", "second", "base"]
    np.testing.assert_array_equal(second.ids(), expected)  # the saving handle now holds the union too
    first.save()  # and the first one merges the second's changes in turn
    np.testing.assert_array_equal(first.ids(), expected)


def test_a_merge_that_would_mix_ids_or_models_is_refused(tmp_path):
    x, _ = clustered_features(30, 16, seed=7)
    Gallery(16).save(tmp_path)
    first, second = Gallery.open(tmp_path), Gallery.open(tmp_path)
    first.add(x[:10])
    (tmp_path / ".lock" / "ids.next").unlink()  # the shared id counter lost: the second handle reuses ids
    second.add(x[10:20])
    first.save()
    with pytest.raises(GalleryChangedError, match="changed on disk.*reopen"):
        second.save()
    Gallery(16).save(tmp_path / "m")
    third, fourth = Gallery.open(tmp_path / "m"), Gallery.open(tmp_path / "m")
    third.check_model("model-a")  # each empty handle adopts the model of its first user
    fourth.check_model("model-b")
    third.save()
    with pytest.raises(GalleryChangedError, match="model model-a.*model model-b"):
        fourth.save()


def test_a_reader_lease_keeps_the_old_generation_until_it_ends(tmp_path):
    gallery = Gallery(4)
    gallery.add(np.eye(4))
    gallery.save(tmp_path)
    old = {stored["file"] for stored in manifest_of(tmp_path)["files"].values()}
    with directory_locks.reading(tmp_path):  # as another process loading generation 1 would
        gallery.add(np.eye(4))
        gallery.save()
        assert old <= set(gallery_files(tmp_path))  # generation 1 is still there for the reader
    gallery.save()
    assert not old & set(gallery_files(tmp_path))
    assert len(gallery_files(tmp_path)) == 4  # the manifest and generation 3: statistics, metadata, vectors


def test_a_gallery_on_a_read_only_mount_opens_without_a_lease_and_refuses_saves_in_one_line(tmp_path, monkeypatch):
    gallery = Gallery(4)
    gallery.add(np.eye(4))
    gallery.save(tmp_path)
    refuse_writes_under(monkeypatch, tmp_path, errno.EROFS)
    reopened = Gallery.open(tmp_path)
    assert len(reopened) == 4 and reopened.search(np.eye(4)[2], k=1)[0].entry_id == 2
    with pytest.raises(OSError, match=f"^\\[Errno 30\\] cannot write in {re.escape(str(tmp_path))}: read-only file"):
        reopened.save()
