"""What an export can write, named once and torch-free (``reid-export`` builds its options from it): the
formats, the precision each ONNX format runs at, and the defaults."""

#: The ONNX formats and the precision each runs at; ``tensorrt`` runs at the precision asked for.
ONNX_PRECISIONS = {"onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8"}
FORMATS = (*ONNX_PRECISIONS, "tensorrt")
DEFAULT_ENGINE_PRECISION = "fp16"
DEFAULT_OPSET = 18
