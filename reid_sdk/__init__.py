"""reid-sdk: person re-identification runtime and unsupervised training toolchain.

The public names are imported lazily so that ``import reid_sdk`` stays cheap and
never pulls in torch: a deployment box runs ONNX Runtime / TensorRT + FAISS only.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    # runtime (torch-free)
    "FeatureExtractor": "reid_sdk.inference",
    "InputOptions": "reid_sdk.inference",
    "TrackletAggregator": "reid_sdk.tracks",
    "FrameQuality": "reid_sdk.tracks",
    "Gallery": "reid_sdk.gallery",
    "GalleryConfig": "reid_sdk.gallery",
    "Match": "reid_sdk.gallery",
    "ReIDIndex": "reid_sdk.search",
    "RerankConfig": "reid_sdk.search",
    "TrackMatches": "reid_sdk.search",
    "RankResult": "reid_sdk.evaluation",
    "evaluate_model": "reid_sdk.evaluation.on_dataset",
    # training and export (need the train extra: torch)
    "Trainer": "reid_sdk.training.trainer",
    "build_trainer": "reid_sdk.training.schedules",
    "RunConfig": "reid_sdk.training.config",
    "load_config": "reid_sdk.training.config",
    "export_model": "reid_sdk.export",
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
