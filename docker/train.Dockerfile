# Training image, one CUDA major (12) throughout: torch and torchvision built for CUDA 12.8 (from PyTorch's
# index: PyPI's default torch wheels are CUDA 13 builds), reid-sdk[train] with the runtime's CUDA 12 stack
# (onnxruntime-gpu < 1.27, faiss-gpu-cu12, tensorrt-cu12) for reid-export --verify and the demo's gallery.
# Build from the repository root: docker build -f docker/train.Dockerfile -t reid-sdk:train .
# Run with GPUs and your data mounted:
#   docker run --gpus all -v /data:/data -v $PWD/runs:/work/runs reid-sdk:train \
#       reid-train --config paper-market --data /data/Market-1501 --out runs/market
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reid_sdk ./reid_sdk
# torch first, pinned, so that installing reid-sdk[train] keeps this CUDA 12 build instead of PyPI's.
RUN pip install --no-cache-dir torch==2.9.1 torchvision==0.24.1 --index-url https://download.pytorch.org/whl/cu128 \
    && pip install --no-cache-dir ".[gpu,tensorrt,train]" \
    && python -c "from reid_sdk._utils.optional import installed_twins; import torch; \
assert not installed_twins(), installed_twins(); assert torch.version.cuda.startswith('12.'), torch.version.cuda; \
import reid_sdk.model, reid_sdk.gallery, onnxruntime, tensorrt; from reid_sdk.training.config import load_config; \
load_config('paper-market'); print('train image: torch', torch.__version__)"
WORKDIR /work
