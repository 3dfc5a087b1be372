"""reid-sdk: person re-identification runtime and unsupervised training toolchain.

The public names are imported lazily so that ``import reid_sdk`` stays cheap and
never pulls in torch: a deployment box runs ONNX Runtime / TensorRT + FAISS only.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "FeatureExtractor": "reid_sdk.extractor",
    "TrackletAggregator": "reid_sdk.tracklets",
    "ReIDIndex": "reid_sdk.index",
    "Gallery": "reid_sdk.gallery",
    "Match": "reid_sdk.index",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'reid_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
