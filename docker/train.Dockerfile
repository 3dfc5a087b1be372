# Training image: CUDA torch + torchvision + reid-sdk[train].
# Build from the repository root: docker build -f docker/train.Dockerfile -t reid-sdk:train .
# Run with GPUs and your data mounted: docker run --gpus all -v /data:/data reid-sdk:train reid-train --help
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reid_sdk ./reid_sdk
RUN pip install --no-cache-dir torch torchvision && pip install --no-cache-dir ".[train]" \
    && python -c "import reid_sdk.model, torch; print(torch.__version__)"
WORKDIR /work
