"""The deployment runtime imports and works without torch (DESIGN.md's layering rule)."""

import subprocess
import sys
import textwrap

import numpy as np

RUNTIME_MODULES = [
    "reid_sdk", "reid_sdk.preprocess", "reid_sdk.extractor", "reid_sdk.tracklets", "reid_sdk.backends",
    "reid_sdk.backends.onnx_backend", "reid_sdk.backends.tensorrt_backend", "reid_sdk.export.metadata",
    "reid_sdk.evaluation", "reid_sdk.datasets", "reid_sdk.gallery", "reid_sdk.index",
]


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    blocker = "import sys\nfor name in ('torch', 'torchvision'):\n    sys.modules[name] = None\n"
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


def test_runtime_modules_import_without_torch():
    result = _run_without_torch(
        f"""
        import importlib, sys
        for name in {RUNTIME_MODULES!r}:
            importlib.import_module(name)
        from reid_sdk import FeatureExtractor, Gallery, Match, ReIDIndex, TrackletAggregator
        assert sys.modules['torch'] is None
        print('ok')
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_tracklets_work_without_torch():
    result = _run_without_torch(
        """
        import numpy as np
        from reid_sdk import TrackletAggregator
        aggregator = TrackletAggregator()
        aggregator.update(1, np.array([3.0, 4.0]))
        print(aggregator.finish(1).tolist())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0.6000000238418579, 0.800000011920929]"


def test_torch_checkpoint_without_torch_says_what_to_install():
    result = _run_without_torch(
        """
        from reid_sdk import FeatureExtractor
        FeatureExtractor('model.pt')
        """
    )
    assert result.returncode != 0
    assert "pip install 'reid-sdk[train]'" in result.stderr



def test_onnx_features_without_torch(tmp_path):
    from reid_sdk.export.onnx_export import export_onnx
    from reid_sdk.extractor import FeatureExtractor
    from reid_sdk.model import save_checkpoint
    from tests.helpers import tiny_model

    onnx_path = export_onnx(save_checkpoint(tiny_model(), tmp_path / "model.pt"), tmp_path / "model.onnx")
    crops = np.random.default_rng(2).integers(0, 256, (3, 70, 30, 3), dtype=np.uint8)
    np.save(tmp_path / "crops.npy", crops)
    expected = FeatureExtractor(onnx_path).extract(list(crops))
    result = _run_without_torch(
        f"""
        import numpy as np
        from reid_sdk import FeatureExtractor
        features = FeatureExtractor({str(onnx_path)!r}).extract(list(np.load({str(tmp_path / "crops.npy")!r})))
        np.save({str(tmp_path / "out.npy")!r}, features)
        """
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
