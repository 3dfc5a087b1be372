"""Inference: the one crop preprocessing, FeatureExtractor, the exported-model contract and the engine backends.

Torch-free: torch is imported only when a torch model or checkpoint is run.
"""

from reid_sdk.inference.backends.foreign_input import InputOptions
from reid_sdk.inference.extractor import FeatureExtractor

__all__ = ["FeatureExtractor", "InputOptions"]
