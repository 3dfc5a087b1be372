"""reid-adapt --int8: INT8 calibrated on the site's tracklets, checked on held-out ones, written only when it passes.

The model is the tiny trained network of tests/helpers.py; the tracklets are rendered pedestrians laid out as
``tracklets/<camera>/<track>/<frame>.jpg``, the way reid-adapt writes them.
"""

import json

import cv2
import pytest

from reid_sdk.adapt.int8_export import export_site_int8
from reid_sdk.adapt.pipeline import adapt_site
from reid_sdk.adapt.settings import AdaptSettings
from reid_sdk.cli.adapt import build_parser
from reid_sdk.export.verify import Tolerance
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.synthetic.layouts import sample_crops
from reid_sdk.tracks.site_tracklets import SiteTrack
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.model import save_checkpoint
from reid_sdk.synthetic.video import render_videos
from tests.helpers import TEST_MEMORY_BUDGET, tiny_trained_model
from tests.test_site_adaptation import TINY_SITE, TINY_TRAINING, camera_folders

SIZE = (96, 48)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The tiny model's files and 8 tracklets of 3 crops each over two cameras."""
    root = tmp_path_factory.mktemp("adapt-int8")
    checkpoint = save_checkpoint(tiny_trained_model(input_size=SIZE), root / "model.pt")
    files = {"checkpoint": checkpoint, "fp32": export_onnx(checkpoint, root / "model.onnx")}
    crops = iter(sample_crops(24, seed=11, image_size=SIZE))
    tracks = []
    for index in range(8):
        camera = f"cam{1 + index % 2}"
        folder = root / "tracklets" / camera / str(index)
        folder.mkdir(parents=True)
        frames = []
        for frame in range(3):
            frames.append(folder / f"{frame:06d}.jpg")
            cv2.imwrite(str(frames[-1]), next(crops))
        tracks.append(SiteTrack(camera, 1 + index % 2, index, 0, 2, tuple(frames)))
    return files, root / "tracklets", tracks


def test_int8_calibrated_on_half_the_tracklets_and_checked_on_the_others(site, tmp_path):
    files, tracklets, tracks = site
    out = tmp_path / "model_int8.onnx"
    record = export_site_int8(files["fp32"], out, files["checkpoint"], tracklets, tracks, parity_crops=16)
    assert record["passed"], record["checks"]
    assert record["calibration"] == "12 crops of 4 tracklets; checked on 4 crops of 4 others"
    assert record["checks"][0].startswith("ok    real crops               n=4 ")
    assert [path.name for path in tmp_path.iterdir()] == ["model_int8.onnx"]
    assert "int8 model" in FeatureExtractor(out).backend.description


def test_int8_beyond_tolerance_is_not_written(site, tmp_path, monkeypatch):
    files, tracklets, tracks = site
    # no INT8 file reproduces fp32 exactly: a tolerance of cosine 1.0 fails it
    monkeypatch.setattr(Tolerance, "for_precision", classmethod(lambda cls, precision: cls(1.0, None, 0.0, False)))
    record = export_site_int8(files["fp32"], tmp_path / "model_int8.onnx", files["checkpoint"], tracklets, tracks,
                              parity_crops=16)
    assert not record["passed"] and record["checks"][0].startswith("FAIL  real crops")
    assert not list(tmp_path.iterdir())


def test_int8_is_off_by_default_and_recorded_only_when_on():
    assert build_parser().parse_args(["site", "--out", "run"]).int8 is False
    assert build_parser().parse_args(["site", "--out", "run", "--int8"]).int8 is True
    assert "int8" not in AdaptSettings().to_dict()  # a run folder from before the option resumes
    assert AdaptSettings(int8=True).to_dict()["int8"] is True


def test_reid_adapt_int8_records_its_int8_export_beside_the_fp32_one(tmp_path):
    rendered = render_videos(tmp_path / "rendered", TINY_SITE)[0].video.parent
    settings = AdaptSettings(overrides=TINY_TRAINING, device="cpu", max_frames=4, picture_tracks=2,
                             max_memory=TEST_MEMORY_BUDGET, int8=True)
    result = adapt_site(camera_folders(rendered, tmp_path / "site"), tmp_path / "run", settings, progress=False)
    int8 = json.loads((tmp_path / "run" / "parity.json").read_text())["int8"]
    assert result.parity["passed"] and result.parity["int8"] == int8
    assert (tmp_path / "run" / "model_int8.onnx").is_file() == int8["passed"]  # written only when it passes
    assert int8["checks"][0].split()[1:3] == ["real", "crops"] and "tracklets; checked on" in int8["calibration"]
    assert any(line.startswith("INT8 model: ") for line in result.lines())
