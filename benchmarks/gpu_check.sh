#!/usr/bin/env bash
# Trains the PyTorch arms at GPU scale and prints samples/s. Installs nothing: needs torch, numpy, pandas.
#   bash benchmarks/gpu_check.sh            # full size, on the GPU when there is one
#   SCALE=0.001 bash benchmarks/gpu_check.sh   # a dry run anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi: CPU run"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python benchmarks/gpu_train.py --scale "${SCALE:-1.0}" --epochs "${EPOCHS:-2}"
