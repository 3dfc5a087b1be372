"""``reid-demo``: the whole product in one command on built-in synthetic data.

Render a Market-style dataset, train from ImageNet weights (found offline) with the camera-aware options of the
paper's IMD/CPD method (and the method as published beside it with ``--compare``), evaluate against the untrained
network, export the camera-aware model to ONNX and verify parity, build a gallery with the ONNX model and search
it.
"""
