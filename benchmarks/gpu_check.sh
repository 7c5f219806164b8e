#!/usr/bin/env bash
# Issue 21's GPU check: medaudit predict vs a timm-benchmark-style loop (resnet50, vit_base_patch16_224,
# 224 px, batch 256), the data pipeline (DataLoader workers vs decode_jpeg on the GPU) and a 1-GPU torchrun
# train smoke test; under 8 minutes on one GPU. Output: stdout and benchmarks/results/gpu-<date>.md.
#   bash benchmarks/gpu_check.sh                         # on a machine with a GPU
#   bash benchmarks/gpu_check.sh --dry-run --out F.md    # the same code on the CPU, tiny (seconds)
# Options: python benchmarks/gpu_check.py --help. The logic lives in benchmarks/gpu_check.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
# The checkout itself, so that a machine where medaudit is not pip-installed still runs it.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" benchmarks/gpu_check.py "$@"
