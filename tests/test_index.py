"""ReIDIndex over a duck-typed extractor, a real tiny extractor, and without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from reid_sdk.gallery import Gallery
from reid_sdk.search.index import Match, ReIDIndex
from reid_sdk.inference.preprocess import as_crop_list, preprocess_batch
from tests.helpers import random_crops


class ProjectionExtractor:
    """A deterministic stand-in extractor: the real preprocessing, then a fixed random projection."""

    def __init__(self, feature_dim: int = 16, seed: int = 0) -> None:
        self.feature_dim = feature_dim
        self.projection = np.random.default_rng(seed).standard_normal((3 * 8 * 4, feature_dim)).astype(np.float32)

    def extract(self, crops) -> np.ndarray:
        pixels = preprocess_batch(as_crop_list(crops), (8, 4))
        features = (pixels.reshape(len(pixels), -1).astype(np.float32) / 255 - 0.5) @ self.projection
        return features / np.linalg.norm(features, axis=1, keepdims=True)


@pytest.fixture()
def index() -> ReIDIndex:
    reid = ReIDIndex.create(ProjectionExtractor())
    crops = random_crops(30, seed=1)
    reid.add(crops[:20], identity=[i // 2 for i in range(20)], camera=["c1", "c2"] * 10, timestamp=np.arange(20.0),
             metadata={"source": "test"})
    return reid


def test_search_single_and_batch(index):
    crops = random_crops(30, seed=1)
    matches = index.search(crops[4], k=3, query_camera="c1")  # crop 4 is camera c1's: scores itself 1
    assert isinstance(matches[0], Match) and len(matches) == 3
    assert (matches[0].entry_id, matches[0].identity, matches[0].camera) == (4, 2, "c1")
    assert matches[0].score == pytest.approx(1.0, abs=1e-5) and matches[0].metadata == {"source": "test"}
    batch = index.search_batch([crops[4], crops[7]], k=5, exclude_camera="c1")
    assert len(batch) == 2 and all(m.camera == "c2" for row in batch for m in row)
    assert batch[1][0].entry_id == 7
    assert [m.score for m in batch[0]] == sorted((m.score for m in batch[0]), reverse=True)
    assert index.search_batch(crops[4][None], k=3, query_camera="c1") == [matches]  # 1 x H x W x 3: one list
    assert index.search_batch(np.stack([crops[0], crops[0]])) == index.search_batch([crops[0], crops[0]])


def test_search_of_several_crops_is_deprecated_but_answers_as_before(index):
    crops = random_crops(30, seed=1)
    for several in (crops[3:6], tuple(crops[3:6]), np.stack([crops[0]] * 3)):
        with pytest.warns(DeprecationWarning, match="use search_batch"):
            found = index.search(several, k=4)
        assert found == index.search_batch(several, k=4)


@pytest.mark.parametrize("one", [np.zeros((20, 10, 3), np.uint8), np.zeros((20, 10), np.uint8)])
def test_search_batch_refuses_one_array_that_could_be_a_crop(index, one):
    """(20, 10, 3) is one colour crop or three 20 x 10 grey ones: search_batch does not guess."""
    with pytest.raises(ValueError, match="search_batch takes a list of crops or an N x H x W x C array"):
        index.search_batch(one)


def test_tracklet_entry_is_the_normalised_mean(index):
    extractor = index.extractor
    frames = random_crops(5, seed=9)
    entry = index.add_tracklet(frames, identity="walker", camera="c3", track_id=17)
    mean = extractor.extract(frames).astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(index.gallery.vectors([entry])[0], mean / np.linalg.norm(mean), atol=1e-6)
    best = index.search_tracklet(frames, k=1)[0]
    assert (best.entry_id, best.identity, best.track_id) == (entry, "walker", 17)
    assert index.search_tracklet(frames, k=3, cameras=["c1"])[0].camera == "c1"


def test_identify_uses_the_threshold(index):
    crops = random_crops(30, seed=1)
    assert index.identify(crops[9], threshold=0.99, query_camera="c2") == 4
    stranger = random_crops(1, seed=123)[0]
    best = index.search(stranger, k=1)[0].score
    assert index.identify(stranger, threshold=min(1.0, best + 1e-3)) is None
    with pytest.raises(ValueError, match="threshold"):
        index.identify(stranger, threshold=2.0)


def test_save_load_and_dimension_check(index, tmp_path):
    crops = random_crops(30, seed=1)
    index.save(tmp_path / "g")
    loaded = ReIDIndex.load(ProjectionExtractor(), tmp_path / "g")
    assert loaded.search_batch(crops[20:25], k=4) == index.search_batch(crops[20:25], k=4)
    with pytest.raises(ValueError, match="holds 16-d features but the extractor produces 8-d"):
        ReIDIndex.load(ProjectionExtractor(feature_dim=8), tmp_path / "g")
    with pytest.raises(ValueError, match="holds 32-d features"):
        ReIDIndex(ProjectionExtractor(), Gallery(32))


def test_bad_crops_raise_the_extractors_value_error(index):
    with pytest.raises(ValueError, match="dtype float64"):
        index.search(np.zeros((20, 10, 3)))
    with pytest.raises(ValueError):
        index.add([np.zeros((0, 4, 3), np.uint8)])


def test_with_the_real_tiny_extractor(tmp_path):
    from reid_sdk.inference.extractor import FeatureExtractor
    from tests.helpers import tiny_model

    reid = ReIDIndex.create(FeatureExtractor(tiny_model(), device="cpu"), index_type="hnsw")
    crops = random_crops(12, seed=4)
    ids = reid.add(crops, identity=list(range(12)), camera="c1")
    assert [row[0].entry_id for row in reid.search_batch(crops, k=2)] == ids.tolist()
    assert reid.identify(crops[3], threshold=0.999) == 3


def test_channel_order_names_the_crops_colour_order(tmp_path):
    """RGB crops given as RGB find what their BGR twins find; given as BGR (swapped colours) they do not."""
    from reid_sdk.inference.extractor import FeatureExtractor
    from tests.helpers import tiny_model

    model = tiny_model()
    reid = ReIDIndex.create(FeatureExtractor(model, device="cpu"))
    crops = random_crops(8, seed=6)
    rgb = [crop[:, :, ::-1].copy() for crop in crops]
    ids = (reid.add(rgb[:4], identity=[0, 1, 2, 3], channel_order="rgb").tolist()
           + reid.add(crops[4:], identity=[4, 5, 6, 7]).tolist())
    stored = reid.gallery.vectors(ids)
    np.testing.assert_allclose(stored, reid.extractor.extract(crops), atol=1e-5)
    assert reid.search(rgb[5], k=1, channel_order="rgb") == reid.search(crops[5], k=1)
    assert reid.search_batch(rgb, k=1, channel_order="rgb") == reid.search_batch(crops, k=1)
    assert reid.search_tracklet(rgb[:2], k=1, channel_order="rgb") == reid.search_tracklet(crops[:2], k=1)
    assert reid.identify(rgb[2], threshold=0.999, channel_order="rgb") == 2
    assert not np.allclose(reid.extractor.extract(rgb[:1]), stored[:1], atol=1e-3)  # the default order is BGR
    from_rgb_extractor = ReIDIndex(FeatureExtractor(model, device="cpu", channel_order="rgb"), reid.gallery)
    assert from_rgb_extractor.search_batch(rgb, k=1) == reid.search_batch(crops, k=1)
    with pytest.raises(ValueError, match="channel_order must be one of"):
        reid.search(crops[0], channel_order="bgra")


def test_index_and_gallery_work_without_torch(tmp_path):
    code = f"""
    import sys
    for name in ('torch', 'torchvision'):
        sys.modules[name] = None
    import numpy as np
    from reid_sdk.gallery import Gallery
    from reid_sdk.search.index import ReIDIndex
    import reid_sdk.cli.index

    class Extractor:
        feature_dim = 4
        def extract(self, crops):
            return np.array([c.reshape(-1, 3).mean(0).tolist() + [1.0] for c in crops], dtype=np.float32)

    reid = ReIDIndex.create(Extractor(), index_type='hnsw')
    crop = np.full((8, 4, 3), 200, np.uint8)
    reid.add([crop, np.full((8, 4, 3), 10, np.uint8)], identity=['a', 'b'])
    reid.save({str(tmp_path / 'g')!r})
    again = ReIDIndex.load(Extractor(), {str(tmp_path / 'g')!r})
    assert again.identify(crop, 0.99) == 'a' and 'torch' not in [m for m in sys.modules if sys.modules[m]]
    print('ok')
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_gallery_refuses_another_models_features(tmp_path):
    import onnx

    from reid_sdk.inference.model_contract import file_fingerprint
    from reid_sdk.export.onnx_export import export_onnx
    from reid_sdk.inference.extractor import FeatureExtractor
    from reid_sdk.gallery import ModelMismatchError
    from reid_sdk.model import save_checkpoint
    from tests.helpers import tiny_model

    model_a = save_checkpoint(tiny_model(seed=0), tmp_path / "a.pt")
    model_b = save_checkpoint(tiny_model(seed=1), tmp_path / "b.pt")
    onnx_a = export_onnx(model_a, tmp_path / "a.onnx")
    extractor_a, extractor_b = FeatureExtractor(model_a, device="cpu"), FeatureExtractor(model_b, device="cpu")
    # the same weights have one identity as a module, a checkpoint and an export; other weights another
    assert extractor_a.model_id == FeatureExtractor(onnx_a).model_id == FeatureExtractor(tiny_model(seed=0)).model_id
    assert extractor_a.model_id.startswith("reid-sdk:") and extractor_b.model_id != extractor_a.model_id
    foreign = onnx.load(onnx_a)
    del foreign.metadata_props[:]
    onnx.save(foreign, tmp_path / "foreign.onnx")
    foreign_id = FeatureExtractor(tmp_path / "foreign.onnx", input_size=(64, 32), model_channel_order="rgb").model_id
    assert foreign_id == file_fingerprint(tmp_path / "foreign.onnx") and foreign_id.startswith("file:")

    crops = random_crops(6, seed=8)
    index = ReIDIndex.create(extractor_a)
    index.add(crops, identity=list(range(6)))
    index.save(tmp_path / "g")
    assert ReIDIndex.load(FeatureExtractor(onnx_a), tmp_path / "g").identify(crops[2], threshold=0.99) == 2
    with pytest.raises(ModelMismatchError, match=f"built with model {extractor_a.model_id} but the extractor runs "
                                                 f"model {extractor_b.model_id}"):
        ReIDIndex.load(extractor_b, tmp_path / "g")


