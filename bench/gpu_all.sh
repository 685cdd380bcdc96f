#!/usr/bin/env bash
# Every GPU benchmark and the GPU tests in one call (the `device` tool's machine), results into
# bench/RESULTS.md. Usage, from the repo root with .venv/ built:  bash bench/gpu_all.sh
set -u
PY=.venv/bin/python
OUT=bench/RESULTS.md
{
  echo "# GPU results"
  echo
  echo "\`$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)\`, $(date -u +%F)"
  echo
  run() { echo "## $*"; echo '```'; timeout 240 "$@" 2>&1 | tail -25; echo '```'; echo; }
  run $PY bench/bench_reconstruct.py --device cuda --size 128 --slices 100 --angles 200 --slice-size 224 --batch-size 1024 --repeats 2
  run $PY bench/bench_methods.py --device cuda --slices 100 --angles 1000 --slice-size 224 --skip-tomographic-scorecam
  run $PY bench/bench_hemisphere.py --device cuda
  run $PY bench/bench_memory.py --device cuda --size 512 --slices 100 --angles 16 --batch-size 1024
  run $PY bench/bench_train_throughput.py --device cuda --slice-size 224 --steps 50
  run $PY -m pytest -q -m gpu tests/test_gpu.py
} | tee "$OUT"
