#!/usr/bin/env bash
# One prepared GPU check: the GPU rows of BENCHMARKS.md in one call of at most 9 minutes.
#
#   benchmarks/gpu.sh            # from the repository root, on a machine with CUDA
#   PYTHON=/path/to/python benchmarks/gpu.sh
#
# Each benchmark writes (or appends to) its own section of BENCHMARKS.md: the training cost
# (FLOPs per step, the paper run's GPU estimate, and the paper-size SAN step measured here:
# measured beside estimated, also printed); the SAN train step at
# paper size in fp32 eager, bf16 + channels_last and bf16 + channels_last + torch.compile;
# Mask R-CNN and SCHP images/s at batch 1/16/64 in fp32 and bf16 with random weights;
# synthesis, Inception and LPIPS rates; Re-ID feature extraction and train step. A benchmark
# that fails or overruns its share of the time is reported and the others still run.
set -uo pipefail
PY=${PYTHON:-python}
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || {
    echo "no NVIDIA GPU visible: nothing to measure" >&2
    exit 1
}
status=0
run() {  # seconds, then the benchmark module and its arguments
    local limit=$1
    shift
    echo "== $* (at most ${limit} s)"
    timeout "$limit" "$PY" -m "$@" || { echo "!! $1 failed or timed out" >&2; status=1; }
}
run 90 benchmarks.training_cost --device cuda --steps 10
run 180 benchmarks.san_training --device cuda --steps 10 --compile
run 120 benchmarks.segmentation --device cuda --repeats 5
run 60 benchmarks.evaluation --device cuda
run 90 benchmarks.reid --device cuda
exit $status
