"""Export a trained network to ONNX and TensorRT (``reid-export``), and check the result against torch.

The exporters need torch (and TensorRT for engines); the metadata they write is the runtime's
contract, :mod:`reid_sdk.backends.model_contract`, which the deployment backends read without torch.
"""
