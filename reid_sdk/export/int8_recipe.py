"""What an INT8 export keeps in float and how it calibrates, named torch- and ONNX-Runtime-free (``reid-export``
builds its options from it; reid_sdk.export.int8 applies it)."""

from __future__ import annotations

from dataclasses import dataclass

#: Layer groups an INT8 file may keep in float, besides the pooling head (always float).
#: "stride4": every layer whose feature map is at stride <= 4 (the first convolution and the blocks at its
#: resolution); "depthwise": convolutions with one filter per channel; "non_local": the non-local blocks;
#: "last_stage": the trunk's last stage (ResNet's layer4, MobileNetV2's blocks 14-18 with the 1 x 1 convolution
#: to 1,280 channels), whose output is the feature map the head pools.
FLOAT_GROUPS = ("stride4", "depthwise", "non_local", "last_stage")
#: Activation calibration methods (ONNX Runtime's MinMax, Entropy and Percentile calibrators).
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Int8Recipe:
    """How an fp32 graph becomes INT8: the layer groups kept float (:data:`FLOAT_GROUPS`) and the activation
    calibration (:data:`CALIBRATION_METHODS`; percentile: ranges at the 99.999th percentile, so a few outlier
    activations do not coarsen every other value's step; entropy: the ranges that keep each histogram's KL
    divergence smallest). :meth:`for_backbone` gives the measured choice per
    backbone (benchmarks/int8_accuracy.py, docs/guides/deployment.md); the plain default is every convolution
    in int8 with MinMax ranges, which ResNets keep within cosine 0.999 of fp32.

    Example:
        ```python
        from reid_sdk.export.int8_recipe import Int8Recipe

        assert Int8Recipe().keep_float == ()                                    # every convolution in int8
        assert Int8Recipe.for_backbone("mobilenet_v2").keep_float == ("stride4", "last_stage")
        ```
    """

    keep_float: tuple[str, ...] = ()
    calibrate_method: str = "minmax"

    @classmethod
    def for_backbone(cls, backbone: str) -> Int8Recipe:
        """The measured recipe for ``backbone``: NL-MobileNetV2 keeps its layers at stride <= 4 and its last stage in
        float with entropy ranges (all-int8 lost too much cosine to fp32, either group alone too; percentile
        ranges kept less margin on the worst crop); other backbones the plain default."""
        if backbone == "mobilenet_v2":
            return cls(keep_float=("stride4", "last_stage"), calibrate_method="entropy")
        return cls()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.keep_float) - set(FLOAT_GROUPS))
        if unknown:
            raise ValueError(f"INT8 float layer groups must be among {', '.join(FLOAT_GROUPS)}, "
                             f"got {', '.join(unknown)}")
        if self.calibrate_method not in CALIBRATION_METHODS:
            raise ValueError(f"INT8 calibration method must be one of {', '.join(CALIBRATION_METHODS)}, "
                             f"got {self.calibrate_method!r}")
