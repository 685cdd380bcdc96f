"""Full sphere vs hemisphere at the same number of slices, with the R_Σ scorer.

    .venv/bin/python bench/bench_hemisphere.py [--size 32] [--slices 48] [--directions 400] [--slice-size 48]

Prints correlation and relative error inside the unit ball and seconds for both, side by side.
"""

from __future__ import annotations

import argparse
import time

from tonno_engine import radon_sum, reconstruct
from tonno_engine.tomography.phantoms import balls_phantom, quality_in_unit_ball


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--slices", type=int, default=48)
    ap.add_argument("--directions", type=int, default=400)
    ap.add_argument("--slice-size", type=int, default=48)
    args = ap.parse_args()
    volume = balls_phantom((args.size,) * 3)
    print(f"{args.size}³ two-ball phantom, M={args.slices}, L={args.directions}, {args.slice_size}² slices")
    for hemisphere in (False, True):
        t = time.perf_counter()
        heatmap = reconstruct(volume, radon_sum, slices=args.slices, directions=args.directions, slice_size=args.slice_size,
                              hemisphere=hemisphere, device=args.device, batch_size=512)
        seconds = time.perf_counter() - t
        corr, rel = quality_in_unit_ball(heatmap, volume)
        name = "hemisphere " if hemisphere else "full sphere"
        print(f"{name}: correlation {corr:.4f}  relative error {rel:.4f}  {seconds:.1f} s")


if __name__ == "__main__":
    main()