def test_video_tracks_are_read_as_bgr_whatever_the_extractors_default(tmp_path):
    """Frames come from OpenCV (BGR): an extractor made for RGB crops gives the same track features there."""
    import cv2

    from reid_sdk.inference.extractor import FeatureExtractor
    from reid_sdk.tracks import MotTracks
    from tests.helpers import tiny_model

    writer = cv2.VideoWriter(str(tmp_path / "c1.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 96))
    rng = np.random.default_rng(0)
    for _ in range(6):
        writer.write(rng.integers(0, 256, (96, 64, 3), dtype=np.uint8))
    writer.release()
    tracks = MotTracks(np.arange(1, 7), np.ones(6, dtype=int), np.tile([[8.0, 10.0, 40.0, 80.0]], (6, 1)), np.ones(6))
    model = tiny_model()
    features = {}
    for order in ("bgr", "rgb"):
        index = ReIDIndex.create(FeatureExtractor(model, device="cpu", channel_order=order))
        index.add_tracks(tmp_path / "c1.avi", tracks, "c1")
        features[order] = index.gallery.vectors(index.gallery.ids())
    assert len(features["bgr"]) == 1
    np.testing.assert_allclose(features["rgb"], features["bgr"], atol=1e-5)


def test_image_files_are_searched_as_bgr_whatever_the_extractors_default(tmp_path):
    """reid-index search reads files with OpenCV (BGR): an RGB extractor still finds each image's own entry."""
    import cv2

    from reid_sdk.inference.extractor import FeatureExtractor
    from reid_sdk.search.sources import search_images
    from tests.helpers import tiny_model

    crops = random_crops(3, seed=5, min_size=40)
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for path, crop in zip(paths, crops):
        cv2.imwrite(str(path), crop)
    index = ReIDIndex.create(FeatureExtractor(tiny_model(), device="cpu", channel_order="rgb"))
    ids = index.add(crops, channel_order="bgr").tolist()
    found = [(result.matches[0].entry_id, result.matches[0].score) for result in search_images(index, paths, k=1)]
    assert [entry for entry, _ in found] == ids and min(score for _, score in found) > 0.9999
