"""The Docker images, read (Docker does not run here): one CUDA major per image, no torch in the runtime,
no CPU twin beside a GPU build, the files their commands need, and the README naming each image's stack."""

import re
import shlex
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from reid_sdk._utils.optional import installed_twins

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
IMAGES = {"runtime": ROOT / "docker" / "runtime.Dockerfile", "train": ROOT / "docker" / "train.Dockerfile"}
# onnxruntime-gpu on PyPI: 1.22 .. 1.26 are CUDA 12 builds, 1.27 and later CUDA 13 builds.
ONNXRUNTIME_GPU_CUDA = ((Version("1.27"), 13), (Version("0"), 12))
# Versions that must be allowed (or excluded) for a requirement to be pinned to one CUDA major.
MAJOR_PROBES = {"onnxruntime-gpu": {12: "1.26.0", 13: "1.27.0"}, "cuda-python": {12: "12.9.0", 13: "13.0.0"}}


class Image:
    """What one Dockerfile installs: its CUDA base, pip requirements (extras resolved), index URLs, copies."""

    def __init__(self, path: Path) -> None:
        text = path.read_text().replace("\\\n", " ")
        self.base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
        self.copies = [line.split()[1] for line in text.splitlines() if line.startswith("COPY ")]
        self.requirements: list[Requirement] = []
        self.extras: list[str] = []
        self.index_urls: list[str] = []
        for command in re.findall(r"pip install ([^&\n]+)", text):
            words = shlex.split(command)
            for position, word in enumerate(words):
                if word == "--index-url":
                    self.index_urls.append(words[position + 1])
                elif word.startswith(".["):
                    self.extras += word[2:-1].split(",")
                elif not word.startswith("-") and (position == 0 or words[position - 1] != "--index-url"):
                    self.requirements.append(Requirement(word))
        for extra in self.extras:
            self.requirements += [Requirement(line) for line in PROJECT["optional-dependencies"][extra]]
        self.requirements += [Requirement(line) for line in PROJECT["dependencies"]]

    @property
    def cuda_major(self) -> int:
        match = re.fullmatch(r"nvidia/cuda:(\d+)\.\d+(?:\.\d+)?-.*", self.base)
        assert match, f"base image {self.base} is not an nvidia/cuda image with a CUDA version"
        return int(match.group(1))

    @property
    def names(self) -> set[str]:
        return {canonicalize_name(requirement.name) for requirement in self.requirements}


def cuda_major(requirement: Requirement) -> int | None:
    """The CUDA major a requirement pins, None for CUDA-free packages; AssertionError when it pins none."""
    name = canonicalize_name(requirement.name)
    suffix = re.search(r"-cu(\d\d)$", name)
    if suffix:
        return int(suffix.group(1))
    assert name not in ("tensorrt", "faiss-gpu"), f"{name} follows the newest CUDA: name its -cuXX build"
    probes = MAJOR_PROBES.get(name)
    if probes is None:
        return None
    majors = {major for major, version in probes.items() if requirement.specifier.contains(version)}
    assert len(majors) == 1, f"{requirement} allows CUDA majors {sorted(majors)}: bound it to one"
    return majors.pop()


def torch_index_major(url: str) -> int:
    match = re.fullmatch(r"https://download\.pytorch\.org/whl/cu(\d\d)\d", url)
    assert match, f"torch index {url} is not one of PyTorch's cuXYZ indexes"
    return int(match.group(1))


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_every_cuda_library_in_an_image_matches_its_base_image_major(image):
    built = Image(IMAGES[image])
    majors = {str(requirement): cuda_major(requirement) for requirement in built.requirements}
    majors.update({url: torch_index_major(url) for url in built.index_urls})
    assert {key: major for key, major in majors.items() if major is not None and major != built.cuda_major} == {}
    assert {"onnxruntime-gpu", "faiss-gpu-cu12"} <= built.names  # the GPU runtime, in both images


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_no_image_installs_a_cpu_twin(image):
    built = Image(IMAGES[image])
    assert installed_twins(built.names) == {}
    assert not built.names & {"onnxruntime", "faiss-cpu"}
    assert "installed_twins()" in IMAGES[image].read_text()  # and the build checks what pip really installed


def test_the_runtime_image_never_installs_torch():
    built = Image(IMAGES["runtime"])
    assert not built.names & {"torch", "torchvision"} and not built.index_urls
    assert "find_spec('torch') is None" in IMAGES["runtime"].read_text()


def test_the_train_image_pins_a_cuda_torch_that_satisfies_the_project_and_has_its_configs():
    built = Image(IMAGES["train"])
    pinned = {canonicalize_name(r.name): r.specifier for r in built.requirements if str(r.specifier).startswith("==")}
    wanted = {canonicalize_name(r.name): r.specifier for r in map(Requirement, PROJECT["optional-dependencies"]["train"])}
    for name in ("torch", "torchvision"):
        version = str(pinned[name]).removeprefix("==")
        assert wanted[name].contains(version), f"{name}=={version} does not satisfy pyproject's {name}{wanted[name]}"
    assert len(built.index_urls) == 1
    # the command the image documents names a shipped config: package data of the copied, installed package
    config = re.search(r"reid-train --config (\S+)", IMAGES["train"].read_text()).group(1)
    assert (ROOT / "reid_sdk" / "configs" / f"{config}.yaml").is_file() and "reid_sdk" in built.copies
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "*.yaml" in package_data["reid_sdk.configs"] and f"load_config('{config}')" in IMAGES["train"].read_text()


def test_the_readme_states_each_images_stack():
    docker_section = (ROOT / "README.md").read_text().split("\n## Docker", 1)[1]
    for name, path in IMAGES.items():
        version = re.search(r"nvidia/cuda:(\d+\.\d+)", Image(path).base).group(1)
        rows = [line for line in docker_section.splitlines() if line.startswith("|") and f"docker/{path.name}" in line]
        assert len(rows) == 1 and f"CUDA {version}" in rows[0], f"README's Docker table does not give {name}'s CUDA"
    assert "no torch" in next(line for line in docker_section.splitlines() if "runtime.Dockerfile" in line)


def test_cuda_major_rules_catch_mixed_stacks():
    assert cuda_major(Requirement("onnxruntime-gpu>=1.22,<1.27")) == 12
    assert cuda_major(Requirement("faiss-gpu-cu12>=1.8")) == 12 and cuda_major(Requirement("numpy")) is None
    with pytest.raises(AssertionError, match="allows CUDA majors"):
        cuda_major(Requirement("onnxruntime-gpu>=1.22"))
    with pytest.raises(AssertionError, match="name its -cuXX build"):
        cuda_major(Requirement("tensorrt>=10"))
    assert torch_index_major("https://download.pytorch.org/whl/cu128") == 12
