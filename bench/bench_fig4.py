"""The paper's Fig. 4 check: average-pooled slices as fake CAMs, reconstructed with the Averaged and
the Tomographic formulas; prints the correlation with the input for each pooling kernel.

    .venv/bin/python bench/bench_fig4.py [--slice-size 64] [--directions 400] [--device auto]

Kernel k on a 64² slice gives a (64/k)² map: kernels 2, 4, 8, 16 play layers 1–4 of a ResNet.
"""

from __future__ import annotations

import argparse
import time

from tonno_engine.cams.checks import fake_cam_check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slice-size", type=int, default=64)
    ap.add_argument("--directions", type=int, default=400)
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    kernels = tuple(args.slice_size // 2 ** k for k in (5, 4, 3, 2))
    start = time.perf_counter()
    corr = fake_cam_check(kernels, slices=args.slices, directions=args.directions, slice_size=args.slice_size,
                          device=args.device)
    print(f"32³ two-ball phantom, M={args.slices}, L={args.directions}, {args.slice_size}² slices "
          f"({time.perf_counter() - start:.0f} s)")
    print("| pooling kernel | map size | Averaged | Tomographic |\n|---|---|---|---|")
    for k in kernels:
        print(f"| {k} | {args.slice_size // k}² | {corr['averaged-cam', k]:.3f} | {corr['tomographic-cam', k]:.3f} |")


if __name__ == "__main__":
    main()
