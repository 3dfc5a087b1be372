"""Milvus Lite faults as library and reid-index users meet them (issue 36 item 10): a full disk met anywhere is one
line naming the file and pymilvus's and Milvus Lite's own error logs stay quiet; an overwriting build takes the old
gallery's place only at its save, so a build stopped before keeps the old gallery; a read-only gallery says why it
cannot be searched. The full disk is injected where Milvus Lite writes its files (a real one needs a mount)."""

from __future__ import annotations

import errno
import logging
import os

import numpy as np
import pytest

from reid_sdk._utils.atomic_file import DiskFullError
from reid_sdk.cli.index import main
from reid_sdk.gallery import Gallery
from tests.helpers import ctrl_c_at_gallery_add, random_crops, refuse_writes_under, tiny_model
from tests.test_cli_index import write_market_folder
from tests.test_gallery_contract import forget_milvus_lite_server

pytest.importorskip("milvus_lite", reason="milvus-lite: URIs need pip install milvus-lite")
from milvus_lite.db import MilvusLite  # noqa: E402
from milvus_lite.storage.wal import WAL  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from reid_sdk.model import save_checkpoint

    return save_checkpoint(tiny_model(), tmp_path_factory.mktemp("model") / "tiny.pt")


def fill_the_disk(monkeypatch) -> None:
    """Milvus Lite's writes of entries (its write-ahead log) and of collection properties fail as on a full disk."""
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(WAL, "write_insert", no_space)
    monkeypatch.setattr(MilvusLite, "alter_collection_properties", no_space)


