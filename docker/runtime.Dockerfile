# Deployment image, one CUDA major (12) throughout: reid-sdk's torch-free runtime with ONNX Runtime's
# CUDA 12 build (onnxruntime-gpu < 1.27), FAISS GPU (faiss-gpu-cu12) and TensorRT (tensorrt-cu12,
# cuda-python 12). No torch, and no CPU twin (onnxruntime, faiss-cpu) beside the GPU builds.
# Build from the repository root: docker build -f docker/runtime.Dockerfile -t reid-sdk:runtime .
# Run: docker run --gpus all -v $PWD:/app reid-sdk:runtime reid-index search --model model.onnx ...
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reid_sdk ./reid_sdk
RUN pip install --no-cache-dir ".[gpu,tensorrt]" \
    && python -c "from reid_sdk._utils.optional import installed_twins; import importlib.util as u; \
assert not installed_twins(), installed_twins(); assert u.find_spec('torch') is None, 'torch in the runtime image'; \
import reid_sdk.gallery, onnxruntime, tensorrt; print('runtime image:', onnxruntime.__version__, tensorrt.__version__)"
WORKDIR /app
