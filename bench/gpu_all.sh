#!/usr/bin/env bash
# Every GPU benchmark and the GPU tests in one call, results appended to bench/RESULTS.md (or $RESULTS).
#
# Here, once:      bash bench/fetch_gpu_wheels.sh        (nibabel, nilearn wheels into .whl/)
# On the GPU machine (the `device` tool; carry .whl):     RESULTS=$OUT/RESULTS.md bash bench/gpu_all.sh
# With a .venv/ (a GPU box of your own), .venv/bin/python is used and .whl/ is not needed.
# About 6-8 minutes on one H100/H200; each step has its own time limit, most important first.
set -u
case "${1:-}" in
  -h|--help) echo "usage: [RESULTS=FILE] bash bench/gpu_all.sh"; sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
if [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python3
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT_MD=${RESULTS:-bench/RESULTS.md}  # appended to: the CPU numbers stay
{
  echo "# GPU results"
  echo
  echo "\`$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader)\`, $(date -u +%F), \`bash bench/gpu_all.sh\`"
  echo
  step() { local limit=$1; shift; echo "## $*"; echo '```'; timeout "$limit" "$@" 2>&1 | grep -v -E "^(W|I)[0-9]{4} "; echo "(exit ${PIPESTATUS[0]})"; echo '```'; echo; }
  # targets 1 (overhead on GPU) and 2 (paper settings, sphere vs hemisphere, bf16, compile)
  step 300 $PY bench/bench_paper_settings.py --device cuda --check
  # target 3: CAM variants at L=1000 vs ToNNO at L=1000, paper M and slice size
  step 150 $PY bench/bench_methods.py --device cuda --slices 100 --directions 1000 --slice-size 224 --skip-tomographic-scorecam
  # target 5: 512³ at paper settings within 16 GB
  step 60 $PY bench/bench_memory.py --device cuda --size 512 --slices 100 --directions 16 --batch-size 1024
  # target 6: training throughput vs the encoder's forward+backward
  step 90 $PY bench/bench_train_throughput.py --device cuda --slice-size 224 --steps 50
  # streaming training data vs in memory on the GPU (loader processes must keep up with a GPU step)
  step 150 $PY bench/bench_streaming.py throughput --device cuda --slice-size 224 --steps 60
  step 150 $PY -m pytest -q -p no:cacheprovider -m gpu tests
} 2>&1 | tee -a "$OUT_MD"
