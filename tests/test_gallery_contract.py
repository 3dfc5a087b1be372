"""The gallery contract, run on every backend: FAISS + SQLite (a directory) and Milvus Lite (``milvus-lite:``).

Results are checked against an independent numpy brute force. One Milvus Lite file serves the whole module
(a collection per test), so its embedded server starts once.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reid_sdk.gallery import CorruptGalleryError, Gallery, GalleryConfig, ModelMismatchError
from reid_sdk.search import index as index_module
from reid_sdk.search.index import ReIDIndex
from reid_sdk.search.reranking import RerankConfig, reranked_distances
from reid_sdk.synthetic.vectors import clustered_features
from tests.helpers import refuse_writes_under
from tests.test_gallery import brute_force, normalised, standardised_brute_force

BACKENDS = ["faiss", "milvus-lite"]
_collections = itertools.count()


@pytest.fixture(scope="module")
def milvus_file(tmp_path_factory):
    pytest.importorskip("pymilvus", reason="the Milvus backend needs pip install 'reid-sdk[milvus]'")
    pytest.importorskip("milvus_lite", reason="milvus-lite: URIs need pip install milvus-lite")
    from pymilvus import MilvusClient

    path = tmp_path_factory.mktemp("milvus") / "galleries.db"
    keeper = MilvusClient(str(path))  # keeps the embedded server up between tests
    yield path
    keeper.close()


@pytest.fixture(params=BACKENDS)
def new_location(request, tmp_path):
    """A factory of fresh gallery locations on the backend under test."""
    if request.param == "faiss":
        return lambda: str(tmp_path / f"g{next(_collections)}")
    milvus_file = request.getfixturevalue("milvus_file")
    return lambda: f"milvus-lite:{milvus_file}?collection=c{next(_collections)}"


N = 240
CAMERAS = [1, "1", 2, None]  # camera 1 and camera "1" are different labels on every backend


@pytest.fixture()
def labelled():
    x, labels = clustered_features(N + 12, 16, seed=3)
    return {
        "x": x[:N], "queries": x[N:],
        "identities": [int(l) if i % 3 else f"p{l}" for i, l in enumerate(labels[:N])],
        "cameras": [CAMERAS[i % 4] for i in range(N)],
        "timestamps": [None if i % 10 == 0 else float(i) for i in range(N)],
        "track_ids": [i // 5 if i % 2 else None for i in range(N)],
        "metadata": [{"row": i, "tags": ["a", i % 2]} for i in range(N)],
    }


def fill(gallery: Gallery, data: dict) -> np.ndarray:
    return gallery.add(data["x"], identities=data["identities"], cameras=data["cameras"],
                       timestamps=data["timestamps"], track_ids=data["track_ids"], metadata=data["metadata"])


def test_exact_search_returns_the_brute_force_top_k_with_its_rows(new_location, labelled):
    gallery = Gallery(16, path=new_location())
    ids = fill(gallery, labelled)
    assert len(ids) == N == len(gallery) and len(set(ids.tolist())) == N
    np.testing.assert_array_equal(gallery.ids(), np.sort(ids))
    scores, found = gallery.search_ids(labelled["queries"], k=10)  # camera-standardised: the entries have cameras
    expected_scores, rows = standardised_brute_force(labelled["x"], labelled["cameras"], labelled["queries"], 10)
    np.testing.assert_array_equal(found, ids[rows])
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    for match, row in zip(gallery.search(labelled["queries"][0], k=10), rows[0]):
        assert (match.entry_id, match.identity, match.camera, match.timestamp, match.track_id, match.metadata) == (
            ids[row], labelled["identities"][row], labelled["cameras"][row], labelled["timestamps"][row],
            labelled["track_ids"][row], labelled["metadata"][row])
    np.testing.assert_allclose(gallery.vectors(ids[[5, 2]]), normalised(labelled["x"][[5, 2]]), atol=1e-6)
    with pytest.raises(KeyError, match="no gallery entries"):
        gallery.vectors([int(ids.max()) + 1000])
    gallery.close()


def test_filters_select_the_same_entries_as_numpy(new_location, labelled):
    gallery = Gallery(16, path=new_location())
    ids = fill(gallery, labelled)
    cameras = np.array(labelled["cameras"], dtype=object)
    times = np.array([np.nan if t is None else t for t in labelled["timestamps"]])
    is_camera = lambda value: np.array([c == value and type(c) is type(value) for c in cameras])  # noqa: E731
    with np.errstate(invalid="ignore"):
        cases = [
            (dict(cameras=1), is_camera(1)),
            (dict(cameras="1"), is_camera("1")),
            (dict(cameras=[2, "1"]), is_camera(2) | is_camera("1")),
            (dict(exclude_camera=1), ~is_camera(1)),  # entries without a camera stay
            (dict(exclude_camera=[1, "1", "elsewhere"]), ~is_camera(1) & ~is_camera("1")),
            (dict(since=50.0, until=120.0), (times >= 50) & (times <= 120)),  # no timestamp: never in a range
            (dict(cameras=[2], since=100.0), is_camera(2) & (times >= 100)),
            (dict(cameras="nowhere"), np.zeros(N, bool)),
            # None in a list is the "no camera" label: it keeps or drops the entries without one
            (dict(cameras=[None]), is_camera(None)),
            (dict(cameras=[2, None]), is_camera(2) | is_camera(None)),
            (dict(exclude_camera=[None]), ~is_camera(None)),
            (dict(exclude_camera=[2, None]), ~is_camera(2) & ~is_camera(None)),
            (dict(exclude_camera=[]), np.ones(N, bool)),  # excludes nothing
            (dict(cameras=[1, "2"]), is_camera(1)),  # camera "2" is not camera 2
            (dict(exclude_camera=["2"]), np.ones(N, bool)),
        ]
    for filters, mask in cases:
        scores, found = gallery.search_ids(labelled["queries"], k=10, **filters)
        expected_scores, rows = standardised_brute_force(labelled["x"], labelled["cameras"], labelled["queries"],
                                                         min(10, mask.sum()), mask)
        np.testing.assert_array_equal(found, ids[rows], err_msg=str(filters))
        np.testing.assert_allclose(scores, expected_scores, atol=1e-5, err_msg=str(filters))
    with pytest.raises(ValueError, match=r"cameras=\[\] keeps no entry"):
        gallery.search(labelled["queries"][0], cameras=[])
    gallery.close()


def test_removal_by_id_identity_and_time(new_location, labelled):
    gallery = Gallery(16, path=new_location())
    ids = fill(gallery, labelled)
    identities = labelled["identities"]
    keep = np.ones(N, bool)
    assert gallery.remove([ids[3], ids[3], ids[4], int(ids.max()) + 99]) == 2  # duplicates, unknown ids ignored
    keep[[3, 4]] = False
    an_int = next(i for i in identities if isinstance(i, int))
    as_text = str(an_int)
    removed = np.array([i == an_int and isinstance(i, int) for i in identities]) & keep
    assert gallery.remove_identity(an_int) == removed.sum() and gallery.remove_identity(as_text) == 0
    keep &= ~removed
    times = np.array([np.inf if t is None else t for t in labelled["timestamps"]])  # no timestamp: kept
    assert gallery.remove_before(30.0) == ((times < 30) & keep).sum()
    keep &= times >= 30
    with pytest.raises(ValueError, match="needs a timestamp"):
        gallery.remove_before(None)
    assert len(gallery) == keep.sum()
    np.testing.assert_array_equal(gallery.ids(), np.sort(ids[keep]))
    _, found = gallery.search_ids(labelled["queries"], k=10)  # the statistics count the kept entries only
    np.testing.assert_array_equal(found, ids[standardised_brute_force(labelled["x"], labelled["cameras"],
                                                                      labelled["queries"], 10, live=keep)[1]])
    _, found = gallery.search_ids(labelled["queries"], k=10, camera_standardise=False)
    np.testing.assert_array_equal(found, ids[brute_force(labelled["x"], labelled["queries"], 10, keep)[1]])
    new = gallery.add(labelled["x"][:3])
    assert not set(new.tolist()) & set(ids.tolist())  # ids are never reused
    assert gallery.remove_identity(None) == 3  # None: the entries without an identity
    gallery.close()


def test_reading_removed_or_unknown_ids_is_a_key_error_naming_them(new_location, labelled):
    gallery = Gallery(16, path=new_location())
    ids = fill(gallery, labelled)
    gallery.remove([ids[7]])
    unknown = int(ids.max()) + 1000
    with pytest.raises(KeyError, match=rf"no gallery entries with ids \[{ids[7]}, {unknown}\]"):
        gallery.vectors([ids[1], ids[7], unknown])
    many = list(range(unknown, unknown + 12))
    with pytest.raises(KeyError, match=r"\(and 2 more\)"):
        gallery.vectors(many)
    for not_ids in ([ids[1] + 0.5], [True], "12", [None], [2**63]):
        with pytest.raises(ValueError, match="entry ids must be"):
            gallery.vectors(not_ids)
        with pytest.raises(ValueError, match="entry ids must be"):
            gallery.remove(not_ids)
    assert len(gallery) == N - 1
    assert gallery.vectors([ids[2], ids[2]]).shape == (2, 16) and gallery.vectors([]).shape == (0, 16)
    gallery.close()


def test_k_is_clamped_to_what_exists(new_location, labelled):
    gallery = Gallery(16, path=new_location())
    assert gallery.search(labelled["queries"][0], k=2**31) == []
    ids = fill(gallery, labelled)
    scores, found = gallery.search_ids(labelled["queries"][:2], k=2**31)
    assert found.shape == (2, N) and sorted(found[0].tolist()) == sorted(ids.tolist())
    assert len(gallery.search(labelled["queries"][0], k=2**31, cameras=2)) == N // 4
    with pytest.raises(ValueError, match="k must be a positive int"):
        gallery.search(labelled["queries"][0], k=0)
    gallery.close()


def test_save_and_reopen(new_location, labelled):
    location = new_location()
    gallery = Gallery(16, path=location, model_id="model-a")
    fill(gallery, labelled)
    expected = gallery.search(labelled["queries"], k=7, exclude_camera=2, since=20.0)
    assert str(gallery.save()) == location
    gallery.close()
    with Gallery.open(location) as reopened:
        assert (len(reopened), reopened.dim, reopened.model_id, reopened.index_type) == (N, 16, "model-a", "flat")
        assert reopened.search(labelled["queries"], k=7, exclude_camera=2, since=20.0) == expected
        with pytest.raises(ModelMismatchError, match="built with model model-a but the extractor runs model model-b"):
            reopened.check_model("model-b")
        reopened.check_model("model-a")
        with pytest.raises(FileExistsError, match="already exists"):
            Gallery(16, path=location)
    replaced = Gallery(8, path=location, overwrite=True)
    replaced.save()
    replaced.close()
    with Gallery.open(location) as reopened:
        assert (len(reopened), reopened.dim, reopened.model_id) == (0, 8, None)
        reopened.check_model("model-c")  # an empty gallery adopts the model of its first user
        assert reopened.model_id == "model-c"


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_find_the_true_neighbours(new_location, kind):
    x, _ = clustered_features(3050, 32, seed=5)
    gallery = Gallery(32, index_type=kind, path=new_location(), config=GalleryConfig(nlist=16, nprobe=8))
    ids = gallery.add(x[:3000], cameras=np.arange(3000) % 3)
    _, found = gallery.search_ids(x[3000:], k=10)
    truth = ids[brute_force(x[:3000], x[3000:], 10)[1]]
    assert np.mean([len(np.intersect1d(f, t)) / 10 for f, t in zip(found, truth)]) >= 0.9
    _, found = gallery.search_ids(x[3000:], k=10, cameras=0, until=None)
    assert (found >= 0).all() and (np.isin(found, ids[::3])).all()
    gallery.close()


class ProjectionExtractor:
    """A stand-in extractor with a model identity: mean colour per row band, projected."""

    feature_dim = 8

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def extract(self, crops) -> np.ndarray:
        bands = [np.asarray(c, np.float32).reshape(4, -1, 3).mean(axis=1).ravel()[: self.feature_dim] for c in crops]
        return np.asarray(bands, np.float32) + 1.0


def test_reid_index_on_every_backend(new_location):
    location = new_location()
    crops = [np.random.default_rng(i).integers(0, 256, (16, 8, 3), dtype=np.uint8) for i in range(6)]
    index = ReIDIndex.create(ProjectionExtractor("model-a"), path=location)
    ids = index.add(crops, identity=[f"p{i}" for i in range(6)], camera=[1, 2] * 3)
    index.save()
    index.gallery.close()
    reloaded = ReIDIndex.load(ProjectionExtractor("model-a"), location)
    assert reloaded.search(crops[4], k=1, query_camera=1)[0].entry_id == ids[4]
    assert reloaded.identify(crops[5], threshold=0.999, query_camera=2) == "p5"
    reloaded.gallery.close()
    with pytest.raises(ModelMismatchError, match="model-a.*model-b"):
        ReIDIndex.load(ProjectionExtractor("model-b"), location)


class FeaturesOnly:
    """ReIDIndex needs an extractor; the re-ranking test searches with features directly."""

    feature_dim = 16

    def extract(self, crops) -> np.ndarray:
        raise AssertionError("not used")


@pytest.mark.parametrize("standardise", [False, True])
def test_reranking_reorders_the_exact_candidates_and_reads_labels_of_the_kept_only(new_location, labelled,
                                                                                   monkeypatch, standardise):
    gallery = Gallery(16, path=new_location())
    ids = fill(gallery, labelled)
    queries, x = labelled["queries"], labelled["x"]
    scores, found, vectors = gallery.search_with_vectors(queries, k=30, exclude_camera=2,
                                                         camera_standardise=standardise)
    cameras = [labelled["cameras"][row] for row in np.searchsorted(ids, found.ravel())]
    stored = gallery.vectors(found.ravel())
    expected = gallery.camera_statistics.standardise(stored, cameras) if standardise else stored
    np.testing.assert_allclose(vectors, expected.reshape(vectors.shape), atol=1e-6)
    labelled_rows = []
    rows = gallery._backend.rows
    monkeypatch.setattr(gallery._backend, "rows", lambda wanted: labelled_rows.append(len(wanted)) or rows(wanted))
    monkeypatch.setattr(index_module, "_RERANK_BATCH_BYTES", 5 * 30 * 16 * 4)  # batches of 5 queries
    config = RerankConfig(k1=5, k2=3, candidates=30)
    got = ReIDIndex(FeaturesOnly(), gallery, standardise).search_features(queries, k=4, rerank=config,
                                                                           exclude_camera=2)
    assert len(labelled_rows) == 3 and sum(labelled_rows) <= 4 * len(queries)
    # the gallery's own candidates (the filter tests hold them to brute force): a float32 near-tie at the 30th
    # candidate on another CPU cannot make the expectation differ from what the index re-ranked
    row_of = {int(entry): row for row, entry in enumerate(ids)}
    candidates = [np.array([row_of[int(entry)] for entry in entries if entry >= 0]) for entries in found]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)  # as the gallery stores them
    if standardise:  # as the search compared them
        unit = gallery.camera_statistics.standardise(unit, labelled["cameras"])
    queries = gallery.query_vectors(queries, camera_standardise=standardise)
    for query, rows_of_query, scores_of_query, matches in zip(queries, candidates, scores, got):
        order = np.argsort(reranked_distances(query[None], unit[rows_of_query], config)[0], kind="stable")[:4]
        kept = rows_of_query[order]
        assert [(m.entry_id, m.identity, m.metadata) for m in matches] == [
            (ids[r], labelled["identities"][r], labelled["metadata"][r]) for r in kept]
        np.testing.assert_allclose([m.score for m in matches], scores_of_query[order], atol=1e-5)
    gallery.close()


# -- what only the Milvus backend has -------------------------------------------------------------------------------
def test_milvus_refusals_are_clear(milvus_file, tmp_path):
    location = f"milvus-lite:{milvus_file}?collection=refusals"
    with pytest.raises(ValueError, match="Milvus Lite has no IVF_PQ"):
        Gallery(16, index_type="ivfpq", path=location)
    gallery = Gallery(4, path=location)
    with pytest.raises(ValueError, match="limited to 1024 characters"):
        gallery.add(np.eye(4)[:1], identities="x" * 1025)
    with pytest.raises(ValueError, match="cannot be saved to"):
        gallery.save(tmp_path / "elsewhere")
    gallery.close()
    missing = tmp_path / "missing.db"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Gallery.open(f"milvus-lite:{missing}")
    assert not missing.exists()  # opening never creates an empty database
    with pytest.raises(FileNotFoundError, match="no collection 'absent'"):
        Gallery.open(f"milvus-lite:{milvus_file}?collection=absent")


def test_a_milvus_gallery_changed_behind_its_back_is_refused(milvus_file, labelled, caplog):
    from pymilvus import MilvusClient

    from reid_sdk.gallery import CorruptGalleryError

    location = f"milvus-lite:{milvus_file}?collection=tampered"
    gallery = Gallery(16, path=location, model_id="model-a")
    ids = fill(gallery, labelled)
    gallery.remove(ids[:10])
    gallery.close()  # close records the count too: no save needed
    reopened = Gallery.open(location)
    assert len(reopened) == N - 10
    reopened.remove(ids[10:12])
    reopened._backend._client.close()  # a crash after writes: no count recorded
    with caplog.at_level("WARNING", logger="reid_sdk.gallery.milvus"), Gallery.open(location) as reopened:
        assert len(reopened) == N - 12 and "cannot be checked" in caplog.text
        reopened.save()
    client = MilvusClient(str(milvus_file))
    client.delete("tampered", ids=ids[12:15].tolist())
    with pytest.raises(CorruptGalleryError, match=f"holds {N - 15} entries but reid-sdk recorded {N - 12}"):
        Gallery.open(location)
    client.delete("tampered", filter="id >= 0")  # emptied
    with pytest.raises(CorruptGalleryError, match=f"holds 0 entries but reid-sdk recorded {N - 12}"):
        Gallery.open(location)
    client.close()


def test_a_foreign_milvus_collection_is_not_a_gallery(milvus_file):
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(str(milvus_file))
    schema = client.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    index_params = client.prepare_index_params()
    index_params.add_index("vector", index_type="FLAT", metric_type="IP")
    client.create_collection("foreign", schema=schema, index_params=index_params)
    client.close()
    with pytest.raises(ValueError, match="'foreign' .* is not a reid-sdk gallery"):
        Gallery.open(f"milvus-lite:{milvus_file}?collection=foreign")


def test_a_milvus_lite_file_held_by_another_process_is_a_clear_error(tmp_path):
    pytest.importorskip("milvus_lite", reason="milvus-lite: URIs need pip install milvus-lite")
    uri = f"milvus-lite:{tmp_path / 'held.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from reid_sdk.gallery import Gallery\ng = Gallery(4, path={uri!r})\n"
                               "print('open', flush=True)\nimport sys\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ConnectionError, match="one process at a time"):
            Gallery.open(uri)
    finally:
        holder.communicate(timeout=120)


def forget_milvus_lite_server(path: Path) -> None:
    """Stop this process's Milvus Lite server of ``path``: the next client finds only the files, as a new process."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(path))


