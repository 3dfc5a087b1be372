"""Export a trained network to ONNX and TensorRT (``reid-export``).

This package's ``metadata`` module is torch-free (deployment backends read it);
the exporters themselves need torch, and TensorRT engine building needs TensorRT.
"""
