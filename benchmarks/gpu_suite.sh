#!/usr/bin/env bash
# The GPU check in one command of about 8 minutes, for a machine with a CUDA PyTorch and torchvision but no
# package registry: installs the wheels found in WHEEL_DIR (onnxruntime-gpu, faiss-gpu, tensorrt, ... built
# for that machine's Python and CUDA) into a private folder, then runs benchmarks/gpu_suite.py: extraction,
# the merge stage, training steps and the cuda tests, each under its own time limit; JSON in
# benchmarks/results/, copied after every part to COPY_DIR (default: $OUT).
#
#   bash benchmarks/gpu_suite.sh [WHEEL_DIR [COPY_DIR]]
#   bash benchmarks/gpu_suite.sh --dry-run [WHEEL_DIR [COPY_DIR]]   # toy sizes on the CPU: checks the wiring
#
# PYTHON picks the interpreter (default python3); REID_GPU_SITE the install folder (default /tmp/reid-gpu-site).
# The repository runs from its folder (PYTHONPATH), never installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
suite_args=()
if [[ "${1:-}" == "--dry-run" ]]; then
    suite_args+=(--dry-run)
    shift
fi
wheel_dir=${1:-}
copy_dir=${2:-${OUT:-}}

if [[ -n "$wheel_dir" ]]; then
    shopt -s nullglob
    wheels=("$wheel_dir"/*.whl)
    shopt -u nullglob
    if (( ${#wheels[@]} )); then
        site=${REID_GPU_SITE:-/tmp/reid-gpu-site}
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
            "${wheels[@]}"
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
        export REID_GPU_WHEELS="${wheels[*]##*/}"
        echo "gpu_suite: installed ${#wheels[@]} wheel(s) into $site: $REID_GPU_WHEELS"
    else
        echo "gpu_suite: no wheels in $wheel_dir; running with what is installed"
    fi
fi
if [[ -n "$copy_dir" ]]; then
    suite_args+=(--copy-to "$copy_dir")
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m benchmarks.gpu_suite "${suite_args[@]}"