class Records(logging.Handler):
    """Every record of pymilvus's and Milvus Lite's loggers that passes their levels."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def milvus_logs():
    records = Records()
    loggers = [logging.getLogger(name) for name in ("pymilvus", "milvus_lite")]
    for logger in loggers:
        logger.addHandler(records)
    yield records.records
    for logger in loggers:
        logger.removeHandler(records)


def saved_gallery(uri: str) -> None:
    gallery = Gallery(4, path=uri)
    gallery.add(np.eye(4), identities=[1, 2, 3, 4])
    gallery.save()
    gallery.close()


def test_a_full_disk_at_add_and_close_is_one_error_naming_the_file_and_milvus_logs_nothing(tmp_path, monkeypatch,
                                                                                          milvus_logs):
    uri = f"milvus-lite:{tmp_path / 'g.db'}"
    saved_gallery(uri)
    gallery = Gallery.open(uri)
    fill_the_disk(monkeypatch)
    with pytest.raises(DiskFullError, match=f"^no space left on device writing {tmp_path / 'g.db'}$"):
        gallery.add(np.eye(4)[:1])
    with pytest.raises(DiskFullError):  # recording the entry count at close meets the full disk too
        gallery.close()
    assert [record.getMessage() for record in milvus_logs] == []
    monkeypatch.undo()
    assert len(Gallery.open(uri)) == 4


def test_an_overwriting_gallery_replaces_the_old_one_at_its_save_and_never_before(tmp_path):
    uri = f"milvus-lite:{tmp_path / 'g.db'}"
    saved_gallery(uri)
    abandoned = Gallery(4, path=uri, overwrite=True)
    abandoned.add(np.eye(4)[:2], identities=[7, 8])
    assert sorted(row.identity for row in Gallery.open(uri).rows(Gallery.open(uri).ids()).values()) == [1, 2, 3, 4]
    abandoned.close()  # never saved: dropped, the old gallery stays
    kept = Gallery.open(uri)
    assert sorted(row.identity for row in kept.rows(kept.ids()).values()) == [1, 2, 3, 4]
    kept.close()
    replacement = Gallery(4, path=uri, overwrite=True)
    replacement.add(np.eye(4)[:2], identities=[7, 8])
    replacement.save()
    replacement.add(np.eye(4)[2:3], identities=[9])  # the handle goes on writing where the old gallery was
    replacement.close()
    reopened = Gallery.open(uri)
    assert sorted(row.identity for row in reopened.rows(reopened.ids()).values()) == [7, 8, 9]
    assert reopened.search(np.eye(4)[1], k=1)[0].identity == 8
    reopened.close()
    import pymilvus

    client = pymilvus.MilvusClient(str(tmp_path / "g.db"))
    assert client.list_collections() == [reopened._backend._name]  # nothing left aside
    client.close()


def test_a_build_overwriting_a_milvus_gallery_that_meets_a_full_disk_keeps_the_old_one(checkpoint, tmp_path,
                                                                                      monkeypatch, capsys,
                                                                                      milvus_logs):
    write_market_folder(tmp_path / "images", random_crops(4, seed=31, min_size=40))
    uri = f"milvus-lite:{tmp_path / 'g.db'}"
    build = ["build", "--images", str(tmp_path / "images"), "--out", uri, "--model", str(checkpoint), "--device",
             "cpu"]
    assert main(build) == 0
    fill_the_disk(monkeypatch)
    assert main([*build, "--overwrite"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and milvus_logs == []
    assert error.splitlines()[-1] == f"reid-index: error: no space left on device writing {tmp_path / 'g.db'}"
    monkeypatch.undo()
    assert len(Gallery.open(uri)) == 4


def test_ctrl_c_in_an_overwriting_milvus_build_keeps_the_old_gallery_and_says_so(checkpoint, tmp_path, monkeypatch,
                                                                                capsys):
    write_market_folder(tmp_path / "images", random_crops(4, seed=32, min_size=40))
    uri = f"milvus-lite:{tmp_path / 'g.db'}"
    build = ["build", "--images", str(tmp_path / "images"), "--out", uri, "--model", str(checkpoint), "--device",
             "cpu", "--batch-size", "2"]
    assert main(build) == 0
    ctrl_c_at_gallery_add(monkeypatch)
    capsys.readouterr()
    assert main([*build, "--overwrite"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"reid-index: interrupted after adding 2 of 4 records: nothing saved, {uri} is as it was")
    monkeypatch.undo()
    assert len(Gallery.open(uri)) == 4


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_milvus_lite_gallery_says_why_it_cannot_be_searched(tmp_path, monkeypatch, code):
    uri = f"milvus-lite:{tmp_path / 'g.db'}"
    saved_gallery(uri)
    forget_milvus_lite_server(tmp_path / "g.db")
    refuse_writes_under(monkeypatch, tmp_path, code)
    with pytest.raises(OSError) as refused:
        Gallery.open(uri)
    assert str(refused.value) == (
        f"[Errno {code}] cannot write in {tmp_path / 'g.db'}: {os.strerror(code).lower()} (Milvus Lite writes a lock "
        "in its folder even to search: copy the gallery to a folder it may write in, or serve a FAISS gallery, "
        "which opens read-only)")


def names_in(path) -> list[str]:
    import pymilvus

    client = pymilvus.MilvusClient(str(path))
    try:
        return sorted(client.list_collections())
    finally:
        client.close()


def identities_in(uri: str) -> list:
    gallery = Gallery.open(uri)
    try:
        return sorted(row.identity for row in gallery.rows(gallery.ids()).values())
    finally:
        gallery.close()


def test_a_save_stopped_between_the_renames_puts_the_old_gallery_back(tmp_path, monkeypatch):
    import pymilvus

    uri = f"milvus-lite:{tmp_path / 'g.db'}?collection=shop"
    saved_gallery(uri)
    replacement = Gallery(4, path=uri, overwrite=True)
    replacement.add(np.eye(4)[:2], identities=[7, 8])
    real_rename, renames = pymilvus.MilvusClient.rename_collection, []

    def rename_then_ctrl_c(self, *args, **kwargs):
        renames.append(args)
        if len(renames) == 2:  # the new gallery into the old one's place
            raise KeyboardInterrupt
        return real_rename(self, *args, **kwargs)

    monkeypatch.setattr(pymilvus.MilvusClient, "rename_collection", rename_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        replacement.save()
    replacement.close()
    monkeypatch.undo()
    assert identities_in(uri) == [1, 2, 3, 4] and names_in(tmp_path / "g.db") == ["shop"]


def test_a_replacement_killed_between_the_renames_is_completed_at_the_next_open(tmp_path):
    import pymilvus

    uri = f"milvus-lite:{tmp_path / 'g.db'}?collection=shop"
    saved_gallery(uri)
    new = Gallery(4, path=f"milvus-lite:{tmp_path / 'g.db'}?collection=shop_reid_sdk_building")  # saved aside
    new.add(np.eye(4)[:2], identities=[7, 8])
    new.save()
    new.close()
    client = pymilvus.MilvusClient(str(tmp_path / "g.db"))
    client.rename_collection("shop", "shop_reid_sdk_replaced")  # where a kill between the renames leaves them
    client.close()
    assert identities_in(uri) == [7, 8] and names_in(tmp_path / "g.db") == ["shop"]
