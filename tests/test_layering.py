"""The layering rules of DESIGN.md, keyed by folder: the runtime works without torch, the gallery without FAISS,
and imports only go down."""

import ast
import subprocess
from pathlib import Path

import numpy as np

from tests.helpers import run_python_without

# Folders whose modules import without torch (DESIGN.md's layering rule); the torch backend is the exception.
RUNTIME_FOLDERS = ("_utils", "inference", "tracks", "gallery", "search", "scale", "evaluation", "visualize", "datasets",
                   "synthetic", "serve", "detection")
NEEDS_TORCH = {"reid_sdk.inference.backends.torch_backend"}
ROOT = Path(__file__).resolve().parents[1]


def _modules_in(folders: tuple[str, ...]) -> list[str]:
    names = []
    for folder in folders:
        for path in sorted((ROOT / "reid_sdk" / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [name for name in names if name not in NEEDS_TORCH]


RUNTIME_MODULES = ["reid_sdk", *_modules_in(RUNTIME_FOLDERS)]


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
    from reid_sdk.inference.extractor import FeatureExtractor
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


# Layers by folder, lowest first: a module may import its own layer or lower ones, never a higher one.
LAYERS = [
    ("", "_utils"),
    ("datasets", "tracks", "gallery", "model"),
    ("inference", "synthetic"),
    ("search", "detection"),  # detection: detectors on inference's engines, writing the MOT files tracks reads
    ("scale",),  # Ray Data ingest: search's units and writer on a cluster
    ("evaluation",),
    ("visualize", "training"),
    ("export",),
    ("demo", "adapt"),
    ("serve",),  # reid-serve: the HTTP service over search and gallery
    ("cli",),
]


def _module_imports() -> dict[str, set[str]]:
    """Every reid_sdk module and the reid_sdk modules it imports (module level or inside functions)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "reid_sdk").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
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
    """The layer of ``module``'s top folder under reid_sdk ("" for the package's own ``__init__``)."""
    folder = module.split(".")[1] if "." in module else ""
    ranks = [index for index, folders in enumerate(LAYERS) if folder in folders]
    assert ranks, f"reid_sdk/{folder} is in no layer of tests/test_layering.py"
    return ranks[0]


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


def test_gallery_on_milvus_lite_works_without_faiss(tmp_path):
    """A Milvus-only install (the ``milvus`` extra without ``cpu``): Gallery imports, stores and searches."""
    import pytest

    pytest.importorskip("milvus_lite")
    result = run_python_without(("faiss",), f"""
        import sys
        import numpy as np
        from reid_sdk import Gallery, ReIDIndex
        gallery = Gallery(4, path="milvus-lite:{tmp_path / 'g.db'}")
        gallery.add(np.eye(4, dtype=np.float32), identities=[1, 2, 3, 4], cameras=[1, 1, 2, 2])
        gallery.save()
        reopened = Gallery.open("milvus-lite:{tmp_path / 'g.db'}")
        best = reopened.search(np.array([0.1, 0.0, 1.0, 0.0], dtype=np.float32), k=1)[0]
        assert sys.modules["faiss"] is None
        print(best.identity, len(reopened))
        """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "4"]


def test_faiss_gallery_without_faiss_says_what_to_install():
    result = run_python_without(("faiss",), """
        from reid_sdk import Gallery
        Gallery(4)
        """)
    assert result.returncode != 0
    assert "pip install 'reid-sdk[cpu]' or 'reid-sdk[gpu]'" in result.stderr
