"""Export a trained network to ONNX and TensorRT (``reid-export``), and check the result against torch.

The exporters need torch (and TensorRT for engines); the metadata they write is the runtime's
contract, :mod:`reid_sdk.inference.model_contract`, which the deployment backends read without torch.
:func:`export_model` is imported on first use, so the torch-free parts (verify, calibration) import without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_model"]


def __getattr__(name: str) -> Any:
    if name != "export_model":
        raise AttributeError(f"module 'reid_sdk.export' has no attribute {name!r}")
    from reid_sdk.export.api import export_model

    return export_model
