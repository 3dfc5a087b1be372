"""reid-demo --quick end to end (once, shared by the checks below), and its output-folder rules."""

from __future__ import annotations

import contextlib
import io
import json
import re

import cv2
import numpy as np
import pytest

from reid_sdk.cli.demo import main
from reid_sdk.demo.run import MARKER, prepare_output
from reid_sdk.demo.settings import CAMERA_AWARE, DEEP_SORT_INSTALL, PAPER, demo_settings
from reid_sdk.model.pretrained import find_deep_sort_weights

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START_ROW = "ImageNet start (untrained)" if find_deep_sort_weights() else "untrained (random init)"
TABLE_ROWS = (START_ROW, "imd_cpd (IMD + 0.3 CPD, the paper)", "camera-aware (camera proxies + centering)")
VARIANT_ROWS = {"imd_cpd": TABLE_ROWS[1], "camera_aware": TABLE_ROWS[2]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Run the quick demo once, both variants; (exit code, printed text, output folder)."""
    out = tmp_path_factory.mktemp("demo") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # capsys is per test; this fixture is per module
        code = main(["--quick", "--compare", "--out", str(out), "--device", "cpu"])
    return code, printed.getvalue(), out


def table_numbers(printed: str) -> dict[str, list[float]]:
    """rank-1, rank-5, mAP of each comparison-table row, parsed from the printed text."""
    rows = {}
    for label in TABLE_ROWS:
        line = next(line for line in printed.splitlines() if line.startswith(label))
        rows[label] = [float(value) for value in re.findall(r"\d+\.\d+", line[len(label):])[:3]]
    return rows


def test_demo_runs_every_step_and_prints_the_comparison(demo):
    code, printed, out = demo
    assert code == 0
    rows = table_numbers(printed)
    assert all(len(values) == 3 and all(0.0 <= v <= 1.0 for v in values) for values in rows.values())
    results = json.loads((out / "results.json").read_text())
    assert [model["model"] for model in results["models"]] == list(TABLE_ROWS)
    for model in results["models"]:  # the printed table and the JSON say the same
        assert rows[model["model"]] == pytest.approx([model["rank1"], model["rank5"], model["mAP"]], abs=5e-4)
    assert "difficulty: demo (" in printed
    assert (DEEP_SORT_INSTALL in printed) == (START_ROW == "untrained (random init)")  # the hint only when missing
    assert "--quick: tiny data and two short stages; its numbers only check that every step runs" in printed
    assert "reid-train --data" in printed and "--format market1501" in printed
    assert "--set train.loss=camera_proxy --set clustering.camera_centering=true" in printed
    assert "exported, indexed and searched: camera_aware" in printed


def test_variants_train_from_one_start_with_their_options(demo):
    import torch

    from reid_sdk.model import load_checkpoint
    from reid_sdk.model.pretrained import read_state_dict

    _, _, out = demo
    results = {model["model"]: model for model in json.loads((out / "results.json").read_text())["models"]}
    configs = {}
    for name, label in VARIANT_ROWS.items():
        model, payload = load_checkpoint(out / "runs" / name / "best.pt")
        assert model.config.backbone == "mobilenet_v2" and model.input_size == (128, 64)
        configs[name] = payload["metadata"]["config"]
        assert configs[name]["train"]["init_checkpoint"] == str(out / "initial.pt")
        stages = [json.loads(line) for line in (out / "runs" / name / "metrics.jsonl").read_text().splitlines()]
        assert 1 <= len(stages) <= 2
        assert payload["metadata"]["stage"] == results[label]["best_stage"]
    assert (configs["imd_cpd"]["train"]["loss"], configs["imd_cpd"]["clustering"]["camera_centering"]) == (
        "repelled", False)  # the paper's Algorithm 1, unchanged
    assert (configs["camera_aware"]["train"]["loss"], configs["camera_aware"]["clustering"]["camera_centering"]) == (
        "camera_proxy", True)
    assert configs["imd_cpd"]["clustering"]["linkage"] == configs["camera_aware"]["clustering"]["linkage"] == "imd_cpd"
    initial, _ = load_checkpoint(out / "initial.pt")
    if find_deep_sort_weights():  # the start is the ImageNet trunk: its first convolution is the shipped one
        first = next(iter(read_state_dict(find_deep_sort_weights()).values()))
        assert torch.equal(initial.state_dict()["features8.0.0.weight"], first)
    trained, _ = load_checkpoint(out / "runs" / "camera_aware" / "best.pt")
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(initial.state_dict().values(),
                                                                       trained.state_dict().values()))


def test_the_demo_trains_the_camera_aware_variant_and_compares_on_request():
    for mode in ("quick", "cpu", "cuda"):
        assert demo_settings(mode, "cpu").variants == (CAMERA_AWARE,)
        assert demo_settings(mode, "cpu", compare=True).variants == (PAPER, CAMERA_AWARE)  # the exported one last


def test_start_is_imagenet_when_the_weights_are_installed_else_random_with_a_hint(monkeypatch, tmp_path):
    import reid_sdk.demo.settings as settings_module

    monkeypatch.setattr(settings_module, "find_deep_sort_weights", lambda: tmp_path / "weights.pt")
    found = demo_settings("cpu", "cpu")
    assert (found.run.model.backbone, found.run.model.pretrained, found.start_note) == ("mobilenet_v2", "imagenet", "")
    assert (found.run.train.first_stage_lr, found.run.train.backbone_lr_scale) == (0.1, 0.1)  # the paper's rates
    assert found.start_label == "ImageNet start (untrained)"
    monkeypatch.setattr(settings_module, "find_deep_sort_weights", lambda: None)
    missing = demo_settings("quick", "cpu")
    assert (missing.run.model.backbone, missing.run.model.pretrained) == ("mobilenet_v2", None)
    assert DEEP_SORT_INSTALL in missing.start_note and "\n" not in missing.start_note
    assert missing.start_label == "untrained (random init)"


def test_onnx_model_is_verified_and_serves_the_gallery(demo):
    from reid_sdk.inference.extractor import FeatureExtractor
    from reid_sdk.gallery import Gallery

    _, printed, out = demo
    assert "verified: 4 checks within tolerance" in printed and "FAIL" not in printed  # real crops + 3 batches
    crops = [cv2.imread(str(path)) for path in sorted((out / "data" / "query").glob("*.jpg"))[:3]]
    onnx = FeatureExtractor(out / "model.onnx", device="cpu").extract(crops)
    torch_features = FeatureExtractor(out / "runs" / "camera_aware" / "best.pt", device="cpu").extract(crops)
    assert np.sum(onnx * torch_features, axis=1) == pytest.approx(1.0, abs=1e-4)
    gallery_images = [p for p in (out / "data" / "bounding_box_test").glob("*.jpg") if not p.name.startswith("-1_")]
    assert len(Gallery.open(out / "gallery")) == len(gallery_images)  # junk (pid -1) is left out
    searched = [line for line in printed.splitlines() if line.startswith("query ") and "->" in line]
    assert len(searched) == 2 and all(line.count("/c") == 1 + 5 for line in searched)


def test_matches_and_stage_plots_are_pngs(demo):
    _, _, out = demo
    for name in ("matches.png", "stages.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    settings = demo_settings("quick", "cpu")
    tile_height, tile_width, gap, row_border = 160 + 8 + 34, 80 + 8, 4, 6  # bordered tiles + captions, row gap
    width = (settings.top_k + 1) * tile_width + 16 + (settings.top_k - 1) * gap  # the query, a gap, top_k matches
    matches = cv2.imread(str(out / "matches.png"))
    assert matches.shape == (settings.num_queries * (tile_height + row_border), width, 3)


def test_output_folder_of_something_else_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--quick", "--out", str(tmp_path), "--device", "cpu"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_rerun_replaces_only_the_demo_files(tmp_path):
    (tmp_path / MARKER).write_text("")
    (tmp_path / "runs" / "imd_cpd").mkdir(parents=True)
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("mine")
    prepare_output(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([MARKER, "keep.txt"])


def test_cuda_without_a_gpu_is_refused(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
