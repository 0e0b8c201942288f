#!/usr/bin/env bash
# Wheels the device tool's GPU machines lack (their python3 holds a CUDA torch, no nequip), for Python 3.12 there:
# the versions of constraints.txt and of this .venv. Run here, once per session that has a GPU; then
# `run` with carry ['.whl'] and the command `bash benchmarks/gpu_md.sh` (benchmarks/README.md, GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$tag")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .whl nequip==0.19.1 nequip-allegro==0.8.3 e3nn==0.6.0 ase==3.29.0 matscipy==1.3.1 hydra-core==1.3.8 \
    omegaconf==2.3.1 lmdb==3.0.0
# hydra-core's antlr4 runtime 4.9.3 is published as source only: build its (pure Python) wheel here
.venv/bin/pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls .whl
