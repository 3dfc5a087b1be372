# Deployment image: ONNX Runtime (CUDA) + FAISS + reid-sdk, no torch.
# Build from the repository root: docker build -f docker/runtime.Dockerfile -t reid-sdk:runtime .
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reid_sdk ./reid_sdk
# The GPU wheels replace the CPU ones of the base dependencies.
RUN pip install --no-cache-dir . onnxruntime-gpu \
    && pip uninstall -y onnxruntime \
    && pip install --no-cache-dir --force-reinstall --no-deps onnxruntime-gpu \
    && python -c "import reid_sdk, faiss, onnxruntime; import importlib.util as u; assert u.find_spec('torch') is None"
WORKDIR /app
