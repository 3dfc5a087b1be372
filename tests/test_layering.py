"""The deployment runtime imports and works without torch (DESIGN.md's layering rule)."""

import subprocess

import numpy as np

from tests.helpers import run_python_without

RUNTIME_MODULES = [
    "reid_sdk", "reid_sdk.preprocess", "reid_sdk.extractor", "reid_sdk.tracklets", "reid_sdk.backends",
    "reid_sdk.backends.onnx_backend", "reid_sdk.backends.tensorrt_backend", "reid_sdk.backends.model_contract",
    "reid_sdk.backends.openvino_backend",
    "reid_sdk.evaluation", "reid_sdk.datasets", "reid_sdk.gallery", "reid_sdk.index",
    "reid_sdk.reranking", "reid_sdk.tracks", "reid_sdk.backends.foreign_input", "reid_sdk.synthetic.video",
    "reid_sdk.visualize", "reid_sdk.rank_lists",
]


def _run_without_torch(code: str) -> subprocess.CompletedProcess:
    return run_python_without(("torch", "torchvision"), code)


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


# Layers, lowest first: a module may import its own layer or lower ones, never a higher one.
LAYERS = [
    ("reid_sdk", "reid_sdk.atomic_file"),
    ("reid_sdk.preprocess", "reid_sdk.datasets", "reid_sdk.evaluation", "reid_sdk.synthetic", "reid_sdk.tracklets",
     "reid_sdk.reranking", "reid_sdk.tracks",
     "reid_sdk.gallery", "reid_sdk.backends.model_contract", "reid_sdk.backends.base", "reid_sdk.model"),
    ("reid_sdk.backends",),
    ("reid_sdk.extractor",),
    ("reid_sdk.index", "reid_sdk.model_evaluation", "reid_sdk.visualize"),
    ("reid_sdk.index_build", "reid_sdk.rank_lists", "reid_sdk.training", "reid_sdk.export"),
    ("reid_sdk.demo",),
    ("reid_sdk.cli",),
]


def _module_imports() -> dict[str, set[str]]:
    """Every reid_sdk module and the reid_sdk modules it imports (module level or inside functions)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    graph: dict[str, set[str]] = {}
    for path in sorted((root / "reid_sdk").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update((alias.name, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets.update((base, f"{base}.{alias.name}") for alias in node.names)
        graph[name] = targets
    # ``from package import submodule`` imports the submodule; ``from module import name`` the module
    return {name: {sub if sub in graph else base for base, sub in targets if (sub in graph or base in graph)} - {name}
            for name, targets in graph.items()}


def _layer(module: str) -> int:
    best, rank = -1, None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank is not None, f"{module} is in no layer of tests/test_layering.py"
    return rank


def test_imports_only_go_down():
    upward = [f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
              for module, targets in _module_imports().items() for target in targets
              if _layer(target) > _layer(module)]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = _module_imports()
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)
