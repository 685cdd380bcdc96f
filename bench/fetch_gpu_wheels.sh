#!/usr/bin/env bash
# Wheels the GPU machine's image lacks (it has torch, timm, scipy, scikit-image, typer, rich, pytest),
# fetched here into .whl/ (git-ignored) so that `device` can carry them. Run once from the repo root.
set -eu
case "${1:-}" in
  -h|--help) echo "usage: bash bench/fetch_gpu_wheels.sh   (from the repository root)"; sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any \
  -d .whl nibabel==5.4.2 nilearn==0.14.1
ls -la .whl