def saved_milvus_lite_gallery(path: Path) -> str:
    """The URI of a saved Milvus Lite gallery of 4 entries at ``path``, as a new process finds it."""
    pytest.importorskip("milvus_lite", reason="milvus-lite: URIs need pip install milvus-lite")
    uri = f"milvus-lite:{path}"
    gallery = Gallery(4, path=uri, index_type="hnsw")
    gallery.add(np.eye(4), identities=[1, 2, 3, 4])
    gallery.save()
    gallery.close()
    forget_milvus_lite_server(path)
    return uri


def damage_milvus_lite_file(path: Path, folder: str) -> None:
    """Cut the gallery's segment (``data``) short, or overwrite its vector index (``indexes``) with random bytes."""
    damaged = next(path.rglob(f"{folder}/*"))
    data = damaged.read_bytes()
    damaged.write_bytes(data[:100] if folder == "data" else np.random.default_rng(0).bytes(len(data)))


@pytest.mark.parametrize("folder", ["data", "indexes"])
def test_a_damaged_milvus_lite_gallery_is_one_clear_error_and_can_be_overwritten(tmp_path, folder):
    uri = saved_milvus_lite_gallery(tmp_path / "g.db")
    damage_milvus_lite_file(tmp_path / "g.db", folder)
    with pytest.raises(CorruptGalleryError, match=f"^the Milvus Lite gallery {re.escape(uri)} cannot be read .*: "
                                                  f"restore {re.escape(str(tmp_path / 'g.db'))} from a copy"):
        Gallery.open(uri)
    replacement = Gallery(4, path=uri, overwrite=True)  # ours to replace: the collection is dropped unread
    replacement.add(np.eye(4)[:2])
    replacement.save()
    assert len(replacement) == 2 and replacement.search(np.eye(4)[1], k=1)[0].entry_id >= 0
    replacement.close()


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])  # chmod a-w, a read-only mount
def test_a_milvus_lite_folder_it_may_not_write_in_is_named_not_blamed_on_another_process(tmp_path, monkeypatch,
                                                                                         code):
    uri = saved_milvus_lite_gallery(tmp_path / "g.db")
    refuse_writes_under(monkeypatch, tmp_path, code)
    reason = re.escape(os.strerror(code).lower())
    with pytest.raises(OSError, match=f"cannot write in {re.escape(str(tmp_path / 'g.db'))}: {reason}") as searching:
        Gallery.open(uri)  # Milvus Lite writes in its folder even to search
    with pytest.raises(OSError, match=f"cannot write in {re.escape(str(tmp_path))}: {reason}") as building:
        Gallery(4, path=f"milvus-lite:{tmp_path / 'new.db'}")
    for raised in (searching, building):
        assert raised.value.errno == code and "one process" not in str(raised.value)


def test_a_full_disk_under_milvus_lite_is_one_line_naming_the_file(tmp_path, monkeypatch):
    parquet = pytest.importorskip("pyarrow.parquet")
    uri = saved_milvus_lite_gallery(tmp_path / "g.db")
    gallery = Gallery.open(uri)
    gallery.add(np.eye(4))

    def no_space(table, where, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))

    monkeypatch.setattr(parquet, "write_table", no_space)
    segment = f"{re.escape(str(tmp_path / 'g.db'))}/.*parquet"
    with pytest.raises(OSError, match=f"^no space left on device writing {segment}$"):
        gallery.save()
    monkeypatch.undo()
    gallery.close()
    forget_milvus_lite_server(tmp_path / "g.db")
    assert len(Gallery.open(uri)) == 8  # nothing lost: Milvus Lite's log kept what the failed save was to write
