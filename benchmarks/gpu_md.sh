#!/usr/bin/env bash
# bench_md.py on a GPU machine of the device tool (run there from the repository root, with .whl carried from
# benchmarks/gpu_wheels.sh): the model compiled for cuda, 100 to 10,000 atoms; md_cuda.json and the log go to $OUT.
set -euo pipefail
out=${OUT:-/tmp}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="$PWD:/tmp/site" PATH="/tmp/site/bin:$PATH" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, nequip, allegro; print("torch", torch.__version__, torch.cuda.get_device_name())'
BENCH_DEVICE=cuda python3 benchmarks/run.py md 2>&1 | tee "$out/bench_md_cuda.log"
cp benchmarks/results/md_cuda.json "$out/"
