"""The one-process ingest of keyed units (reid_sdk.search.units, gallery_writer): a run stopped by an error or by
Ctrl-C keeps what it saved, and a resumed run adds exactly the rest; a stand-in model, so no engine is needed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_sdk.gallery import Gallery
from reid_sdk.search.gallery_writer import GalleryTarget, IngestInterrupted, ingest_units
from reid_sdk.search.sources import csv_records, folder_records
from reid_sdk.search.units import image_units
from tests.helpers import random_crops
from tests.test_cli_index import write_market_folder


class MeanColour:
    """A stand-in model: a crop's mean colour (+1, never zero); ``fail_at`` makes its n-th call raise ``error``."""

    feature_dim = 3
    input_size = (64, 32)
    model_id = "mean-colour"

    def __init__(self, fail_at: int | None = None, error: type[BaseException] = RuntimeError) -> None:
        self.calls, self.fail_at, self.error = 0, fail_at, error

    def extract(self, crops):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error("stopped")
        return np.array([crop.reshape(-1, 3).mean(axis=0) + 1.0 for crop in crops], dtype=np.float32)


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    write_market_folder(root / "a", random_crops(6, seed=21, min_size=40))
    write_market_folder(root / "b", random_crops(5, seed=22, min_size=40), first_pid=10)
    return image_units(folder_records(root), shard_size=4)  # a: 4 + 2, b: 4 + 1; chunks of 2 crops


def keyed(location) -> dict[str, np.ndarray]:
    gallery = Gallery.open(location)
    ids = gallery.ids()
    rows, vectors = gallery.rows(ids), gallery.vectors(ids)
    keys = [rows[int(i)].metadata["key"] for i in ids]
    assert len(set(keys)) == len(keys), "an entry was added twice"
    return dict(zip(keys, vectors))


def test_an_error_saves_what_was_added_and_a_resumed_run_adds_the_rest(units, tmp_path):
    complete = ingest_units(units, MeanColour(), GalleryTarget(tmp_path / "complete"), batch_size=2)
    assert (complete.units, complete.added, complete.entries, len(units)) == (4, 11, 11, 4)
    with pytest.raises(RuntimeError, match="stopped"):
        ingest_units(units, MeanColour(fail_at=3), GalleryTarget(tmp_path / "g", save_every_s=None), batch_size=2)
    assert len(keyed(tmp_path / "g")) == 4  # two chunks of two, saved before the error went on
    resumed = ingest_units(units, MeanColour(), GalleryTarget(tmp_path / "g", resume=True), batch_size=2)
    assert (resumed.already_present, resumed.added, resumed.units) == (4, 7, 3)  # the first shard is left out whole
    found, expected = keyed(tmp_path / "g"), keyed(tmp_path / "complete")
    assert sorted(found) == sorted(expected)
    for key, vector in found.items():
        np.testing.assert_allclose(vector, expected[key], atol=1e-6)


def test_ctrl_c_keeps_the_last_periodic_save(units, tmp_path):
    with pytest.raises(IngestInterrupted) as stop:
        ingest_units(units, MeanColour(fail_at=4, error=KeyboardInterrupt),
                     GalleryTarget(tmp_path / "g", save_every_s=1e-9), batch_size=2)  # a save after every chunk
    assert (stop.value.summary.added, stop.value.summary.saved) == (6, 6)
    assert len(keyed(tmp_path / "g")) == 6
    with pytest.raises(IngestInterrupted) as stop:
        ingest_units(units, MeanColour(fail_at=2, error=KeyboardInterrupt), GalleryTarget(tmp_path / "new"),
                     batch_size=2)
    assert (stop.value.summary.added, stop.value.summary.saved) == (2, 0) and not (tmp_path / "new").exists()


def test_a_gallery_of_another_model_or_size_is_refused(units, tmp_path):
    ingest_units(units[:1], MeanColour(), GalleryTarget(tmp_path / "g"), batch_size=2)
    other = MeanColour()
    other.model_id = "another"
    with pytest.raises(ValueError, match="built with model mean-colour but the extractor runs model another"):
        ingest_units(units, other, GalleryTarget(tmp_path / "g", append=True), batch_size=2)
    with pytest.raises(FileExistsError, match="already exists"):
        ingest_units(units, MeanColour(), GalleryTarget(tmp_path / "g"), batch_size=2)


# -- the exactly-once key is the record: its path as listed, identity and camera ---------------------------------------
def write_records(root):
    """A CSV listing crop a.jpg under two identities, b.jpg, a link to b.jpg and a.jpg again as on line 2."""
    crops = random_crops(2, seed=23, min_size=40)
    root.mkdir()
    for name, crop in zip(("a.jpg", "b.jpg"), crops):
        cv2.imwrite(str(root / name), crop)
    (root / "link.jpg").symlink_to(root / "b.jpg")
    (root / "list.csv").write_text("path,identity,camera\na.jpg,1,c1\na.jpg,2,c1\nb.jpg,3,c2\nlink.jpg,4,c3\n"
                                   "a.jpg,1,c1\n")
    return root / "list.csv"


def labels_of(location) -> list[tuple]:
    gallery = Gallery.open(location)
    rows = gallery.rows(gallery.ids())
    return sorted((row.identity, row.camera, Path(row.metadata["path"]).name) for row in rows.values())


def test_records_naming_one_file_are_one_entry_each_and_a_repeated_row_is_named(tmp_path, caplog):
    records = csv_records(write_records(tmp_path / "crops"))
    assert "list.csv: 1 row(s) repeat an earlier row's path, identity and camera and were left out (one entry " \
           "each): line 6 (as line 2)" in caplog.text
    summary = ingest_units(image_units(records), MeanColour(), GalleryTarget(tmp_path / "g"), batch_size=2)
    assert (summary.added, summary.duplicates, summary.entries) == (4, 0, 4)
    assert labels_of(tmp_path / "g") == [("1", "c1", "a.jpg"), ("2", "c1", "a.jpg"), ("3", "c2", "b.jpg"),
                                         ("4", "c3", "b.jpg")]
    resumed = ingest_units(image_units(records), MeanColour(), GalleryTarget(tmp_path / "g", resume=True))
    assert (resumed.already_present, resumed.added) == (4, 0)


def test_a_link_under_another_market_name_is_its_own_entry(tmp_path):
    names = write_market_folder(tmp_path / "crops", random_crops(1, seed=24, min_size=40))
    (tmp_path / "crops" / "0007_c2s1_000009_01.jpg").symlink_to(tmp_path / "crops" / names[0])
    summary = ingest_units(image_units(folder_records(tmp_path / "crops")), MeanColour(), GalleryTarget(tmp_path / "g"))
    assert summary.entries == 2
    assert [label[:2] for label in labels_of(tmp_path / "g")] == [(0, 1), (7, 2)]


def test_resuming_a_gallery_keyed_by_file_alone_adds_nothing_twice(units, tmp_path, monkeypatch):
    from reid_sdk.search import units as units_module

    with monkeypatch.context() as old:  # what galleries built before record keys hold
        old.setattr(units_module, "record_key", units_module._legacy_record_key)
        assert ingest_units(units, MeanColour(), GalleryTarget(tmp_path / "g"), batch_size=2).added == 11
    resumed = ingest_units(units, MeanColour(), GalleryTarget(tmp_path / "g", resume=True), batch_size=2)
    assert (resumed.already_present, resumed.added, len(Gallery.open(tmp_path / "g"))) == (11, 0, 11)
