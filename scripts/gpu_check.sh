#!/usr/bin/env bash
# GPU readiness on a machine with one NVIDIA GPU, within about 8 minutes:
#   1. the CUDA test subset (pytest -m cuda: AMP fp16/bf16 steps per detector family, channels_last,
#      one-GPU DDP on NCCL, EMA and resume on the GPU);
#   2. a throughput table: Faster R-CNN R50-FPN train and inference images/s at 16-mixed, 800x1333,
#      batch 8, beside torchvision's model with the same weights; lightdet-bench latencies of the R-CNN
#      family at 800x1333 and of the real-time DETRs at 640x640, batch 1 and 32.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]   (writes OUT_DIR/gpu_check.log, default ./gpu_check)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
PY=python3
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONUNBUFFERED=1
{
  echo "== machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not found"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  "$PY" -c "import lightdet" 2>/dev/null || "$PY" -m pip install -q -e '.[dev]'
  echo "== CUDA tests"
  timeout 300 "$PY" -m pytest -m cuda -q -p no:xdist -rs tests/cli/test_cuda.py
  echo "== Faster R-CNN R50-FPN, 800x1333, batch 8, 16-mixed: lightdet vs torchvision"
  timeout 150 "$PY" scripts/bench/vs_torchvision.py --device cuda --size 800 1333 --batch 8 \
    --precision 16-mixed --repeats 10
  echo "== lightdet-bench (inference latency, 16-mixed)"
  for model in faster_rcnn retinanet fcos mask_rcnn; do
    timeout 60 "$PY" -m lightdet.cli.bench "$model" --device cuda --precision 16-mixed --size 800 1333 \
      --batch 8 --repeats 20 --no-flops
  done
  echo "== lightdet-bench, real-time DETRs at 640x640 (16-mixed), batch 1 and 32"
  for model in rtdetr_r18vd rtdetr_r50vd dfine_s dfine_l; do
    for batch in 1 32; do
      timeout 60 "$PY" -m lightdet.cli.bench "$model" --device cuda --precision 16-mixed --size 640 640 \
        --batch "$batch" --repeats 20 --no-flops
    done
  done
} 2>&1 | tee "$LOG"
