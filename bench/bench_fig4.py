"""The paper's Fig. 4 check: average-pooled slices as fake CAMs, reconstructed with the Averaged, the
Tomographic and the Iterative formulas; prints the correlation with the input and the relative error
(inside the unit ball) for each pooling kernel.

    .venv/bin/python bench/bench_fig4.py [--slice-size 64] [--kernels 2,4,8,16] [--directions 400] [--device auto]

Kernel k on an s² slice gives an (s/k)² map: on 64² slices kernels 2, 4, 8, 16 play layers 1–4 of a ResNet;
``--slice-size 224 --kernels 4,8,16,32`` are the 224² ResNet's layers 1–4 themselves.
"""

from __future__ import annotations

import argparse
import time

from tonno_engine.cams.checks import FORMULAS, fake_cam_check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slice-size", type=int, default=64)
    ap.add_argument("--kernels", default="2,4,8,16")
    ap.add_argument("--directions", type=int, default=400)
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    kernels = tuple(int(k) for k in args.kernels.split(","))
    start = time.perf_counter()
    quality = fake_cam_check(kernels, slices=args.slices, directions=args.directions, slice_size=args.slice_size,
                             device=args.device)
    print(f"32³ two-ball phantom, M={args.slices}, L={args.directions}, {args.slice_size}² slices "
          f"({time.perf_counter() - start:.0f} s); correlation / relative error in the unit ball")
    names = {"averaged-cam": "Averaged", "tomographic-cam": "Tomographic", "iterative-cam": "Iterative"}
    print("| pooling kernel | map size | " + " | ".join(names[f] for f in FORMULAS) + " |")
    print("|---|---|" + "---|" * len(FORMULAS))
    for k in kernels:
        cells = " | ".join(f"{quality[f, k][0]:.3f} / {quality[f, k][1]:.2f}" for f in FORMULAS)
        print(f"| {k} | {args.slice_size // k}² | {cells} |")


if __name__ == "__main__":
    main()
