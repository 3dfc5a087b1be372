"""``reid-demo``: the whole product in one command on built-in synthetic data.

Render a Market-style dataset, train with IMD/CPD (and with BUC's linkage for comparison), evaluate against the
untrained network, export to ONNX and verify parity, build a gallery with the ONNX model and search it.
"""
