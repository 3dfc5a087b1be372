"""reid-eval end to end: a tiny saved ReIDNet checkpoint on tiny synthetic image and video datasets."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from reid_sdk.datasets import load_mars
from reid_sdk.datasets.files import read_image
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.cli.evaluate import main
from reid_sdk.evaluation.on_dataset import extract_features
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.model import ModelConfig, ReIDNet, save_checkpoint
from tests.helpers import BROKEN_ONNX_ERRORS, broken_onnx_models

CONFIG = SyntheticConfig(seed=2, image_size=(64, 32), sizes=PRESETS["tiny"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalcli")
    torch.manual_seed(0)
    model = ReIDNet(ModelConfig(backbone="resnet18", input_size=(64, 32), pretrained=None, embedding_dim=64)).eval()
    checkpoint = save_checkpoint(model, root / "tiny.pt")
    generate("market1501", root / "market", CONFIG, workers=2)
    generate("mars", root / "mars", CONFIG, workers=2)
    return root, checkpoint


@pytest.mark.parametrize("layout, fmt", [("market", "market1501"), ("mars", "mars")])
def test_reid_eval_writes_metrics(setup, layout, fmt, capsys):
    root, checkpoint = setup
    out = root / f"{layout}.json"
    code = main(["--data", str(root / layout), "--format", fmt, "--model", str(checkpoint),
                 "--out", str(out), "--device", "cpu", "--batch-size", "16", "--max-frames", "3"])
    assert code == 0
    report = json.loads(out.read_text())
    assert 0.0 <= report["rank1"] <= report["rank5"] <= report["rank10"] <= 1.0
    assert 0.0 < report["mAP"] <= 1.0 and 0.0 < report["mINP"] <= 1.0
    assert report["num_valid_queries"] == report["num_query"] > 0
    assert len(report["cmc"]) == 50
    assert 0.0 < report["mAP_camstd"] <= 1.0 and 0.0 <= report["rank1_camstd"] <= 1.0
    assert report["camera_shrinkage"] == 10.0
    printed = capsys.readouterr().out
    assert "mAP" in printed and f"camera-standardised: rank1 {report['rank1_camstd']:.2%}" in printed


def test_reid_eval_json_is_the_report_and_the_old_checkpoint_spelling_still_works(setup, capsys):
    root, checkpoint = setup
    out = root / "old-spelling.json"
    code = main(["--data", str(root / "market"), "--format", "market1501", "--checkpoint", str(checkpoint),
                 "--out", str(out), "--device", "cpu", "--batch-size", "16", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)  # stdout is one JSON document, nothing else
    written = json.loads(out.read_text())
    assert printed == written and printed["model"] == str(checkpoint)
    assert "--checkpoint is deprecated" in captured.err and "use --model" in captured.err


def test_reid_eval_without_a_model_is_a_usage_error(setup, capsys):
    root, _ = setup
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(root / "market"), "--format", "market1501"])
    assert exit_info.value.code == 2
    assert "--model" in capsys.readouterr().err


@pytest.mark.parametrize("shrinkage", ["-1", "inf", "nan"])
def test_reid_eval_refuses_a_bad_camera_shrinkage_in_one_line(setup, shrinkage, capsys):
    root, checkpoint = setup
    code = main(["--data", str(root / "market"), "--format", "market1501", "--model", str(checkpoint),
                 "--camera-shrinkage", shrinkage])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "--camera-shrinkage must be a finite number >= 0" in error and "\n" not in error


def test_tracklet_feature_is_normalised_mean_of_frame_features(setup):
    root, checkpoint = setup
    extractor = FeatureExtractor(checkpoint, device="cpu", batch_size=8)
    records = load_mars(root / "mars").query[:2]
    features, found = extract_features(extractor, records)  # every frame by default, as the paper
    assert found.all() and features.shape == (2, extractor.feature_dim)
    frames = extractor.extract([read_image(p) for p in records[0].frames])
    assert len(frames) > 2
    expected = frames.mean(axis=0)
    np.testing.assert_allclose(features[0], expected / np.linalg.norm(expected), atol=1e-5)
    capped, _ = extract_features(extractor, records, max_frames=2)  # the first and the last frame
    expected = frames[[0, -1]].mean(axis=0)
    np.testing.assert_allclose(capped[0], expected / np.linalg.norm(expected), atol=1e-5)


def test_reid_eval_reports_a_missing_dataset(setup, capsys):
    root, checkpoint = setup
    assert main(["--data", str(root / "absent"), "--format", "market1501", "--model", str(checkpoint),
                 "--device", "cpu"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("kind", sorted(BROKEN_ONNX_ERRORS))
def test_reid_eval_with_a_broken_onnx_model_exits_2_naming_it(setup, tmp_path, capsys, kind):
    root, _ = setup
    model = broken_onnx_models(tmp_path)[kind]
    assert main(["--data", str(root / "market"), "--format", "market1501", "--model", str(model),
                 "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    expected = f"reid-eval: error: {re.escape(str(model))}{BROKEN_ONNX_ERRORS[kind]}.*"
    assert re.fullmatch(expected, error.splitlines()[-1])


@pytest.mark.parametrize("kept", [0, 0.5], ids=["empty", "half"])
def test_reid_eval_on_mars_with_a_damaged_info_file_exits_2_naming_it(setup, tmp_path, capsys, kept):
    root, checkpoint = setup
    data = tmp_path / "mars"
    shutil.copytree(root / "mars" / "info", data / "info")
    for folder in ("bbox_train", "bbox_test"):
        (data / folder).symlink_to(root / "mars" / folder, target_is_directory=True)
    info = data / "info" / "tracks_test_info.mat"
    info.write_bytes(info.read_bytes()[: int(kept * info.stat().st_size)])
    assert main(["--data", str(data), "--format", "mars", "--model", str(checkpoint), "--device", "cpu"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"reid-eval: error: cannot read {info}, damaged or truncated: ")


def test_reid_eval_rerank_query_expansion_and_rank_lists(setup, capsys):
    root, checkpoint = setup
    common = ["--data", str(root / "market"), "--format", "market1501", "--model", str(checkpoint),
              "--device", "cpu", "--batch-size", "16"]
    assert main([*common, "--out", str(root / "plain.json")]) == 0
    pictures = root / "ranks"
    assert main([*common, "--out", str(root / "reranked.json"), "--rerank", "--k1", "6", "--k2", "2",
                 "--query-expansion", "2", "--visualize", "3", "--visualize-dir", str(pictures),
                 "--visualize-k", "5"]) == 0
    assert "3 rank lists written" in capsys.readouterr().out
    plain, reranked = (json.loads((root / name).read_text()) for name in ("plain.json", "reranked.json"))
    assert plain["rerank"] is None and reranked["rerank"] == {"k1": 6, "k2": 2, "lambda_value": 0.3, "candidates": 100}
    assert reranked["query_expansion"] == 2 and reranked["mAP"] != plain["mAP"]
    files = sorted(pictures.glob("*.png"))
    assert len(files) == 3
    image = read_image(files[0])
    title = image.shape[0] - (160 + 8 + 34)  # wrapped title lines over the bordered crops and their captions
    assert title % 22 == 2 and 0 < title < 100 and image.shape[1:] == (6 * 88 + 16 + 4 * 4, 3)  # query + 5

    assert main([*common, "--rerank", "--k1", "0"]) == 2
    assert "k1 must be a positive int" in capsys.readouterr().err


def test_reid_eval_says_how_many_queries_it_skipped(setup, tmp_path, capsys):
    """Metrics over a subset of the queries are printed with the subset's size, not only written to the JSON."""
    root, checkpoint = setup
    data = tmp_path / "market"
    shutil.copytree(root / "market", data)
    query_pids = sorted({path.name[:4] for path in (data / "query").glob("*.jpg")})
    for path in (data / "bounding_box_test").glob(f"{query_pids[0]}_*.jpg"):
        path.unlink()  # the first query identity is no longer in the gallery
    skipped = len(list((data / "query").glob(f"{query_pids[0]}_*.jpg")))
    total = len(list((data / "query").glob("*.jpg")))
    assert 0 < skipped < total
    assert main(["--data", str(data), "--format", "market1501", "--model", str(checkpoint), "--device", "cpu",
                 "--max-frames", "3"]) == 0
    assert f"over {total - skipped} queries; {skipped} skipped: no true match" in capsys.readouterr().out


def test_reid_eval_on_a_model_that_outputs_zeros_is_one_line_and_exit_2(setup, monkeypatch, capsys):
    """A model whose features cannot be unit vectors is unusable input: one line, exit 2, no traceback."""
    import reid_sdk.cli.evaluate as evaluate_cli
    from reid_sdk.inference.extractor import NonFiniteFeaturesError

    root, checkpoint = setup

    def zero_features(*args, **kwargs):
        raise NonFiniteFeaturesError("the onnxruntime backend returned all-zero features for 3 of 3 crops")

    monkeypatch.setattr(evaluate_cli, "retrieve", zero_features)
    assert main(["--data", str(root / "market"), "--format", "market1501", "--model", str(checkpoint),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["reid-eval: error: the onnxruntime backend returned all-zero features for 3 "
                                        "of 3 crops"]
